//! The gateway: OpenAI-compatible HTTP in (axum), upstream calls out (hyper-util's pooled client).
//!
//! State shared by all requests:
//! - `settings` and the model `table` sit behind `ArcSwap`, so a request reads
//!   them without locking and a reload or an added model swaps them whole;
//! - each model's routing state (the router core's [`Pool`] plus the
//!   deployments' connection details) sits behind its own short mutex that is
//!   never held across an await.

mod admin;
mod answer;
mod attempt;
mod auth;
mod chain;
mod client;
pub mod clustered;
pub mod control;
pub mod door;
pub mod error;
mod flight;
mod framing;
mod front;
mod give_up;
mod header_timer;
pub mod json;
mod metrics;
mod named;
mod probe;
pub mod provider;
mod proxy;
pub mod queue;
mod ratelimit;
mod refusal;
mod relay;
mod reload;
pub mod request;
mod server;
mod shared;
pub mod skim;
pub mod sse;
pub mod stats;
pub mod testing;
pub mod upstream;
mod waiting;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::Router;
use axum::routing::{get, post, put};
use tokio::net::TcpListener;

use crate::config::{ApiKey, Config, ServerConfig};
use crate::events::EventBus;
use crate::router::Pool;
pub use auth::check_exposure;
pub use control::{DeploymentView, GatewayView, ModelView, StateView};
pub use error::ApiError;
pub use testing::TestReport;
use upstream::Upstream;

/// Cheap to clone; all clones share one gateway.
#[derive(Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
}

struct Shared {
    settings: ArcSwap<Settings>,
    table: ArcSwap<RouteTable>,
    /// One upstream client per serving thread, plus one (index 0) for
    /// everything else; see `server`.
    clients: Vec<upstream::Client>,
    events: EventBus,
    /// `[cluster]`: the routing state shared with other instances.
    cluster: Option<Arc<crate::cluster::Cluster>>,
    metrics: metrics::Metrics,
    epoch: Instant,
    /// Unix time in milliseconds at start.
    started_ms: u64,
    config_path: PathBuf,
    /// Serialises edits of the config file.
    edits: tokio::sync::Mutex<()>,
    /// False once the config file refused a change (in a cluster).
    config_writable: AtomicBool,
    next_id: AtomicU64,
    /// `--allow-unauthenticated`: the operator vouches for whatever is in front.
    open: AtomicBool,
    /// Cancelled when `serve` starts to stop: streams that never end by
    /// themselves (`/admin/events`) end then, rather than hold the drain.
    stopping: tokio_util::sync::CancellationToken,
    /// The address `serve` listens on, once it does.
    bound: std::sync::OnceLock<SocketAddr>,
    /// The config file's version the gateway was built from.
    loaded_stamp: Option<reload::Stamp>,
    /// Which deployment produced each stored response.
    responses: door::responses::memory::Memory,
}

/// The server part of the config, as requests need it.
#[derive(Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    pub api_keys: Vec<ApiKey>,
    pub admin_key: Option<ApiKey>,
    pub request_timeout: Duration,
    pub first_byte_timeout: Duration,
    pub stream_idle_timeout: Option<Duration>,
    pub header_read_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub max_body_bytes: usize,
    pub workers: usize,
}

impl From<&ServerConfig> for Settings {
    fn from(s: &ServerConfig) -> Self {
        Self {
            listen: s.listen,
            api_keys: s.api_keys.clone(),
            admin_key: s.admin_key.clone(),
            request_timeout: s.request_timeout,
            first_byte_timeout: s.first_byte_timeout,
            stream_idle_timeout: s.stream_idle_timeout,
            header_read_timeout: s.header_read_timeout,
            shutdown_timeout: s.shutdown_timeout,
            max_body_bytes: s.max_body_bytes,
            workers: s.workers,
        }
    }
}

#[derive(Default)]
struct RouteTable {
    models: Vec<Arc<ModelRoute>>,
    /// foldhash rather than SipHash: looked up on every request, and its
    /// keys come from the config, so a client's model names cannot crowd it.
    by_name: HashMap<Arc<str>, usize, foldhash::fast::RandomState>,
}

impl RouteTable {
    fn get(&self, name: &str) -> Option<&Arc<ModelRoute>> {
        self.by_name.get(name).map(|&i| &self.models[i])
    }

    fn insert(&mut self, route: Arc<ModelRoute>) {
        self.by_name.insert(route.name.clone(), self.models.len());
        self.models.push(route);
    }
}

/// One model: its name and its routing state.
pub struct ModelRoute {
    pub name: Arc<str>,
    /// The name as `x-switchboard-model` carries it (percent-encoded where
    /// a header cannot hold it, like the deployment's).
    header_value: axum::http::HeaderValue,
    /// Its requests are going to a fallback model (see `chain`): read on
    /// every answer, so an atomic rather than the state's lock.
    falling_back: AtomicBool,
    /// Sessions may stick: affinity is on and there is more than one
    /// deployment to stick to. Read on every request, before any lock.
    sticky: AtomicBool,
    /// Some deployment has a limit. Read on every answer.
    limited: AtomicBool,
    /// Requests waiting for room.
    queue: queue::Queue,
    state: Mutex<ModelState>,
}

