//! Routing events: what happened to each request and to each deployment.
//!
//! One broadcast channel carries them to every watcher (the `/admin/events`
//! stream, the dashboard). Publishing never waits: a watcher that falls behind
//! loses the oldest events and is told how many, the router never slows down.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::router::Cause;

/// How many events a slow watcher may lag behind before it loses some.
const CAPACITY: usize = 8192;
/// Deployment events kept for a slow follower of them: a burst of
/// cooldowns over every deployment of a large config.
const CHANGES_CAPACITY: usize = 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    Request(RequestEvent),
    Deployment(DeploymentEvent),
    /// Where a model's traffic goes changed: a tier spill, a session
    /// re-pinned, a fallback model.
    Route(RouteEvent),
    Config(ConfigEvent),
    /// Events this watcher did not get.
    Lagged(LaggedEvent),
}

impl Event {
    /// The instance it happened on, in a cluster.
    pub fn instance(&self) -> Option<&Arc<str>> {
        match self {
            Event::Request(r) => r.instance.as_ref(),
            Event::Deployment(d) => d.instance.as_ref(),
            Event::Route(r) => r.instance.as_ref(),
            Event::Config(_) | Event::Lagged(_) => None,
        }
    }

    fn tag(&mut self, id: &Arc<str>) {
        let slot = match self {
            Event::Request(r) => &mut r.instance,
            Event::Deployment(d) => &mut d.instance,
            Event::Route(r) => &mut r.instance,
            Event::Config(_) | Event::Lagged(_) => return,
        };
        if slot.is_none() {
            *slot = Some(id.clone());
        }
    }

    /// When it happened (for a request: when it arrived).
    pub fn at_ms(&self) -> u64 {
        match self {
            Event::Request(r) => r.at_ms,
            Event::Deployment(d) => d.at_ms,
            Event::Route(r) => r.at_ms,
            Event::Config(c) => c.at_ms,
            Event::Lagged(l) => l.at_ms,
        }
    }
}

/// Events a watcher did not get: it fell behind the gateway, or it was
/// disconnected for a while.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LaggedEvent {
    #[serde(default)]
    pub at_ms: u64,
    /// How many; None when it cannot be known (the gateway restarted).
    pub missed: Option<u64>,
    /// Why, when it was not falling behind: `connection lost for 12s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl LaggedEvent {
    /// `153 events missed (connection lost for 12s)`.
    pub fn describe(&self) -> String {
        let count = match self.missed {
            Some(1) => "1 event missed".to_string(),
            Some(n) => format!("{n} events missed"),
            None => "events missed".to_string(),
        };
        match &self.note {
            Some(note) => format!("{count} ({note})"),
            None => count,
        }
    }
}

/// The config file changed on disk and was reloaded, or could not be.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConfigEvent {
    pub at_ms: u64,
    /// False: the edit was invalid and the running config stays.
    pub applied: bool,
    /// What changed, or what is wrong (file, line, field).
    pub message: String,
}

/// One client request, from arrival to its last byte.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestEvent {
    pub id: u64,
    /// Unix time in milliseconds when the request arrived.
    pub at_ms: u64,
    pub model: Arc<str>,
    /// `chat.completions`, `completions`, `embeddings` or `messages`.
    pub endpoint: Cow<'static, str>,
    pub stream: bool,
    /// Deployments tried, in order, each with its outcome.
    pub attempts: Vec<Attempt>,
    /// The status the client got (for a stream cut short: still 200, with
    /// `outcome` saying what happened).
    pub status: u16,
    pub outcome: RequestOutcome,
    pub latency_ms: f64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// True when the token counts are the gateway's estimate, not the upstream's report.
    pub tokens_estimated: bool,
    /// In a cluster, the instance that served it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<Arc<str>>,
}

