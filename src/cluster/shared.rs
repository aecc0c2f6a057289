//! The router core's decisions on Redis: one Lua script per operation of
//! `router::Pool` (pick, record, settle, toggle, state), each a second
//! implementation of the same rules (see `lua/lib.lua`), run atomically by
//! the server with the server's clock. `tests/cluster_model.rs` runs both
//! implementations on random operation sequences and compares them.

use std::time::Duration;

use redis::Script;
use redis::aio::ConnectionLike;

use crate::config::RoutingConfig;
use crate::router::{Cause, Reservation, Transition, Unavailable, Verdict};

macro_rules! script {
    ($file:literal) => {
        concat!(include_str!("lua/lib.lua"), "\n", include_str!($file))
    };
}

/// The scripts, loaded once (EVALSHA, falling back to EVAL when the
/// server lost them, as after a restart).
pub struct Scripts {
    pick: Script,
    record: Script,
    settle: Script,
    state: Script,
    toggle: Script,
    push: Script,
}

impl Default for Scripts {
    fn default() -> Self {
        Scripts {
            pick: Script::new(script!("lua/pick.lua")),
            record: Script::new(script!("lua/record.lua")),
            settle: Script::new(script!("lua/settle.lua")),
            state: Script::new(script!("lua/state.lua")),
            toggle: Script::new(script!("lua/toggle.lua")),
            push: Script::new(script!("lua/push.lua")),
        }
    }
}

/// The keys of one model: one hash tag, so that Redis Cluster keeps them
/// on one slot and a script may touch them all.
#[derive(Debug, Clone)]
pub struct ModelKeys {
    tag: String,
}

/// `{`, `}` and `%` escaped: a name must not end the hash tag early.
fn escape(name: &str) -> String {
    name.replace('%', "%25")
        .replace('{', "%7B")
        .replace('}', "%7D")
}

impl ModelKeys {
    pub fn new(cluster: &str, model: &str) -> ModelKeys {
        ModelKeys {
            tag: format!("{{sb:{}:{}}}", escape(cluster), escape(model)),
        }
    }

    fn key(&self, kind: &str) -> String {
        format!("{}:{kind}", self.tag)
    }

    fn dep(&self, kind: &str, dep: &str) -> String {
        format!("{}:{kind}:{}", self.tag, escape(dep))
    }
}

/// One deployment as a pick sees it.
#[derive(Debug, Clone)]
pub struct DepArg<'a> {
    pub name: &'a str,
    pub weight: i64,
    pub limit: Option<u64>,
    pub tried: bool,
    /// Enabled in this instance's config: what counts until the cluster says otherwise.
    pub enabled: bool,
}

/// What a shared pick decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Picked {
    Deployment {
        index: usize,
        /// The second (server clock) the estimate was counted in.
        second: u64,
        probe: bool,
    },
    Unavailable(Unavailable),
}

/// A deployment's state as the cluster holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedStatus {
    pub enabled: bool,
    pub tpm_used: u64,
    pub cooldown: Option<(Cause, Duration)>,
    pub consecutive_failures: u32,
    pub requests: u64,
    pub failures: u64,
}

fn now_arg(now_ms: Option<u64>) -> String {
    now_ms.map(|n| n.to_string()).unwrap_or_default()
}

fn cause_of(c: &str) -> Option<Cause> {
    match c {
        "r" => Some(Cause::RateLimited),
        "f" => Some(Cause::Failing),
        _ => None,
    }
}

