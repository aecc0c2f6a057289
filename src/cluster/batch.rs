//! Batching what goes to Redis: concurrent requests' picks of one model
//! become one call, and the settles and verdicts waiting to be sent
//! become one call per model.
//!
//! Each thread that serves requests has its own lane: a connection to
//! Redis and the tasks that batch over it, on that thread's runtime. A
//! request then waits for Redis without a hop to another thread and back
//! (on this box each cost about as much as the round trip to Redis).
//!
//! A call costs Redis a few microseconds before its first line, and
//! each command a round trip's share of system calls on both sides; under
//! load, the requests that arrive while a batch is out wait for the next one
//! (at most one round trip) instead of each paying for its own. Alone, a
//! request's pick goes at once: nothing waits to fill a batch.
//!
//! The lane also carries the response ids the cluster remembers (see
//! [`super::responses`]): they go at once, those that arrived together in
//! one call, since a follow-up may reach another instance as soon
//! as the client has its answer.

use std::cell::RefCell;
use std::sync::Arc;

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::{mpsc, oneshot};

use super::merge::merge;
use super::responses::Note;
use super::shared::{Applied, DepSpec, ModelKeys, PickRequest, Picked, Terms};
use super::{Cluster, Down, Op, PROBE_HOLD, REDIS_TIMEOUT};
use redis::aio::ConnectionManager;

/// The most picks in one call.
const MAX_PICKS: usize = 128;
/// Batches of picks out at once: while they are, the next one fills.
const IN_FLIGHT: usize = 2;
/// How long settles and verdicts wait for a pick of their model to take
/// them along; under load one comes within a millisecond.
const OPS_WAIT: std::time::Duration = std::time::Duration::from_millis(5);
/// The most settles and verdicts taken at once.
const MAX_OPS: usize = 1024;

/// One request's pick, waiting for its batch.
pub(super) struct PickJob {
    pub keys: ModelKeys,
    pub deps: Vec<DepSpec>,
    pub request: PickRequest,
    pub reply: oneshot::Sender<Result<Picked, Down>>,
}

/// Picks of one model with the same deployments, in arrival order, and
/// the settles and verdicts of the model that ride along.
struct Group {
    keys: ModelKeys,
    deps: Vec<DepSpec>,
    requests: Vec<PickRequest>,
    replies: Vec<oneshot::Sender<Result<Picked, Down>>>,
    ops: Vec<Op>,
}

fn group(jobs: Vec<PickJob>) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for job in jobs {
        // Its request gave up waiting: not picked, so nothing is reserved
        // for a request that is not coming.
        if job.reply.is_closed() {
            continue;
        }
        match groups
            .iter_mut()
            .find(|g| g.keys == job.keys && g.deps == job.deps)
        {
            Some(g) => {
                g.requests.push(job.request);
                g.replies.push(job.reply);
            }
            None => groups.push(Group {
                keys: job.keys,
                deps: job.deps,
                requests: vec![job.request],
                replies: vec![job.reply],
                ops: Vec::new(),
            }),
        }
    }
    groups
}

/// A thread's way to Redis.
#[derive(Clone)]
pub(super) struct Lane {
    /// The cluster it belongs to (by address: a process may hold more than one).
    cluster: usize,
    pub picks: mpsc::UnboundedSender<PickJob>,
    pub ops: mpsc::UnboundedSender<Op>,
    pub notes: mpsc::UnboundedSender<Note>,
}

thread_local! {
    static LANES: RefCell<Vec<Lane>> = const { RefCell::new(Vec::new()) };
}

impl Cluster {
    /// This thread's lane, started on first use; None when the cluster is
    /// going away.
    pub(super) fn lane(&self) -> Option<Lane> {
        let key = self as *const Cluster as usize;
        LANES.with_borrow_mut(|lanes| {
            // Lanes of a runtime that has stopped.
            lanes.retain(|l| !l.picks.is_closed());
            if let Some(lane) = lanes.iter().find(|l| l.cluster == key) {
                return Some(lane.clone());
            }
            let me = self.this.upgrade()?;
            let (picks, picks_rx) = mpsc::unbounded_channel();
            let (ops, ops_rx) = mpsc::unbounded_channel();
            let (notes, notes_rx) = mpsc::unbounded_channel();
            tokio::spawn(async move {
                // Made here, so that its connection lives on this runtime.
                let Ok(con) = ConnectionManager::new_lazy_with_config(
                    me.client.clone(),
                    super::manager_config(),
                ) else {
                    return;
                };
                // So that the first pick or response id noted is one
                // round trip, not three (FCALL, FUNCTION LOAD, FCALL).
                let loader = me.clone();
                let first = con.clone();
                tokio::spawn(async move { loader.load_functions(first).await });
                me.run_lane(picks_rx, ops_rx, notes_rx, con).await;
            });
            let lane = Lane {
                cluster: key,
                picks,
                ops,
                notes,
            };
            lanes.push(lane.clone());
            Some(lane)
        })
    }