impl RequestEvent {
    /// The client protocol it came in by: `chat` (OpenAI's endpoints),
    /// `messages` (Anthropic's) or `responses` (OpenAI's Responses).
    pub fn door(&self) -> &'static str {
        match self.endpoint.as_ref() {
            e if e.starts_with("messages") => "messages",
            e if e.starts_with("responses") => "responses",
            _ => "chat",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestOutcome {
    /// Answered by an upstream (2xx).
    Ok,
    /// The upstream's client error passed back (400, 413, 422...).
    ClientError,
    /// Refused by the gateway before any upstream (bad body, unknown model, auth).
    Rejected,
    /// No deployment could answer (429/502/503/504 from the gateway).
    Failed,
    /// A stream that broke after its first byte reached the client.
    StreamInterrupted,
    /// The client went away before the answer was complete.
    ClientClosed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attempt {
    /// The model of the deployment, when a fallback model's (not the
    /// request's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<Arc<str>>,
    pub deployment: Arc<str>,
    pub outcome: AttemptOutcome,
    pub latency_ms: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AttemptOutcome {
    Ok {
        status: u16,
    },
    /// An HTTP error status from the upstream.
    Status {
        status: u16,
    },
    Timeout,
    Connect,
    /// The deployment's auth could not be worked out (a Vertex token
    /// endpoint that refused or failed): nothing was sent to the model.
    Auth,
    /// The upstream answered something that is not a valid response.
    InvalidResponse,
    /// The client left while this attempt was running.
    Cancelled,
    /// The deployment does not offer the endpoint (a 404 or 405 for
    /// completions or embeddings): skipped, nobody's failure.
    NotOffered {
        status: u16,
    },
}

impl AttemptOutcome {
    /// A short label: `✓`, `✗429`, `✗timeout`.
    pub fn label(&self) -> String {
        match self {
            AttemptOutcome::Ok { .. } => "✓".to_string(),
            AttemptOutcome::Status { status } => format!("✗{status}"),
            AttemptOutcome::Timeout => "✗timeout".to_string(),
            AttemptOutcome::Connect => "✗connect".to_string(),
            AttemptOutcome::Auth => "✗auth".to_string(),
            AttemptOutcome::InvalidResponse => "✗invalid".to_string(),
            AttemptOutcome::Cancelled => "✗cancelled".to_string(),
            AttemptOutcome::NotOffered { status } => format!("⊘{status}"),
        }
    }
}

/// A change in where a model's requests go.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RouteEvent {
    pub at_ms: u64,
    pub model: Arc<str>,
    pub change: RouteChange,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<Arc<str>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RouteChange {
    /// The best tier could not take a request: traffic goes to a lower one.
    Spilled {
        from_tier: u32,
        to_tier: u32,
        /// Why, per deployment of the tiers skipped: `ptu at limit`.
        reason: String,
    },
    /// Traffic is back on the best tier.
    Returned { tier: u32 },
    /// A session's deployment could not take its request: it moved.
    Repinned {
        from: Arc<str>,
        to: Arc<str>,
        reason: String,
    },
    /// The model had nothing left for a request: another model serves
    /// its requests (said once while it lasts; a "prompt too long" is said
    /// per request).
    FellBack { to_model: Arc<str>, reason: String },
    /// Its own deployments serve its requests again.
    ServesAgain { after: Arc<str> },
}

impl RouteEvent {
    /// `⤵ gpt-4o: tier 1 full (ptu at limit) → tier 2`.
    pub fn describe(&self) -> String {
        let m = &self.model;
        match &self.change {
            RouteChange::Spilled {
                from_tier: _,
                to_tier,
                reason,
            } => format!("⤵ {m}: {reason} → tier {to_tier}"),
            RouteChange::Returned { tier } => format!("⤴ {m}: back to tier {tier}"),
            RouteChange::Repinned { from, to, reason } => {
                format!("↻ {m}: a session moved {from} → {to} ({reason})")
            }
            RouteChange::FellBack { to_model, reason } => {
                format!("↪ {m} → {to_model}: {reason}")
            }
            RouteChange::ServesAgain { after } => {
                format!("⤴ {m}: its own deployments serve again (not {after})")
            }
        }
    }
}

/// A change in a deployment's state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeploymentEvent {
    pub at_ms: u64,
    pub model: Arc<str>,
    pub deployment: Arc<str>,
    pub change: DeploymentChange,
    /// In a cluster, the instance that saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<Arc<str>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DeploymentChange {
    CoolingDown {
        cause: Cause,
        seconds: f64,
    },
    Recovered,
    Enabled {
        enabled: bool,
    },
    Added,
    /// Taken out of the config file.
    Removed,
    /// Its endpoint, key, model ID or TPM limit changed in the config file.
    Updated,
}

/// An event as the bus hands it out, with its place in the gateway's
/// sequence: a watcher that reconnects knows from the numbers how many it
/// missed.
#[derive(Debug, Clone)]
pub struct Published {
    /// 1, 2, 3, … over the gateway's life, counting the events nobody watched.
    pub seq: u64,
    pub event: Arc<Event>,
}

impl std::ops::Deref for Published {
    type Target = Event;
    fn deref(&self) -> &Event {
        &self.event
    }
}

/// The publishing side; cheap to clone.
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Published>,
    /// Deployment events only (cooldowns, recoveries, toggles: a handful a
    /// minute), for the gateway's own tasks that follow them: listening on
    /// the whole bus would wake them, on another thread, for every request.
    changes: broadcast::Sender<Published>,
    seq: Arc<AtomicU64>,
    /// People watching (event streams, dashboards), as opposed to the
    /// gateway's own subscribers: a cluster relays events only for them.
    watchers: Arc<AtomicUsize>,
    /// In a cluster, this instance: every event is tagged with it.
    instance: Arc<OnceLock<Arc<str>>>,
}

/// Someone watching the events; counted until dropped.
#[derive(Debug)]
pub struct Watching(Arc<AtomicUsize>);

impl Drop for Watching {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(CAPACITY);
        let (changes, _) = broadcast::channel(CHANGES_CAPACITY);
        Self {
            tx,
            changes,
            seq: Arc::new(AtomicU64::new(0)),
            watchers: Arc::new(AtomicUsize::new(0)),
            instance: Arc::new(OnceLock::new()),
        }
    }

    /// Never blocks; with nobody watching it costs one atomic add.
    pub fn publish(&self, mut event: Event) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let all = self.tx.receiver_count() > 0;
        let change = matches!(event, Event::Deployment(_)) && self.changes.receiver_count() > 0;
        if all || change {
            if let Some(id) = self.instance.get() {
                event.tag(id);
            }
            let published = Published {
                seq,
                event: Arc::new(event),
            };
            if change {
                let _ = self.changes.send(published.clone());
            }
            if all {
                let _ = self.tx.send(published);
            }
        }
    }