impl Scripts {
    /// `Pool::pick`. `now_ms` None: the server's clock (tests pass theirs).
    pub async fn pick<C: ConnectionLike + Send>(
        &self,
        con: &mut C,
        keys: &ModelKeys,
        now_ms: Option<u64>,
        estimate: u64,
        deps: &[DepArg<'_>],
        probe_ttl: Duration,
    ) -> redis::RedisResult<Picked> {
        let mut inv = self.pick.prepare_invoke();
        inv.key(keys.key("en")).key(keys.key("cr"));
        inv.arg(now_arg(now_ms))
            .arg(estimate)
            .arg(deps.len())
            .arg(probe_ttl.as_millis().max(1) as u64);
        for d in deps {
            inv.key(keys.dep("w", d.name))
                .key(keys.dep("h", d.name))
                .key(keys.dep("p", d.name));
            let flags = u8::from(d.tried) | (u8::from(d.enabled) << 1);
            inv.arg(d.name)
                .arg(d.weight)
                .arg(d.limit.unwrap_or(0))
                .arg(flags);
        }
        let reply: Vec<redis::Value> = inv.invoke_async(con).await?;
        let int = |i: usize| match reply.get(i) {
            Some(redis::Value::Int(n)) => *n,
            _ => 0,
        };
        let text = |i: usize| match reply.get(i) {
            Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(redis::Value::SimpleString(s)) => s.clone(),
            _ => String::new(),
        };
        if int(0) == 1 {
            return Ok(Picked::Deployment {
                index: (int(1) - 1) as usize,
                second: int(2) as u64,
                probe: int(3) == 1,
            });
        }
        let retry_after = Duration::from_millis(int(2).max(0) as u64);
        Ok(Picked::Unavailable(match text(1).as_str() {
            "none" => Unavailable::NoneEnabled,
            "exhausted" => Unavailable::Exhausted,
            "rate" => Unavailable::RateLimited { retry_after },
            _ => Unavailable::Failing { retry_after },
        }))
    }

    /// `Pool::record`: how an attempt went; the change to announce.
    pub async fn record<C: ConnectionLike + Send>(
        &self,
        con: &mut C,
        keys: &ModelKeys,
        dep: &str,
        now_ms: Option<u64>,
        verdict: Verdict,
        policy: &RoutingConfig,
    ) -> redis::RedisResult<Option<Transition>> {
        let (v, hint) = match verdict {
            Verdict::Answered => ("a", -1i64),
            Verdict::RateLimited(hint) => ("r", hint.map_or(-1, |h| h.as_millis() as i64)),
            Verdict::Failed => ("f", -1),
            Verdict::Abandoned | Verdict::NotOffered => ("x", -1),
        };
        let reply: Vec<redis::Value> = self
            .record
            .key(keys.dep("h", dep))
            .key(keys.dep("p", dep))
            .arg(now_arg(now_ms))
            .arg(v)
            .arg(hint)
            .arg(policy.failure_threshold)
            .arg(policy.cooldown.as_millis() as u64)
            .arg(policy.max_cooldown.as_millis() as u64)
            .arg(policy.rate_limit_cooldown.as_millis() as u64)
            .invoke_async(con)
            .await?;
        Ok(match reply.first() {
            Some(redis::Value::Int(1)) => {
                let cause = match reply.get(1) {
                    Some(redis::Value::BulkString(b)) => cause_of(&String::from_utf8_lossy(b)),
                    _ => None,
                };
                let ms = match reply.get(2) {
                    Some(redis::Value::Int(n)) => *n as u64,
                    _ => 0,
                };
                cause.map(|cause| Transition::CoolingDown {
                    cause,
                    for_: Duration::from_millis(ms),
                })
            }
            Some(redis::Value::Int(2)) => Some(Transition::Recovered),
            _ => None,
        })
    }

    /// `Pool::settle`: the reserved estimate replaced by `actual`.
    pub async fn settle<C: ConnectionLike + Send>(
        &self,
        con: &mut C,
        keys: &ModelKeys,
        dep: &str,
        now_ms: Option<u64>,
        reservation: Reservation,
        actual: u64,
    ) -> redis::RedisResult<()> {
        let _: i64 = self
            .settle
            .key(keys.dep("w", dep))
            .arg(now_arg(now_ms))
            .arg(reservation.second())
            .arg(reservation.tokens())
            .arg(actual)
            .invoke_async(con)
            .await?;
        Ok(())
    }

    /// `Pool::set_enabled`; returns whether it changed.
    pub async fn toggle<C: ConnectionLike + Send>(
        &self,
        con: &mut C,
        keys: &ModelKeys,
        dep: &str,
        enabled: bool,
        configured: bool,
    ) -> redis::RedisResult<bool> {
        let changed: i64 = self
            .toggle
            .key(keys.key("en"))
            .key(keys.key("cr"))
            .key(keys.dep("h", dep))
            .key(keys.dep("p", dep))
            .arg(dep)
            .arg(u8::from(enabled))
            .arg(u8::from(configured))
            .invoke_async(con)
            .await?;
        Ok(changed == 1)
    }

    /// The cluster's view of each deployment, in the order given.
    pub async fn state<C: ConnectionLike + Send>(
        &self,
        con: &mut C,
        keys: &ModelKeys,
        now_ms: Option<u64>,
        deps: &[(&str, bool)],
    ) -> redis::RedisResult<Vec<SharedStatus>> {
        let mut inv = self.state.prepare_invoke();
        inv.key(keys.key("en"));
        inv.arg(now_arg(now_ms)).arg(deps.len());
        for (name, enabled) in deps {
            inv.key(keys.dep("w", name))
                .key(keys.dep("h", name))
                .key(keys.dep("p", name));
            inv.arg(*name).arg(u8::from(*enabled));
        }
        let rows: Vec<(i64, u64, String, u64, u32, u64, u64)> = inv.invoke_async(con).await?;
        Ok(rows
            .into_iter()
            .map(
                |(enabled, used, cause, remaining, fails, requests, failures)| SharedStatus {
                    enabled: enabled == 1,
                    tpm_used: used,
                    cooldown: cause_of(&cause).map(|c| (c, Duration::from_millis(remaining))),
                    consecutive_failures: fails,
                    requests,
                    failures,
                },
            )
            .collect())
    }

    /// Tokens admitted while Redis was away, added at their seconds.
    pub async fn push<C: ConnectionLike + Send>(
        &self,
        con: &mut C,
        keys: &ModelKeys,
        dep: &str,
        now_ms: Option<u64>,
        tokens: &[(u64, u64)],
    ) -> redis::RedisResult<()> {
        let mut inv = self.push.prepare_invoke();
        inv.key(keys.dep("w", dep)).arg(now_arg(now_ms));
        for (second, n) in tokens {
            inv.arg(*second).arg(*n);
        }
        let _: i64 = inv.invoke_async(con).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_one_hash_tag_whatever_the_names() {
        let k = ModelKeys::new("prod", "gpt-4o}{x");
        let tag = |key: &str| key[key.find('{').unwrap() + 1..key.find('}').unwrap()].to_string();
        assert_eq!(tag(&k.key("en")), tag(&k.dep("w", "east}")));
        assert_eq!(tag(&k.key("en")), "sb:prod:gpt-4o%7D%7Bx");
        assert_ne!(k.dep("w", "a"), k.dep("w", "b"));
    }
}
