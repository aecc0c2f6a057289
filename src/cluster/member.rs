//! Who is in the cluster, and what changes travel between its instances.
//!
//! Each instance heartbeats every second: `{sb:<name>}:i:<id>` (its report,
//! 3 s TTL) and its score in `{sb:<name>}:members` (the time). The members
//! are those seen in the last 3 s. Toggles and added deployments go out on
//! the `{sb:<name>}:changes` channel; each instance applies what others send.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::Cluster;
use crate::config::DeploymentSpec;
use crate::events::unix_ms;

/// How often an instance says it is there, and how long that holds.
const HEARTBEAT: Duration = Duration::from_secs(1);
const ALIVE_MS: u64 = 3000;

/// One instance, as its last heartbeat described it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Instance {
    pub id: String,
    pub advertise: Option<String>,
    pub requests_per_s: f64,
    /// Seconds since its last heartbeat.
    #[serde(default)]
    pub last_seen_s: f64,
    /// Its last minute's figures, for the cluster's sums (see the gateway).
    #[serde(default)]
    pub figures: serde_json::Value,
    #[serde(default)]
    pub at_ms: u64,
}

/// A change one instance made that the others apply.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    Toggle {
        from: String,
        model: String,
        deployment: String,
        enabled: bool,
    },
    /// Only deployments whose key is a reference (`env:`, `file:`) or none:
    /// a literal key never leaves its instance.
    Add {
        from: String,
        model: String,
        spec: Box<DeploymentSpec>,
    },
}

impl Change {
    fn from(&self) -> &str {
        match self {
            Change::Toggle { from, .. } | Change::Add { from, .. } => from,
        }
    }
}

/// `host-port-xxxx`: readable in the dashboard, unique across restarts.
pub fn instance_id(listen: &str) -> String {
    let host = hostname().unwrap_or_else(|| "instance".into());
    let port = listen.rsplit(':').next().unwrap_or("");
    use rand::{Rng, SeedableRng};
    let nonce: u16 = rand::rngs::SmallRng::from_os_rng().random();
    format!("{host}-{port}-{nonce:04x}")
}

fn hostname() -> Option<String> {
    #[cfg(unix)]
    {
        let mut buf = [0u8; 256];
        // SAFETY: gethostname writes at most `len` bytes into our buffer.
        let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        if rc == 0 {
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            let name = String::from_utf8_lossy(&buf[..end]).trim().to_string();
            if !name.is_empty() {
                return Some(name);
            }
        }
    }
    None
}

/// The hash tag of every key of cluster `name` that is not a model's.
pub(super) fn tag_of(name: &str) -> String {
    format!("{{sb:{}}}", name.replace('{', "%7B").replace('}', "%7D"))
}

impl Cluster {
    pub(super) fn tag(&self) -> String {
        tag_of(&self.name)
    }

    fn changes_channel(&self) -> String {
        format!("{}:changes", self.tag())
    }

    /// Tells the others of a change; false when Redis is not there.
    pub async fn publish(&self, change: &Change) -> bool {
        let mut con = self.connection();
        let Ok(text) = serde_json::to_string(change) else {
            return false;
        };
        let sent: Result<Result<i64, _>, _> = tokio::time::timeout(
            super::REDIS_TIMEOUT * 5,
            redis::cmd("PUBLISH")
                .arg(self.changes_channel())
                .arg(text)
                .query_async(&mut con),
        )
        .await;
        matches!(sent, Ok(Ok(_)))
    }

    /// Heartbeats until the cluster is dropped; `report` is this instance's
    /// requests per second and figures at the time.
    pub async fn heartbeat(
        self: Arc<Self>,
        report: impl Fn() -> (f64, serde_json::Value) + Send + 'static,
    ) {
        let mut tick = tokio::time::interval(HEARTBEAT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Whether the functions were loaded since Redis was last seen away.
        let mut loaded = false;
        loop {
            tick.tick().await;
            let (requests_per_s, figures) = report();
            let me = Instance {
                id: self.id.to_string(),
                advertise: self.advertise.clone(),
                requests_per_s,
                last_seen_s: 0.0,
                figures,
                at_ms: unix_ms(),
            };
            match tokio::time::timeout(super::REDIS_TIMEOUT * 5, self.beat(&me)).await {
                Ok(Ok(members)) => {
                    self.instances.store(Arc::new(members));
                    let came_back = self.mark_up();
                    if came_back || !loaded {
                        loaded = self.load_functions(self.connection()).await;
                    }
                    if came_back {
                        self.push_admitted().await;
                    }
                }
                Ok(Err(e)) => {
                    loaded = false;
                    self.mark_down(&super::Down::Redis(e.to_string()))
                }
                Err(_) => {
                    loaded = false;
                    self.mark_down(&super::Down::Timeout(super::REDIS_TIMEOUT * 5))
                }
            }
        }
    }

    /// One heartbeat: this instance written, the live ones read.
    async fn beat(&self, me: &Instance) -> redis::RedisResult<Vec<Instance>> {
        let mut con = self.connection();
        let tag = self.tag();
        let members = format!("{tag}:members");
        let now = me.at_ms;
        let text = serde_json::to_string(me).unwrap_or_default();
        let (_, _, _, ids): ((), (), (), Vec<String>) = redis::pipe()
            .cmd("SET")
            .arg(format!("{tag}:i:{}", me.id))
            .arg(text)
            .arg("PX")
            .arg(ALIVE_MS)
            .cmd("ZADD")
            .arg(&members)
            .arg(now)
            .arg(&me.id)
            .cmd("ZREMRANGEBYSCORE")
            .arg(&members)
            .arg("-inf")
            .arg(now.saturating_sub(ALIVE_MS))
            .cmd("ZRANGE")
            .arg(&members)
            .arg(0)
            .arg(-1)
            .query_async(&mut con)
            .await?;
        if ids.is_empty() {
            return Ok(vec![me.clone()]);
        }
        let keys: Vec<String> = ids.iter().map(|id| format!("{tag}:i:{id}")).collect();
        let reports: Vec<Option<String>> =
            redis::cmd("MGET").arg(&keys).query_async(&mut con).await?;
        let mut out: Vec<Instance> = reports
            .into_iter()
            .flatten()
            .filter_map(|t| serde_json::from_str::<Instance>(&t).ok())
            .map(|mut i| {
                i.last_seen_s = now.saturating_sub(i.at_ms) as f64 / 1000.0;
                i
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Forwards the changes other instances publish, reconnecting as needed,
    /// until `tx` is closed.
    pub async fn listen(self: Arc<Self>, tx: mpsc::Sender<Change>) {
        use futures_util::StreamExt;
        loop {
            let subscribed = async {
                let mut pubsub = self.client.get_async_pubsub().await?;
                pubsub.subscribe(self.changes_channel()).await?;
                Ok::<_, redis::RedisError>(pubsub)
            };
            match tokio::time::timeout(Duration::from_secs(2), subscribed).await {
                Ok(Ok(pubsub)) => {
                    let mut messages = pubsub.into_on_message();
                    while let Some(msg) = messages.next().await {
                        let Ok(change) = serde_json::from_slice::<Change>(msg.get_payload_bytes())
                        else {
                            continue;
                        };
                        if change.from() == &*self.id {
                            continue;
                        }
                        if tx.send(change).await.is_err() {
                            return;
                        }
                    }
                }
                Ok(Err(e)) => tracing::debug!("cluster: cannot subscribe to changes: {e}"),
                Err(_) => tracing::debug!("cluster: subscribing to changes timed out"),
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}