    /// Queues work for Redis that does not hold up a request.
    pub(super) fn queue(&self, op: Op) {
        if let Some(lane) = self.lane() {
            let _ = lane.ops.send(op);
        }
    }

    /// Runs a lane until its thread's runtime stops. Settles and verdicts
    /// wait up to [`OPS_WAIT`] to ride along with a pick of their model;
    /// the ones no pick takes go out on their own.
    async fn run_lane(
        self: Arc<Self>,
        mut picks: mpsc::UnboundedReceiver<PickJob>,
        mut ops: mpsc::UnboundedReceiver<Op>,
        mut notes: mpsc::UnboundedReceiver<Note>,
        con: ConnectionManager,
    ) {
        let mut jobs = Vec::new();
        let mut arrived = Vec::new();
        let mut noted = Vec::new();
        // In arrival order, with when each arrived.
        let mut pending: Vec<(tokio::time::Instant, Op)> = Vec::new();
        let mut out = FuturesUnordered::new();
        loop {
            let due = pending.first().map(|(at, _)| *at + OPS_WAIT);
            tokio::select! {
                n = picks.recv_many(&mut jobs, MAX_PICKS), if out.len() < IN_FLIGHT => {
                    if n == 0 {
                        break;
                    }
                    let mut groups = group(std::mem::take(&mut jobs));
                    for g in &mut groups {
                        let rides = pending.extract_if(.., |(_, op)| {
                            op.keys == g.keys && g.deps.iter().any(|d| d.name == op.dep)
                        });
                        g.ops.extend(rides.map(|(_, op)| op));
                    }
                    out.push(self.clone().pick_batch(groups, con.clone()).boxed());
                }
                n = ops.recv_many(&mut arrived, MAX_OPS) => {
                    if n == 0 {
                        break;
                    }
                    let now = tokio::time::Instant::now();
                    // A 429 or a failure moves the other instances' traffic:
                    // it does not wait for a ride.
                    let urgent = arrived.iter().any(Op::is_urgent);
                    pending.extend(arrived.drain(..).map(|op| (now, op)));
                    if urgent || pending.len() >= MAX_OPS {
                        let all = pending.drain(..).map(|(_, op)| op).collect();
                        out.push(self.clone().write_ops(all, con.clone()).boxed());
                    }
                }
                n = notes.recv_many(&mut noted, MAX_OPS) => {
                    if n == 0 {
                        break;
                    }
                    let all = std::mem::take(&mut noted);
                    out.push(self.clone().write_notes(all, con.clone()).boxed());
                }
                _ = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if due.is_some() => {
                    let all = pending.drain(..).map(|(_, op)| op).collect();
                    out.push(self.clone().write_ops(all, con.clone()).boxed());
                }
                Some(()) = out.next(), if !out.is_empty() => {}
            }
        }
        while out.next().await.is_some() {}
    }

    async fn pick_batch(self: Arc<Self>, groups: Vec<Group>, con: ConnectionManager) {
        let calls = groups.into_iter().map(|mut g| {
            let mut con = con.clone();
            let this = &self;
            g.ops = merge(std::mem::take(&mut g.ops));
            async move {
                let (names, applied) = ops_of(&g.ops, Some(&g.deps));
                debug_assert_eq!(names.len(), g.deps.len());
                let call = async {
                    let mut tries = 0;
                    loop {
                        let answer = this
                            .scripts
                            .pick_many(
                                &mut con,
                                &g.keys,
                                None,
                                &g.deps,
                                Terms {
                                    probe_ttl: PROBE_HOLD,
                                    lease_ttl: this.lease_ttl,
                                    owner: &this.id,
                                    freed: &this.freed,
                                },
                                &g.requests,
                                &applied,
                            )
                            .await;
                        tries += 1;
                        match answer {
                            // A connection that died while Redis was away is
                            // found dead by its next command, which makes the
                            // manager reconnect: once more, within the timeout.
                            Err(e)
                                if tries == 1 && (e.is_connection_dropped() || e.is_io_error()) => {
                            }
                            answer => return answer,
                        }
                    }
                };
                match tokio::time::timeout(REDIS_TIMEOUT, call).await {
                    Ok(Ok((picked, changes))) => {
                        for (p, reply) in picked.into_iter().zip(g.replies) {
                            let _ = reply.send(Ok(p));
                        }
                        this.announce_all(&g.ops, changes);
                    }
                    Ok(Err(e)) => {
                        let down = Down::Redis(e.to_string());
                        for reply in g.replies {
                            let _ = reply.send(Err(down.clone()));
                        }
                        tracing::debug!("cluster: {} settles and verdicts lost: {e}", g.ops.len());
                    }
                    // The requests' own timeouts answer them.
                    Err(_) => {
                        tracing::debug!("cluster: {} settles and verdicts timed out", g.ops.len())
                    }
                }
            }
        });
        futures_util::future::join_all(calls).await;
    }

