//! The router core's decisions on Redis: one Lua script per operation of
//! `router::Pool` (pick, record, settle, toggle, state), each a second
//! implementation of the same rules (see `lua/lib.lua`), run atomically by
//! the server with the server's clock. `tests/cluster_model.rs` runs both
//! implementations on random operation sequences and compares them.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::{Script, ScriptInvocation};

use crate::config::RoutingConfig;
use crate::router::{Cause, Reservation, SessionKey, Transition, Unavailable, Verdict};

macro_rules! script {
    ($file:literal) => {
        concat!(include_str!("lua/lib.lua"), "\n", include_str!($file))
    };
}

/// The scripts, loaded once (EVALSHA, falling back to EVAL when the
/// server lost them, as after a restart).
pub struct Scripts {
    pick: Script,
    apply: Script,
    state: Script,
    toggle: Script,
    push: Script,
}

impl Default for Scripts {
    fn default() -> Self {
        Scripts {
            pick: Script::new(script!("lua/pick.lua")),
            apply: Script::new(script!("lua/apply.lua")),
            state: Script::new(script!("lua/state.lua")),
            toggle: Script::new(script!("lua/toggle.lua")),
            push: Script::new(script!("lua/push.lua")),
        }
    }
}

/// The keys of one model: one hash tag, so that Redis Cluster keeps them
/// on one slot and a script may touch them all.
#[derive(Debug, Clone, PartialEq, Eq)]
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

    /// A session's pin.
    fn pin(&self, session: SessionKey) -> String {
        format!("{}:pin:{:016x}", self.tag, session.0)
    }
}

/// One deployment as every pick of a model sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct DepSpec {
    pub name: Arc<str>,
    pub weight: i64,
    pub limit: Option<u64>,
    /// Enabled in this instance's config: what counts until the cluster says otherwise.
    pub enabled: bool,
    /// Its tier (lower is tried first).
    pub priority: u32,
}

/// What one request's pick knows of each deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Open,
    Tried,
    /// Known not to offer the endpoint: tried last.
    NotOffering,
}

impl Mark {
    fn byte(self) -> u8 {
        match self {
            Mark::Open => b'0',
            Mark::Tried => b'1',
            Mark::NotOffering => b'2',
        }
    }
}

/// One request's pick: its estimate, a mark per deployment, and its
/// session with the model's pin lifetime.
#[derive(Debug, Clone, PartialEq)]
pub struct PickRequest {
    pub estimate: u64,
    pub marks: Vec<Mark>,
    pub session: Option<(SessionKey, Duration)>,
}

/// Something that happened after a pick, for [`Scripts::apply`].
#[derive(Debug, Clone)]
pub enum Applied<'a> {
    /// The reserved estimate replaced by the usage.
    Settle {
        reservation: Reservation,
        actual: u64,
    },
    /// How an attempt went.
    Record {
        verdict: Verdict,
        policy: &'a RoutingConfig,
    },
}

/// What a shared pick decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Picked {
    Deployment {
        index: usize,
        /// The second (server clock) the estimate was counted in.
        second: u64,
        probe: bool,
        /// The session was pinned to this other deployment, which could
        /// not take it.
        repinned_from: Option<usize>,
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

/// KEYS and ARGV every script starts with (see `lua/lib.lua`).
fn header<'a, 'b>(
    inv: &'b mut ScriptInvocation<'a>,
    keys: &ModelKeys,
    now_ms: Option<u64>,
    names: &[&str],
) -> &'b mut ScriptInvocation<'a> {
    inv.key(keys.key("s"));
    inv.arg(now_arg(now_ms)).arg(names.len());
    for name in names {
        inv.key(keys.dep("w", name)).key(keys.dep("p", name));
        inv.arg(*name);
    }
    inv
}

fn int(v: Option<&redis::Value>) -> i64 {
    match v {
        Some(redis::Value::Int(n)) => *n,
        _ => 0,
    }
}

fn text(v: Option<&redis::Value>) -> String {
    match v {
        Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(redis::Value::SimpleString(s)) => s.clone(),
        _ => String::new(),
    }
}

/// Settles and verdicts as the scripts read them (see `lua/apply.lua`).
fn push_ops(inv: &mut ScriptInvocation<'_>, ops: &[(usize, Applied<'_>)]) {
    for (dep, op) in ops {
        match op {
            Applied::Settle {
                reservation,
                actual,
            } => {
                inv.arg("s")
                    .arg(dep + 1)
                    .arg(reservation.second())
                    .arg(reservation.tokens())
                    .arg(*actual);
            }
            Applied::Record { verdict, policy } => {
                let (v, hint) = match verdict {
                    Verdict::Answered => ("a", -1i64),
                    Verdict::RateLimited(hint) => ("r", hint.map_or(-1, |h| h.as_millis() as i64)),
                    Verdict::Failed => ("f", -1),
                    Verdict::Abandoned | Verdict::NotOffered => ("x", -1),
                };
                inv.arg("r")
                    .arg(dep + 1)
                    .arg(v)
                    .arg(hint)
                    .arg(policy.failure_threshold)
                    .arg(policy.cooldown.as_millis() as u64)
                    .arg(policy.max_cooldown.as_millis() as u64)
                    .arg(policy.rate_limit_cooldown.as_millis() as u64);
            }
        }
    }
}

