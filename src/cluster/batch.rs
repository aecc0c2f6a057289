//! Batching what goes to Redis: concurrent requests' picks of one model
//! become one script call, and the settles and verdicts waiting to be sent
//! become one call per model.
//!
//! Each thread that serves requests has its own lane: a connection to
//! Redis and the tasks that batch over it, on that thread's runtime. A
//! request then waits for Redis without a hop to another thread and back
//! (on this box each cost about as much as the round trip to Redis).
//!
//! A script call costs Redis a few microseconds before its first line, and
//! each command a round trip's share of system calls on both sides; under
//! load, the requests that arrive while a batch is out wait for the next one
//! (at most one round trip) instead of each paying for its own. Alone, a
//! request's pick goes at once: nothing waits to fill a batch.

use std::cell::RefCell;
use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{mpsc, oneshot};

use super::shared::{Applied, DepSpec, ModelKeys, PickRequest, Picked};
use super::{Cluster, Down, Op, PROBE_HOLD, REDIS_TIMEOUT};
use redis::aio::ConnectionManager;

/// The most picks in one script call.
const MAX_PICKS: usize = 128;
/// Batches of picks out at once: while they are, the next one fills.
const IN_FLIGHT: usize = 2;
/// The most settles and verdicts taken at once.
const MAX_OPS: usize = 1024;

/// One request's pick, waiting for its batch.
pub(super) struct PickJob {
    pub keys: ModelKeys,
    pub deps: Vec<DepSpec>,
    pub request: PickRequest,
    pub reply: oneshot::Sender<Result<Picked, Down>>,
}

/// Picks of one model with the same deployments, in arrival order.
struct Group {
    keys: ModelKeys,
    deps: Vec<DepSpec>,
    requests: Vec<PickRequest>,
    replies: Vec<oneshot::Sender<Result<Picked, Down>>>,
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
            tokio::spawn(async move {
                // Made here, so that its connection lives on this runtime.
                let Ok(con) = ConnectionManager::new_lazy_with_config(
                    me.client.clone(),
                    super::manager_config(),
                ) else {
                    return;
                };
                tokio::join!(
                    me.clone().run_picks(picks_rx, con.clone()),
                    me.write_ops(ops_rx, con)
                );
            });
            let lane = Lane {
                cluster: key,
                picks,
                ops,
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

    /// Runs a lane's picks until its thread's runtime stops.
    async fn run_picks(
        self: Arc<Self>,
        mut rx: mpsc::UnboundedReceiver<PickJob>,
        con: ConnectionManager,
    ) {
        let mut jobs = Vec::new();
        let mut out = FuturesUnordered::new();
        loop {
            tokio::select! {
                n = rx.recv_many(&mut jobs, MAX_PICKS), if out.len() < IN_FLIGHT => {
                    if n == 0 {
                        break;
                    }
                    out.push(self.pick_batch(std::mem::take(&mut jobs), con.clone()));
                }
                Some(()) = out.next(), if !out.is_empty() => {}
            }
        }
    }

    async fn pick_batch(&self, jobs: Vec<PickJob>, con: ConnectionManager) {
        let calls = group(jobs).into_iter().map(|g| {
            let mut con = con.clone();
            async move {
                let call = self.scripts.pick_many(
                    &mut con,
                    &g.keys,
                    None,
                    &g.deps,
                    PROBE_HOLD,
                    &g.requests,
                );
                match tokio::time::timeout(REDIS_TIMEOUT, call).await {
                    Ok(Ok(picked)) => {
                        for (p, reply) in picked.into_iter().zip(g.replies) {
                            let _ = reply.send(Ok(p));
                        }
                    }
                    Ok(Err(e)) => {
                        let down = Down::Redis(e.to_string());
                        for reply in g.replies {
                            let _ = reply.send(Err(down.clone()));
                        }
                    }
                    // The requests' own timeouts answer them.
                    Err(_) => {}
                }
            }
        });
        futures_util::future::join_all(calls).await;
    }

    /// Runs a lane's off-path writes: what is waiting goes out as one
    /// script call per model, the models' side by side over the
    /// multiplexed connection.
    async fn write_ops(
        self: Arc<Self>,
        mut rx: mpsc::UnboundedReceiver<Op>,
        con: ConnectionManager,
    ) {
        let mut batch = Vec::new();
        while rx.recv_many(&mut batch, MAX_OPS).await > 0 {
            let mut models: Vec<(ModelKeys, Vec<Op>)> = Vec::new();
            for op in batch.drain(..) {
                match models.iter_mut().find(|(k, _)| *k == op.keys) {
                    Some((_, ops)) => ops.push(op),
                    None => models.push((op.keys.clone(), vec![op])),
                }
            }
            let calls = models
                .into_iter()
                .map(|(keys, ops)| self.apply_ops(keys, ops, con.clone()));
            futures_util::future::join_all(calls).await;
        }
    }

    async fn apply_ops(&self, keys: ModelKeys, ops: Vec<Op>, mut con: ConnectionManager) {
        let mut names: Vec<&str> = Vec::new();
        let mut applied = Vec::with_capacity(ops.len());
        for op in &ops {
            let i = match names.iter().position(|n| *n == &*op.dep) {
                Some(i) => i,
                None => {
                    names.push(&op.dep);
                    names.len() - 1
                }
            };
            applied.push((i, op.what.as_applied()));
        }
        let call = self.scripts.apply(&mut con, &keys, None, &names, &applied);
        match tokio::time::timeout(REDIS_TIMEOUT * 10, call).await {
            Ok(Ok(changes)) => {
                for (op, change) in ops.iter().zip(changes) {
                    if let (Some(t), super::What::Record { model, .. }) = (change, &op.what) {
                        self.announce(model.clone(), op.dep.clone(), t);
                    }
                }
            }
            Ok(Err(e)) => tracing::debug!("cluster: {} settles and verdicts lost: {e}", ops.len()),
            Err(_) => tracing::debug!("cluster: {} settles and verdicts timed out", ops.len()),
        }
    }
}

impl super::What {
    fn as_applied(&self) -> Applied<'_> {
        match self {
            super::What::Settle {
                reservation,
                actual,
            } => Applied::Settle {
                reservation: *reservation,
                actual: *actual,
            },
            super::What::Record {
                verdict, policy, ..
            } => Applied::Record {
                verdict: *verdict,
                policy,
            },
        }
    }
}
