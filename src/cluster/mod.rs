//! Several instances acting as one gateway through Redis: the routing state
//! of every model (the windows of every limit, leases of requests in
//! flight, round-robin credits, cooldowns, probes, enabled flags) lives in
//! Redis and is changed only by Lua functions that implement the router
//! core's rules ([`shared`], called as [`functions`] says); membership is a heartbeat with a TTL and
//! changes travel by pub/sub ([`member`]); leases are renewed while their
//! requests run ([`lease`]); requests waiting for room on one instance
//! learn of room freed on another by pub/sub ([`freed`]).
//!
//! On the request path a pick is one function call, bounded by
//! [`REDIS_TIMEOUT`]; settling the tokens, releasing a lease and recording
//! how an attempt went leave the path (queued, then sent side by side over the one multiplexed
//! connection, which pipelines them). When Redis cannot be reached the
//! instance says so once and goes on alone with its share of each limit
//! (`on_redis_down = "local"`) or answers 503 (`"closed"`); when Redis is
//! back it rejoins and adds what it admitted meanwhile.

mod batch;
mod freed;
pub mod functions;
mod keys;
mod lease;
pub mod member;
mod merge;
mod relay;
pub mod responses;
pub mod shared;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use redis::aio::ConnectionManager;

use crate::config::{ClusterConfig, OnRedisDown, RoutingConfig};
use crate::events::{DeploymentChange, DeploymentEvent, Event, EventBus, unix_ms};
use crate::router::{Need, Reservation, Spent, Transition, Verdict};
pub use lease::Lease;
pub use member::{Change, Instance};
use shared::{AloneSecond, Counted, DepSpec, ModelKeys, PickRequest, Picked, Scripts};
use shared::{SharedStatus, Windows};

/// The longest a request waits for Redis: a hung or unreachable Redis
/// costs a request no more than this before the instance decides alone.
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(100);

/// Why the cluster could not decide.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Down {
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("Redis: {0}")]
    Redis(String),
}

/// Per model and deployment, the windows its limits keep and what was
/// admitted alone by (Unix) second.
type AdmittedAlone = HashMap<(Arc<str>, Arc<str>), (Windows, Vec<AloneSecond>)>;

/// Work for Redis that does not hold up a request.
pub(super) struct Op {
    keys: ModelKeys,
    dep: Arc<str>,
    what: What,
}

enum What {
    Settle {
        counted: Counted,
        spent: Spent,
    },
    Undo {
        counted: Counted,
    },
    Release {
        lease: String,
    },
    Record {
        model: Arc<str>,
        verdict: Verdict,
        policy: RoutingConfig,
    },
}

/// A probe the cluster hands out holds its deployment back at most this
/// long, should the instance that took it never report.
pub const PROBE_HOLD: Duration = Duration::from_secs(120);

pub struct Cluster {
    pub name: String,
    /// This instance, as the others see it.
    pub id: Arc<str>,
    pub advertise: Option<String>,
    pub on_down: OnRedisDown,
    con: ConnectionManager,
    /// For pub/sub, which needs a connection of its own.
    client: redis::Client,
    /// The channel waiting requests learn of freed room on (see [`freed`]).
    freed: String,
    scripts: Arc<Scripts>,
    up: AtomicBool,
    /// Since when (Unix ms) Redis has been up or down.
    since_ms: AtomicU64,
    /// The instances seen at the last heartbeat, this one included.
    instances: ArcSwap<Vec<Instance>>,
    /// Itself, for the tasks of the lanes it starts (see [`batch`]).
    this: std::sync::Weak<Cluster>,
    events: EventBus,
    /// What was admitted alone while Redis was down, per model and
    /// deployment, pushed when it is back.
    admitted_alone: Mutex<AdmittedAlone>,
    /// How long a lease holds without renewal.
    pub lease_ttl: Duration,
    /// The leases this instance's requests hold (see [`lease`]).
    leases: lease::Held,
    /// Each model's key names, made once (see [`ModelKeys`]).
    model_keys: std::sync::RwLock<HashMap<Arc<str>, ModelKeys>>,
}

