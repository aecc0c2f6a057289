//! The router core's decisions on Redis: one Lua function per operation of
//! `router::Pool` (pick, record, settle, undo, end, toggle, state), each a second
//! implementation of the same rules (see `lua/lib.lua`, and how they are
//! called in [`super::functions`]), run atomically by the server with the
//! server's clock. `tests/cluster_model.rs` runs both
//! implementations on random operation sequences and compares them.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionLike;

use super::functions::{Invocation, Operation};
use crate::config::RoutingConfig;
use crate::router::{
    Cause, Limits, Need, Reservation, SessionKey, Spent, Transition, Unavailable, Verdict,
};

pub use super::functions::{Loaded, Scripts};
pub use super::keys::ModelKeys;

/// One deployment as every pick of a model sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct DepSpec {
    pub name: Arc<str>,
    pub weight: i64,
    /// A pick admits it only inside every one of them.
    pub limits: Limits,
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

/// The windows beyond tokens the cluster keeps for a deployment, and so
/// those a pick counts in: the ones it has a limit for (its tokens are
/// always counted: the shares of new sessions follow them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Windows(u8);

impl Windows {
    const REQUESTS: u8 = 1;
    const INPUT: u8 = 2;
    const OUTPUT: u8 = 4;

    pub fn of(limits: &Limits) -> Windows {
        let bit = |limit: Option<u64>, b: u8| if limit.is_some() { b } else { 0 };
        Windows(
            bit(limits.rpm, Self::REQUESTS)
                | bit(limits.input_tpm, Self::INPUT)
                | bit(limits.output_tpm, Self::OUTPUT),
        )
    }
}

/// Where a shared pick counted a request: the second (the pick's clock),
/// its estimates, and the windows beyond tokens it was counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    pub reservation: Reservation,
    pub windows: Windows,
}

impl Counted {
    pub fn new(second: u64, need: Need, windows: Windows) -> Counted {
        Counted {
            reservation: Reservation::at(second, need.total()).with_output(need.output),
            windows,
        }
    }
}

/// One request's pick: what it needs, a mark per deployment, its session
/// with the model's pin lifetime, and the number of the lease it takes if
/// the deployment limits requests in flight.
#[derive(Debug, Clone, PartialEq)]
pub struct PickRequest {
    pub need: Need,
    pub marks: Vec<Mark>,
    pub session: Option<(SessionKey, Duration)>,
    pub lease: u64,
    /// How long the request waits for room when the pick finds none
    /// (zero: it does not); then the pick marks the model as waited for
    /// (see [`super::freed`]).
    pub wait: Duration,
}

/// What a pick call says besides its requests: how long a probe and a
/// lease hold the deployment without word from their instance, that
/// instance, `owner` (a lease is `<owner>:<number>`), and the channel on
/// which its waiting requests learn that room freed (`freed`, see
/// [`super::freed`]).
#[derive(Debug, Clone, Copy)]
pub struct Terms<'a> {
    pub probe_ttl: Duration,
    pub lease_ttl: Duration,
    pub owner: &'a str,
    pub freed: &'a str,
}

/// A lease's name in Redis.
pub fn lease_name(owner: &str, number: u64) -> String {
    format!("{owner}:{number}")
}

/// What an instance admitted alone in one second, for [`Scripts::push`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AloneSecond {
    pub second: u64,
    pub tokens: u64,
    pub requests: u64,
    pub input: u64,
    pub output: u64,
}