    /// Settles and verdicts no pick took: one call per model, the
    /// models' side by side over the multiplexed connection.
    async fn write_ops(self: Arc<Self>, batch: Vec<Op>, con: ConnectionManager) {
        let mut models: Vec<(ModelKeys, Vec<Op>)> = Vec::new();
        for op in batch {
            match models.iter_mut().find(|(k, _)| *k == op.keys) {
                Some((_, ops)) => ops.push(op),
                None => models.push((op.keys.clone(), vec![op])),
            }
        }
        let calls = models.into_iter().map(|(keys, ops)| {
            let mut con = con.clone();
            let this = &self;
            let ops = merge(ops);
            async move {
                let (names, applied) = ops_of(&ops, None);
                let call = async {
                    let first = this
                        .scripts
                        .apply(&mut con, &keys, None, &this.id, &names, &applied)
                        .await;
                    match first {
                        // As for picks: a connection found dead reconnects.
                        Err(e) if e.is_connection_dropped() || e.is_io_error() => {
                            this.scripts
                                .apply(&mut con, &keys, None, &this.id, &names, &applied)
                                .await
                        }
                        answer => answer,
                    }
                };
                match tokio::time::timeout(REDIS_TIMEOUT * 10, call).await {
                    Ok(Ok(changes)) => this.announce_all(&ops, changes),
                    Ok(Err(e)) => {
                        tracing::debug!("cluster: {} settles and verdicts lost: {e}", ops.len())
                    }
                    Err(_) => {
                        tracing::debug!("cluster: {} settles and verdicts timed out", ops.len())
                    }
                }
            }
        });
        futures_util::future::join_all(calls).await;
    }

    fn announce_all(&self, ops: &[Op], changes: Vec<Option<crate::router::Transition>>) {
        for (op, change) in ops.iter().zip(changes) {
            if let (Some(t), super::What::Record { model, .. }) = (change, &op.what) {
                self.announce(model.clone(), op.dep.clone(), t);
            }
        }
    }
}

/// The deployments `ops` name (after `deps`, when given, whose order the
/// indices then follow) and the ops as the functions take them.
fn ops_of<'a>(
    ops: &'a [Op],
    deps: Option<&'a [DepSpec]>,
) -> (Vec<&'a str>, Vec<(usize, Applied<'a>)>) {
    let mut names: Vec<&str> = deps
        .map(|d| d.iter().map(|d| &*d.name).collect())
        .unwrap_or_default();
    let mut applied = Vec::with_capacity(ops.len());
    for op in ops {
        let i = match names.iter().position(|n| *n == &*op.dep) {
            Some(i) => i,
            None => {
                names.push(&op.dep);
                names.len() - 1
            }
        };
        applied.push((i, op.what.as_applied()));
    }
    (names, applied)
}

impl Op {
    /// A verdict that can cool a deployment down.
    fn is_urgent(&self) -> bool {
        matches!(
            self.what,
            super::What::Record {
                verdict: crate::router::Verdict::RateLimited(_) | crate::router::Verdict::Failed,
                ..
            }
        )
    }
}

impl super::What {
    fn as_applied(&self) -> Applied<'_> {
        match self {
            super::What::Settle { counted, spent } => Applied::Settle {
                counted: *counted,
                spent: *spent,
            },
            super::What::Undo { counted } => Applied::Undo { counted: *counted },
            super::What::Release { lease } => Applied::Release { lease },
            super::What::Record {
                verdict, policy, ..
            } => Applied::Record {
                verdict: *verdict,
                policy,
            },
        }
    }
}