impl Cluster {
    /// The cluster of `config`; connects lazily, so a Redis that is down
    /// at start does not keep the instance from serving.
    pub fn new(
        config: &ClusterConfig,
        events: EventBus,
        listen: &str,
    ) -> anyhow::Result<Arc<Cluster>> {
        use redis::IntoConnectionInfo;
        let info = config
            .redis_url
            .expose()
            .into_connection_info()
            // Not the URL: it may hold a password.
            .map_err(|e| anyhow::anyhow!("cluster.redis_url: {}", describe(&e)))?
            // Each pick is one small request waiting for its answer: Nagle
            // would hold it back for the answer to the one before.
            .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
        let client = redis::Client::open(info)
            .map_err(|e| anyhow::anyhow!("cluster.redis_url: {}", describe(&e)))?;
        let con = ConnectionManager::new_lazy_with_config(client.clone(), manager_config())
            .map_err(|e| anyhow::anyhow!("cluster.redis_url: {}", describe(&e)))?;
        let id: Arc<str> = member::instance_id(listen).into();
        events.set_instance(id.clone());
        Ok(Arc::new_cyclic(|this| Cluster {
            name: config.name.clone(),
            id,
            advertise: config.advertise.clone(),
            on_down: config.on_redis_down,
            con,
            client,
            freed: freed::channel(&config.name),
            scripts: Arc::new(Scripts::default()),
            // Until the first heartbeat says otherwise.
            up: AtomicBool::new(true),
            since_ms: AtomicU64::new(unix_ms()),
            instances: ArcSwap::from_pointee(Vec::new()),
            this: this.clone(),
            events,
            admitted_alone: Mutex::new(HashMap::new()),
            lease_ttl: config.lease_ttl,
            leases: lease::Held::default(),
            model_keys: std::sync::RwLock::default(),
        }))
    }

    /// A model's key names: made on its first request and kept (a model
    /// gone from the config leaves a few strings behind, bounded by the
    /// models ever configured).
    pub fn keys(&self, model: &str) -> ModelKeys {
        let known = self.model_keys.read().unwrap_or_else(|e| e.into_inner());
        if let Some(keys) = known.get(model) {
            return keys.clone();
        }
        drop(known);
        let keys = ModelKeys::new(&self.name, model);
        let mut known = self.model_keys.write().unwrap_or_else(|e| e.into_inner());
        known.entry(model.into()).or_insert(keys).clone()
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub fn since_ms(&self) -> u64 {
        self.since_ms.load(Ordering::Relaxed)
    }

    pub fn instances(&self) -> arc_swap::Guard<Arc<Vec<Instance>>> {
        self.instances.load()
    }

    /// How many instances share the limits: the ones last seen alive.
    pub fn share(&self) -> u64 {
        (self.instances.load().len() as u64).max(1)
    }

    /// Records that Redis went away; says so once.
    pub fn mark_down(&self, why: &Down) {
        if self.up.swap(false, Ordering::Relaxed) {
            self.since_ms.store(unix_ms(), Ordering::Relaxed);
            match self.on_down {
                OnRedisDown::Local => tracing::warn!(
                    "cluster {}: {why}; going on alone with 1/{} of each limit until it is back",
                    self.name,
                    self.share()
                ),
                OnRedisDown::Closed => tracing::warn!(
                    "cluster {}: {why}; answering 503 until it is back (on_redis_down = \"closed\")",
                    self.name
                ),
            }
        }
    }

    fn mark_up(&self) -> bool {
        let came_back = !self.up.swap(true, Ordering::Relaxed);
        if came_back {
            self.since_ms.store(unix_ms(), Ordering::Relaxed);
            tracing::info!("cluster {}: Redis is back; sharing state again", self.name);
        }
        came_back
    }

    /// One shared pick, bounded by [`REDIS_TIMEOUT`]: batched with the
    /// picks of other requests of the model waiting at the same time.
    pub async fn pick(
        &self,
        keys: ModelKeys,
        deps: Vec<DepSpec>,
        request: PickRequest,
    ) -> Result<Picked, Down> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = batch::PickJob {
            keys,
            deps,
            request,
            reply,
        };
        let sent = self.lane().is_some_and(|lane| lane.picks.send(job).is_ok());
        if !sent {
            return Err(Down::Redis("the cluster is stopping".into()));
        }
        match tokio::time::timeout(REDIS_TIMEOUT, answer).await {
            Ok(Ok(picked)) => picked,
            Ok(Err(_)) | Err(_) => Err(Down::Timeout(REDIS_TIMEOUT)),
        }
    }