    /// Tags every event from now on with this instance (a cluster's).
    pub fn set_instance(&self, id: Arc<str>) {
        let _ = self.instance.set(id);
    }

    /// This instance, in a cluster.
    pub fn instance(&self) -> Option<&Arc<str>> {
        self.instance.get()
    }

    /// Counts a watcher while the guard lives.
    pub fn watch(&self) -> Watching {
        self.watchers.fetch_add(1, Ordering::Relaxed);
        Watching(self.watchers.clone())
    }

    /// How many are watching.
    pub fn watchers(&self) -> usize {
        self.watchers.load(Ordering::Relaxed)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Published> {
        self.tx.subscribe()
    }

    /// Deployment events only.
    pub fn subscribe_changes(&self) -> broadcast::Receiver<Published> {
        self.changes.subscribe()
    }

    /// The number of the last event published.
    pub fn last_seq(&self) -> u64 {
        self.seq.load(Ordering::Relaxed)
    }
}

/// Unix time in milliseconds.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialize_with_a_type_tag() {
        let e = Event::Deployment(DeploymentEvent {
            at_ms: 1,
            model: "m".into(),
            deployment: "d".into(),
            change: DeploymentChange::Enabled { enabled: false },
            instance: None,
        });
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["type"], "deployment");
        assert_eq!(json["change"]["kind"], "enabled");
        assert_eq!(json["change"]["enabled"], false);
    }

    #[test]
    fn a_follower_of_changes_gets_deployment_events_only_and_their_numbers() {
        let bus = EventBus::new();
        let mut changes = bus.subscribe_changes();
        let other = || {
            Event::Lagged(LaggedEvent {
                at_ms: 1,
                missed: Some(1),
                note: None,
            })
        };
        bus.publish(other());
        bus.publish(Event::Deployment(DeploymentEvent {
            at_ms: 2,
            model: "m".into(),
            deployment: "d".into(),
            change: DeploymentChange::Enabled { enabled: false },
            instance: None,
        }));
        bus.publish(other());
        let got = changes.try_recv().unwrap();
        assert_eq!(got.seq, 2, "numbered on the bus's one sequence");
        assert!(matches!(*got.event, Event::Deployment(_)));
        assert!(changes.try_recv().is_err(), "nothing else");
        // A watcher of everything still gets everything.
        let mut all = bus.subscribe();
        bus.publish(other());
        assert_eq!(all.try_recv().unwrap().seq, 4);
        assert!(changes.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_lagging_watcher_loses_old_events_and_publishing_never_blocks() {
        let bus = EventBus::new();
        let mut rx = bus.subscribe();
        for i in 0..(CAPACITY as u64 + 10) {
            bus.publish(Event::Deployment(DeploymentEvent {
                at_ms: i,
                model: "m".into(),
                deployment: "d".into(),
                change: DeploymentChange::Recovered,
                instance: None,
            }));
        }
        assert!(matches!(
            rx.recv().await,
            Err(broadcast::error::RecvError::Lagged(10))
        ));
        let next = rx.recv().await.unwrap();
        assert_eq!(next.seq, 11);
        match &*next {
            Event::Deployment(d) => assert_eq!(d.at_ms, 10),
            other => panic!("unexpected {other:?}"),
        }
    }
}