struct ModelState {
    pool: Pool,
    upstreams: Vec<Arc<Upstream>>,
    policy: ModelPolicy,
    /// The fallback models its requests have gone to (each said once),
    /// while they do.
    fell_back_to: Vec<Arc<str>>,
}

/// What a model's config says beyond its deployments: where its requests
/// go when it has nothing left, and whether sessions stick.
#[derive(Debug, Clone)]
pub(crate) struct ModelPolicy {
    pub fallbacks: Arc<[Arc<str>]>,
    pub context_window_fallbacks: Arc<[Arc<str>]>,
    pub content_policy_fallbacks: Arc<[Arc<str>]>,
    pub report_served_model: bool,
    pub affinity: crate::config::Affinity,
    pub affinity_ttl: Duration,
    pub queueing: crate::config::Queueing,
}

impl From<&crate::config::ModelConfig> for ModelPolicy {
    fn from(m: &crate::config::ModelConfig) -> Self {
        let names = |list: &[String]| list.iter().map(|n| Arc::from(n.as_str())).collect();
        Self {
            fallbacks: names(&m.fallbacks),
            context_window_fallbacks: names(&m.context_window_fallbacks),
            content_policy_fallbacks: names(&m.content_policy_fallbacks),
            report_served_model: m.report_served_model,
            affinity: m.affinity,
            affinity_ttl: m.affinity_ttl,
            queueing: m.queueing,
        }
    }
}

impl ModelRoute {
    fn new(
        model: &crate::config::ModelConfig,
        routing: &crate::config::RoutingConfig,
    ) -> Arc<Self> {
        let mut pool = Pool::new(routing.clone());
        let mut upstreams = Vec::new();
        for d in &model.deployments {
            let up = Upstream::new(d.clone());
            let index = pool.push(up.name.clone(), d, d.enabled);
            pool.set_priority(index, d.priority);
            upstreams.push(Arc::new(up));
        }
        Arc::new(ModelRoute {
            name: model.name.as_str().into(),
            header_value: upstream::header_safe(&model.name),
            falling_back: AtomicBool::new(false),
            sticky: AtomicBool::new(false),
            limited: AtomicBool::new(false),
            queue: queue::Queue::default(),
            state: Mutex::new(ModelState {
                pool,
                upstreams,
                policy: ModelPolicy::from(model),
                fell_back_to: Vec::new(),
            }),
        })
        .with_shape()
    }

    /// Sets `sticky` and `limited` from the state (after any change of
    /// deployments or policy).
    fn note_shape(&self, state: &ModelState) {
        let sticky = state.policy.affinity == crate::config::Affinity::Session
            && state.pool.live().nth(1).is_some();
        self.sticky.store(sticky, Ordering::Relaxed);
        let limited = state
            .pool
            .live()
            .any(|i| *state.pool.limits(i) != crate::router::Limits::default());
        self.limited.store(limited, Ordering::Relaxed);
    }

    /// Whether any deployment has a limit: its answers then say what the
    /// model has left (`x-ratelimit-*`).
    fn limited(&self) -> bool {
        self.limited.load(Ordering::Relaxed)
    }

    fn with_shape(self: Arc<Self>) -> Arc<Self> {
        let state = self.lock();
        self.note_shape(&state);
        drop(state);
        self
    }

    /// Whether a request's session key matters for this model.
    fn sticky(&self) -> bool {
        self.sticky.load(Ordering::Relaxed)
    }

    /// The lock is only ever held for a few field updates; a panic while
    /// holding it cannot leave the pool half-changed in a way that matters
    /// more than refusing all traffic would, so a poisoned lock is used as is.
    fn lock(&self) -> MutexGuard<'_, ModelState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Consecutive failures before a cooldown, as the routing settings say.
    fn failure_threshold(&self) -> u32 {
        self.lock().pool.policy().failure_threshold.max(1)
    }
}