/// Something that happened after a pick, for [`Scripts::apply`].
#[derive(Debug, Clone)]
pub enum Applied<'a> {
    /// The reserved estimates replaced by the usage.
    Settle { counted: Counted, spent: Spent },
    /// The request was never sent: nothing of it counts.
    Undo { counted: Counted },
    /// The request ended: its lease is free.
    Release { lease: &'a str },
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
        /// It took a lease (the deployment limits requests in flight).
        leased: bool,
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
    /// The windows and leases the cluster keeps only for the limits a
    /// deployment has (0 without).
    pub rpm_used: u64,
    pub input_tpm_used: u64,
    pub output_tpm_used: u64,
    pub in_flight: u64,
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

/// KEYS and ARGV every operation starts with (see `lua/lib.lua`).
fn header<'a, 'b>(
    inv: &'b mut Invocation<'a>,
    keys: &ModelKeys,
    now_ms: Option<u64>,
    names: &[&str],
) -> &'b mut Invocation<'a> {
    inv.key(keys.state());
    inv.arg(now_arg(now_ms)).arg(names.len());
    for name in names {
        let [w, p, l] = &*keys.dep_keys(name);
        inv.key(w.as_str()).key(p.as_str()).key(l.as_str());
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

/// The second and the reserved input and output, as the functions read them.
fn push_counted(inv: &mut Invocation<'_>, c: &Counted) {
    let r = c.reservation;
    inv.arg(r.second())
        .arg(r.tokens() - r.output())
        .arg(r.output());
}

/// Settles, undos, releases and verdicts as the functions read them (see
/// `lua/apply.lua`).
fn push_ops(inv: &mut Invocation<'_>, ops: &[(usize, Applied<'_>)]) {
    for (dep, op) in ops {
        match op {
            Applied::Settle { counted, spent } => {
                inv.arg("s").arg(dep + 1);
                push_counted(inv, counted);
                inv.arg(spent.input)
                    .arg(spent.output)
                    .arg(counted.windows.0);
            }
            Applied::Undo { counted } => {
                inv.arg("u").arg(dep + 1);
                push_counted(inv, counted);
                inv.arg(counted.windows.0);
            }
            Applied::Release { lease } => {
                inv.arg("l").arg(dep + 1).arg(*lease);
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
/// A pick's or an apply's answer: its values joined by spaces in one
/// string. One RESP value to read rather than one per number: the redis
/// crate's parser spent ~750 instructions a value, a tenth of a clustered
/// request (callgrind).
fn words(reply: &[u8]) -> Vec<&[u8]> {
    if reply.is_empty() {
        return Vec::new();
    }
    reply.split(|&b| b == b' ').collect()
}

fn word_int(w: Option<&&[u8]>) -> i64 {
    w.and_then(|w| std::str::from_utf8(w).ok()?.parse().ok())
        .unwrap_or(0)
}

fn word_text<'a>(w: Option<&&'a [u8]>) -> &'a str {
    w.and_then(|w| std::str::from_utf8(w).ok()).unwrap_or("")
}

fn transitions(reply: &[&[u8]]) -> Vec<Option<Transition>> {
    reply
        .chunks(3)
        .map(|r| match word_int(r.first()) {
            1 => cause_of(word_text(r.get(1))).map(|cause| Transition::CoolingDown {
                cause,
                for_: Duration::from_millis(word_int(r.get(2)).max(0) as u64),
            }),
            2 => Some(Transition::Recovered),
            _ => None,
        })
        .collect()
}

impl Scripts {
    /// `Pool::pick` for one request or several of one model, in order, in
    /// one call (concurrent requests' picks, batched). `now_ms`
    /// None: the server's clock (tests pass theirs).
    #[allow(clippy::too_many_arguments)] // the function's inputs, each its own
    pub async fn pick_many<C: ConnectionLike + Send>(
        &self,
        con: &mut C,
        keys: &ModelKeys,
        now_ms: Option<u64>,
        deps: &[DepSpec],
        terms: Terms<'_>,
        requests: &[PickRequest],
        ops: &[(usize, Applied<'_>)],
    ) -> redis::RedisResult<(Vec<Picked>, Vec<Option<Transition>>)> {
        let names: Vec<&str> = deps.iter().map(|d| &*d.name).collect();
        let mut inv = self.call(Operation::Pick);
        let ms = |d: Duration| d.as_millis().max(1) as u64;
        header(&mut inv, keys, now_ms, &names)
            .arg(ms(terms.probe_ttl))
            .arg(ms(terms.lease_ttl))
            .arg(terms.owner)
            .arg(terms.freed);
        for d in deps {
            let l = &d.limits;
            inv.arg(d.weight)
                .arg(l.tpm.unwrap_or(0))
                .arg(u8::from(d.enabled))
                .arg(d.priority);
            // The limits beyond tokens in one argument, empty without any:
            // a deployment with only a TPM limit costs what it did.
            let more = [
                l.rpm,
                l.rpm.and(l.rpm_slice_s),
                l.input_tpm,
                l.output_tpm,
                l.max_in_flight,
            ];
            if more.iter().any(Option::is_some) {
                let [r, s, i, o, f] = more.map(|m| m.unwrap_or(0));
                inv.arg(format!("{r} {s} {i} {o} {f}"));
            } else {
                inv.arg("");
            }
        }
        inv.arg(requests.len());
        // Pin keys follow the model's: 1 + 3 per deployment, then one per
        // keyed request (KEYS are 1-based in Lua).
        let mut next_key = 2 + 3 * deps.len();
        for r in requests {
            let marks: Vec<u8> = r.marks.iter().map(|m| m.byte()).collect();
            inv.arg(r.need.input).arg(r.need.output).arg(marks);
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
            inv.arg(r.lease).arg(r.wait.as_millis() as u64);
        }
        inv.key(keys.waiting());
        push_ops(&mut inv, ops);
        let reply: Vec<u8> = inv.invoke_async(con).await?;
        let reply = words(&reply);
        let (picks, applied) = reply.split_at((requests.len() * 6).min(reply.len()));
        let picks = picks
            .chunks(6)
            .map(|r| {
                if word_int(r.first()) == 1 {
                    let was = word_int(r.get(4));
                    return Picked::Deployment {
                        index: (word_int(r.get(1)) - 1).max(0) as usize,
                        second: word_int(r.get(2)).max(0) as u64,
                        probe: word_int(r.get(3)) == 1,
                        repinned_from: (was > 0).then(|| (was - 1) as usize),
                        leased: word_int(r.get(5)) == 1,
                    };
                }
                let retry_after = Duration::from_millis(word_int(r.get(2)).max(0) as u64);
                Picked::Unavailable(match word_text(r.get(1)) {
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
    /// in one call, sent by instance `owner` (told nothing of the
    /// room they free: it knows); per op, the change to announce.
    pub async fn apply<C: ConnectionLike + Send>(
        &self,
        con: &mut C,
        keys: &ModelKeys,
        now_ms: Option<u64>,
        owner: &str,
        names: &[&str],
        ops: &[(usize, Applied<'_>)],
    ) -> redis::RedisResult<Vec<Option<Transition>>> {
        let mut inv = self.call(Operation::Apply);
        header(&mut inv, keys, now_ms, names).arg(owner);
        inv.key(keys.waiting());
        push_ops(&mut inv, ops);
        let reply: Vec<u8> = inv.invoke_async(con).await?;
        Ok(transitions(&words(&reply)))
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
        let mut done = self
            .apply(con, keys, now_ms, "", &[dep], &[(0, op)])
            .await?;
        Ok(done.pop().flatten())
    }

    /// `Pool::settle`: the reserved estimates replaced by `spent`.
    pub async fn settle<C: ConnectionLike + Send>(
        &self,
        con: &mut C,
        keys: &ModelKeys,
        dep: &str,
        now_ms: Option<u64>,
        counted: Counted,
        spent: Spent,
    ) -> redis::RedisResult<()> {
        let op = Applied::Settle { counted, spent };
        self.apply(con, keys, now_ms, "", &[dep], &[(0, op)])
            .await?;
        Ok(())
    }

    /// An instance's leases still in use (per deployment of the model,
    /// their names) held `ttl` more; returns how many were still there.
    pub async fn renew<C: ConnectionLike + Send>(
        &self,
        con: &mut C,
        keys: &ModelKeys,
        now_ms: Option<u64>,
        ttl: Duration,
        leases: &[(&str, Vec<String>)],
    ) -> redis::RedisResult<u64> {
        let names: Vec<&str> = leases.iter().map(|(n, _)| *n).collect();
        let mut inv = self.call(Operation::Renew);
        header(&mut inv, keys, now_ms, &names).arg(ttl.as_millis().max(1) as u64);
        for (_, held) in leases {
            inv.arg(held.len());
            for lease in held {
                inv.arg(lease);
            }
        }
        inv.invoke_async(con).await
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
        let mut inv = self.call(Operation::Toggle);
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
        let mut inv = self.call(Operation::State);
        header(&mut inv, keys, now_ms, &names);
        for (_, enabled) in deps {
            inv.arg(u8::from(*enabled));
        }
        let rows: Vec<Vec<redis::Value>> = inv.invoke_async(con).await?;
        Ok(rows
            .iter()
            .map(|r| {
                let n = |i: usize| int(r.get(i)).max(0) as u64;
                SharedStatus {
                    enabled: n(0) == 1,
                    tpm_used: n(1),
                    cooldown: cause_of(&text(r.get(2))).map(|c| (c, Duration::from_millis(n(3)))),
                    consecutive_failures: n(4) as u32,
                    requests: n(5),
                    failures: n(6),
                    rpm_used: n(7),
                    input_tpm_used: n(8),
                    output_tpm_used: n(9),
                    in_flight: n(10),
                }
            })
            .collect())
    }

    /// What was admitted while Redis was away, added at its seconds: the
    /// tokens, and the requests, input and output in `windows`.
    pub async fn push<C: ConnectionLike + Send>(
        &self,
        con: &mut C,
        keys: &ModelKeys,
        dep: &str,
        now_ms: Option<u64>,
        windows: Windows,
        seconds: &[AloneSecond],
    ) -> redis::RedisResult<()> {
        let mut inv = self.call(Operation::Push);
        header(&mut inv, keys, now_ms, &[dep]).arg(windows.0);
        for s in seconds {
            inv.arg(s.second)
                .arg(s.tokens)
                .arg(s.requests)
                .arg(s.input)
                .arg(s.output);
        }
        let _: i64 = inv.invoke_async(con).await?;
        Ok(())
    }
}