    /// Queues the settling of what a shared pick counted.
    pub fn settle(&self, keys: ModelKeys, dep: Arc<str>, counted: Counted, spent: Spent) {
        self.queue(Op {
            keys,
            dep,
            what: What::Settle { counted, spent },
        })
    }

    /// Queues the undoing of what a shared pick counted for a request
    /// never sent.
    pub fn undo(&self, keys: ModelKeys, dep: Arc<str>, counted: Counted) {
        self.queue(Op {
            keys,
            dep,
            what: What::Undo { counted },
        })
    }

    /// Queues how an attempt went; the change it makes is announced when
    /// Redis has it.
    pub fn record(
        &self,
        keys: ModelKeys,
        model: Arc<str>,
        dep: Arc<str>,
        verdict: Verdict,
        policy: RoutingConfig,
    ) {
        self.queue(Op {
            keys,
            dep,
            what: What::Record {
                model,
                verdict,
                policy,
            },
        });
    }

    /// Notes a request admitted alone (its tokens, and its requests, input
    /// and output for the windows its deployment's limits keep), to be
    /// added to the shared windows later; where it was noted, to correct it
    /// to the usage.
    pub fn admitted_alone(
        &self,
        model: &Arc<str>,
        dep: &Arc<str>,
        need: Need,
        windows: Windows,
    ) -> Reservation {
        let sec = unix_ms() / 1000;
        let mut log = self
            .admitted_alone
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let (kept, entry) = log.entry((model.clone(), dep.clone())).or_default();
        *kept = windows;
        if entry.last().is_none_or(|s| s.second != sec) {
            entry.push(AloneSecond {
                second: sec,
                ..AloneSecond::default()
            });
        }
        if let Some(s) = entry.last_mut() {
            s.tokens += need.total();
            s.requests += 1;
            s.input += need.input;
            s.output += need.output;
        }
        // Only the last minute can still matter.
        entry.retain(|s| s.second + 60 > sec);
        Reservation::at(sec, need.total()).with_output(need.output)
    }

    /// A request admitted alone, corrected to what it used (`undo`: it was
    /// never sent, and counts nothing). When it was pushed meanwhile the
    /// correction is lost: the shared windows then count the estimate,
    /// which errs on the safe side.
    pub fn settle_alone(
        &self,
        model: &Arc<str>,
        dep: &Arc<str>,
        r: Reservation,
        spent: Spent,
        undo: bool,
    ) {
        let mut log = self
            .admitted_alone
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some((_, entry)) = log.get_mut(&(model.clone(), dep.clone()))
            && let Some(s) = entry.iter_mut().find(|s| s.second == r.second())
        {
            let fix = |n: &mut u64, reserved: u64, actual: u64| {
                *n = (*n + actual).saturating_sub(reserved)
            };
            fix(&mut s.tokens, r.tokens(), spent.total());
            fix(&mut s.input, r.tokens() - r.output(), spent.input);
            fix(&mut s.output, r.output(), spent.output);
            if undo {
                s.requests = s.requests.saturating_sub(1);
            }
        }
    }