impl Gateway {
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let clients = upstream::clients(
            config
                .server
                .first_byte_timeout
                .min(Duration::from_secs(10)),
            config.server.workers + 1,
        )?;
        let mut table = RouteTable::default();
        for model in &config.models {
            table.insert(ModelRoute::new(model, &config.routing));
        }
        let events = EventBus::new();
        let cluster = config
            .cluster
            .as_ref()
            .map(|c| {
                crate::cluster::Cluster::new(c, events.clone(), &config.server.listen.to_string())
            })
            .transpose()?;
        Ok(Self {
            shared: Arc::new(Shared {
                settings: ArcSwap::from_pointee(Settings::from(&config.server)),
                table: ArcSwap::from_pointee(table),
                clients,
                events,
                cluster,
                metrics: metrics::Metrics::new(crate::events::unix_ms()),
                epoch: Instant::now(),
                started_ms: crate::events::unix_ms(),
                config_path: config.path.clone(),
                edits: tokio::sync::Mutex::new(()),
                config_writable: AtomicBool::new(true),
                next_id: AtomicU64::new(1),
                open: AtomicBool::new(false),
                stopping: tokio_util::sync::CancellationToken::new(),
                bound: std::sync::OnceLock::new(),
                loaded_stamp: reload::stamp(&config.path).ok(),
                responses: Default::default(),
            }),
        })
    }

    /// Whether the gateway knows which deployment produced response `id`.
    pub fn remembers_response(&self, id: &str) -> bool {
        self.shared.responses.producer(id, self.now()).is_some()
    }

    /// Time since the gateway started: the router core's clock.
    fn now(&self) -> Duration {
        self.shared.epoch.elapsed()
    }

    /// The router core's clock at `t`: one reading of the clock serves
    /// what else it was taken for too (a read costs 25–50 ns in a VM, and
    /// a request took sixteen).
    fn at(&self, t: Instant) -> Duration {
        t.saturating_duration_since(self.shared.epoch)
    }

    /// Wall-clock milliseconds at `t`, counted from the start's.
    fn unix_ms_at(&self, t: Instant) -> u64 {
        self.shared.started_ms + self.at(t).as_millis() as u64
    }

    /// This thread's upstream client.
    fn client(&self) -> &upstream::Client {
        let clients = &self.shared.clients;
        clients.get(server::shard_index()).unwrap_or(&clients[0])
    }

    fn next_id(&self) -> u64 {
        self.shared.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Lets the admin API answer remote clients without an admin key (the
    /// `--allow-unauthenticated` flag).
    pub fn allow_unauthenticated(&self, allow: bool) {
        self.shared.open.store(allow, Ordering::Relaxed);
    }

    pub fn unauthenticated_allowed(&self) -> bool {
        self.shared.open.load(Ordering::Relaxed)
    }

    pub fn events(&self) -> &EventBus {
        &self.shared.events
    }

    /// The cluster this instance is part of, if any.
    pub fn cluster(&self) -> Option<&Arc<crate::cluster::Cluster>> {
        self.shared.cluster.as_ref()
    }

    pub fn settings(&self) -> arc_swap::Guard<Arc<Settings>> {
        self.shared.settings.load()
    }

    pub fn config_path(&self) -> &std::path::Path {
        &self.shared.config_path
    }

    /// The HTTP routes of the contract.
    pub fn router(&self) -> Router {
        let v1 = Router::new()
            .route("/v1/chat/completions", post(proxy::chat_completions))
            .route("/v1/completions", post(proxy::completions))
            .route("/v1/embeddings", post(proxy::embeddings))
            .route("/v1/messages", post(proxy::messages))
            .route(
                "/v1/responses",
                post(proxy::responses).get(proxy::responses_upgrade),
            )
            .route(
                "/v1/responses/{id}",
                get(door::responses::by_id::response).delete(door::responses::by_id::response),
            )
            .route(
                "/v1/responses/{id}/input_items",
                get(door::responses::by_id::input_items),
            )
            .route(
                "/v1/responses/{id}/cancel",
                post(door::responses::by_id::cancel),
            )
            .route(
                "/v1/messages/count_tokens",
                post(door::messages::count::handle),
            )
            // `ANTHROPIC_BASE_URL` given with the `/v1` the dashboard shows.
            .route("/v1/v1/messages", post(proxy::messages))
            .route(
                "/v1/v1/messages/count_tokens",
                post(door::messages::count::handle),
            )
            .route("/v1/models", get(proxy::models))
            .route("/v1/models/{*model}", get(proxy::model));
        let admin = Router::new()
            .route("/admin/state", get(admin::state))
            .route("/admin/events", get(admin::events))
            .route(
                "/admin/models/{model}/deployments/{deployment}/enabled",
                put(admin::set_enabled),
            )
            .route(
                "/admin/models/{model}/deployments",
                post(admin::add_deployment),
            )
            .route(
                "/admin/models/{model}/deployments/{deployment}/test",
                post(admin::test),
            )
            .route("/metrics", get(admin::metrics));
        Router::new()
            .merge(v1)
            .merge(admin)
            .route("/health", get(|| async { "ok" }))
            // Claude Code checks that its base URL answers (`HEAD /`).
            .route("/", get(|| async { "switchboard" }))
            .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
            .fallback(|| async {
                ApiError::NotFound("Unknown path; see /v1/models and /health.".into())
            })
            // Bodies are read by the handlers themselves, against the configured limit.
            .layer(axum::extract::DefaultBodyLimit::disable())
            .with_state(self.clone())
    }
}

/// The address a request came from.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// Binds `addr` and serves in a background task; returns the bound address.
/// For tests and the demo: the gateway stops when the token is cancelled.
pub async fn spawn(
    gateway: Gateway,
    addr: SocketAddr,
    stop: tokio_util::sync::CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = gateway
            .serve(listener, async move { stop.cancelled().await })
            .await;
    });
    Ok(bound)
}