/// Per op, the change to announce.
fn transitions(reply: &[redis::Value]) -> Vec<Option<Transition>> {
    reply
        .chunks(3)
        .map(|r| match int(r.first()) {
            1 => cause_of(&text(r.get(1))).map(|cause| Transition::CoolingDown {
                cause,
                for_: Duration::from_millis(int(r.get(2)).max(0) as u64),
            }),
            2 => Some(Transition::Recovered),
            _ => None,
        })
        .collect()
}

impl Scripts {
    /// `Pool::pick` for one request or several of one model, in order, in
    /// one script call (concurrent requests' picks, batched). `now_ms`
    /// None: the server's clock (tests pass theirs).
    #[allow(clippy::too_many_arguments)] // the script's inputs, each its own
    pub async fn pick_many<C: ConnectionLike + Send>(
        &self,
        con: &mut C,
        keys: &ModelKeys,
        now_ms: Option<u64>,
        deps: &[DepSpec],
        probe_ttl: Duration,
        requests: &[PickRequest],
        ops: &[(usize, Applied<'_>)],
    ) -> redis::RedisResult<(Vec<Picked>, Vec<Option<Transition>>)> {
        let names: Vec<&str> = deps.iter().map(|d| &*d.name).collect();
        let mut inv = self.pick.prepare_invoke();
        header(&mut inv, keys, now_ms, &names).arg(probe_ttl.as_millis().max(1) as u64);
        for d in deps {
            inv.arg(d.weight)
                .arg(d.limit.unwrap_or(0))
                .arg(u8::from(d.enabled))
                .arg(d.priority);
        }
        inv.arg(requests.len());
        // Pin keys follow the model's: 1 + 2 per deployment, then one per
        // keyed request (KEYS are 1-based in Lua).
        let mut next_key = 2 + 2 * deps.len();
        for r in requests {
            let marks: Vec<u8> = r.marks.iter().map(|m| m.byte()).collect();
            inv.arg(r.estimate).arg(marks);
            match r.session {
                Some((session, ttl)) => {
                    inv.key(keys.pin(session));
                    inv.arg(next_key).arg(ttl.as_millis().max(1) as u64);
                    next_key += 1;
                }
                None => {
                    inv.arg(0).arg(0);
                }
            }
        }
        push_ops(&mut inv, ops);
        let reply: Vec<redis::Value> = inv.invoke_async(con).await?;
        let (picks, applied) = reply.split_at((requests.len() * 5).min(reply.len()));
        let picks = picks
            .chunks(5)
            .map(|r| {
                if int(r.first()) == 1 {
                    let was = int(r.get(4));
                    return Picked::Deployment {
                        index: (int(r.get(1)) - 1).max(0) as usize,
                        second: int(r.get(2)).max(0) as u64,
                        probe: int(r.get(3)) == 1,
                        repinned_from: (was > 0).then(|| (was - 1) as usize),
                    };
                }
                let retry_after = Duration::from_millis(int(r.get(2)).max(0) as u64);
                Picked::Unavailable(match text(r.get(1)).as_str() {
                    "none" => Unavailable::NoneEnabled,
                    "exhausted" => Unavailable::Exhausted,
                    "rate" => Unavailable::RateLimited { retry_after },
                    _ => Unavailable::Failing { retry_after },
                })
            })
            .collect();
        Ok((picks, transitions(applied)))
    }

    /// Settles and verdicts of one model's deployments (`names`), in order,
    /// in one script call; per op, the change to announce.
    pub async fn apply<C: ConnectionLike + Send>(
        &self,
        con: &mut C,
        keys: &ModelKeys,
        now_ms: Option<u64>,
        names: &[&str],
        ops: &[(usize, Applied<'_>)],
    ) -> redis::RedisResult<Vec<Option<Transition>>> {
        let mut inv = self.apply.prepare_invoke();
        header(&mut inv, keys, now_ms, names);
        push_ops(&mut inv, ops);
        let reply: Vec<redis::Value> = inv.invoke_async(con).await?;
        Ok(transitions(&reply))
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
        let op = Applied::Record { verdict, policy };
        let mut done = self.apply(con, keys, now_ms, &[dep], &[(0, op)]).await?;
        Ok(done.pop().flatten())
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
        let op = Applied::Settle {
            reservation,
            actual,
        };
        self.apply(con, keys, now_ms, &[dep], &[(0, op)]).await?;
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
        let mut inv = self.toggle.prepare_invoke();
        header(&mut inv, keys, None, &[dep])
            .arg(u8::from(enabled))
            .arg(u8::from(configured));
        let changed: i64 = inv.invoke_async(con).await?;
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
        let names: Vec<&str> = deps.iter().map(|(n, _)| *n).collect();
        let mut inv = self.state.prepare_invoke();
        header(&mut inv, keys, now_ms, &names);
        for (_, enabled) in deps {
            inv.arg(u8::from(*enabled));
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
        header(&mut inv, keys, now_ms, &[dep]);
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
        assert_eq!(tag(&k.key("s")), tag(&k.dep("w", "east}")));
        assert_eq!(tag(&k.key("s")), "sb:prod:gpt-4o%7D%7Bx");
        assert_ne!(k.dep("w", "a"), k.dep("w", "b"));
    }
}