    /// The shared enabled flag, written; whether it changed.
    pub async fn toggle(
        &self,
        model: &str,
        dep: &str,
        enabled: bool,
        configured: bool,
    ) -> Result<bool, Down> {
        let mut con = self.con.clone();
        let keys = self.keys(model);
        let call = self
            .scripts
            .toggle(&mut con, &keys, dep, enabled, configured);
        match tokio::time::timeout(REDIS_TIMEOUT * 5, call).await {
            Ok(Ok(changed)) => Ok(changed),
            Ok(Err(e)) => Err(Down::Redis(e.to_string())),
            Err(_) => Err(Down::Timeout(REDIS_TIMEOUT * 5)),
        }
    }

    /// The cluster's view of a model's deployments (`(name, enabled in the config)`).
    pub async fn state(
        &self,
        model: &str,
        deps: &[(&str, bool)],
    ) -> Result<Vec<SharedStatus>, Down> {
        let mut con = self.con.clone();
        let keys = self.keys(model);
        let call = self.scripts.state(&mut con, &keys, None, deps);
        match tokio::time::timeout(REDIS_TIMEOUT * 5, call).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(Down::Redis(e.to_string())),
            Err(_) => Err(Down::Timeout(REDIS_TIMEOUT * 5)),
        }
    }

    /// Sends what was admitted alone; after Redis comes back.
    async fn push_admitted(&self) {
        let log = std::mem::take(
            &mut *self
                .admitted_alone
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        for ((model, dep), (windows, seconds)) in log {
            let mut con = self.con.clone();
            let keys = self.keys(&model);
            if let Err(e) = self
                .scripts
                .push(&mut con, &keys, &dep, None, windows, &seconds)
                .await
            {
                tracing::debug!("cluster: could not add what {model}/{dep} admitted alone: {e}");
            }
        }
    }

    /// A change the cluster's state made, as the local router announces its own.
    fn announce(&self, model: Arc<str>, deployment: Arc<str>, t: Transition) {
        let change = match t {
            Transition::CoolingDown { cause, for_ } => {
                tracing::warn!(%model, %deployment, ?cause, seconds = for_.as_secs_f64(), "deployment cooling down (cluster)");
                DeploymentChange::CoolingDown {
                    cause,
                    seconds: for_.as_secs_f64(),
                }
            }
            Transition::Recovered => {
                tracing::info!(%model, %deployment, "deployment recovered (cluster)");
                DeploymentChange::Recovered
            }
        };
        self.events.publish(Event::Deployment(DeploymentEvent {
            at_ms: unix_ms(),
            model,
            deployment,
            change,
            instance: None,
        }));
    }

    pub(crate) fn connection(&self) -> ConnectionManager {
        self.con.clone()
    }

    /// Loads the cluster's functions into Redis (when a connection is made
    /// and when Redis is back: it may have restarted empty), so that the
    /// first calls need not; best effort (a call that finds them gone
    /// loads them itself). Whether it did.
    async fn load_functions(&self, mut con: ConnectionManager) -> bool {
        match tokio::time::timeout(REDIS_TIMEOUT * 10, self.scripts.load(&mut con)).await {
            Ok(Ok(_)) => true,
            Ok(Err(e)) => {
                tracing::debug!("cluster: could not load the functions: {e}");
                false
            }
            Err(_) => {
                tracing::debug!("cluster: loading the functions timed out");
                false
            }
        }
    }
}

/// Every connection's: bounded connects and answers, quick reconnects.
fn manager_config() -> redis::aio::ConnectionManagerConfig {
    redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(REDIS_TIMEOUT))
        .set_response_timeout(Some(REDIS_TIMEOUT))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500))
}

/// What is wrong with a Redis URL, without the URL (it may hold a password).
fn describe(e: &redis::RedisError) -> String {
    format!("not a usable Redis URL ({:?})", e.kind())
}
