//! Waiting for room across the cluster: a request waiting on one instance
//! learns through Redis that a request on another freed room.
//!
//! Each instance keeps its own first-in-first-out line per model
//! (`gateway::queue`), whose first request sleeps until the router's hint
//! or a kick. Locally, a request's end kicks the line; but a place freed on
//! another instance (a lease released, tokens given back by a settle or an
//! undo, a deployment recovered) would only be noticed when the hint runs
//! out: up to a second for a full `max_in_flight`.
//!
//! How it travels, at no cost to the request path:
//! - A shared pick that finds no room for a request that will wait marks
//!   the model as waited for, in the same call: `{sb:<name>:<model>}:q`,
//!   holding the channel to tell, with a TTL of the request's hint (capped
//!   by its `max_wait_s`) plus a second; the first in line picks again
//!   before then, renewing it. The mark is written atomically with the
//!   pick's decision, so a release that runs after it always finds it.
//! - The calls that free room (the releases, settles and verdicts sent
//!   off the path in batches, alone or riding along with a pick) publish
//!   one message per call on `{sb:<name>}:freed`, only when the mark is
//!   there: `<instance> <the model's hash tag>`. Nobody waiting: one GET
//!   in a call that freed something, no message.
//! - Each instance holds one subscription to that channel ([`Cluster::listen_freed`]),
//!   and on a message from another instance wakes the model's line: its
//!   first request picks again at once. The instance whose call freed
//!   the room skips its own message: its line was kicked when the request
//!   ended, and that pick carried the release along.
//!
//! Chosen over a message on every release (a PUBLISH per request even when
//! nobody waits) and over polling Redis while waiting (a round trip per
//! waiter per tick). Fair within one instance (its line is first in, first
//! out); across instances best-effort: every instance with a line is woken,
//! their first requests race for the room, and the ones that lose wait
//! again (for the next message or their hint). When Redis is away, or a
//! message is lost while the subscription reconnects, the hints still
//! bound every wait, as before.

use std::sync::Arc;
use std::time::Duration;

use super::Cluster;
use super::shared::ModelKeys;

/// The channel the functions tell waiting instances on.
pub(super) fn channel(cluster: &str) -> String {
    format!("{}:freed", super::member::tag_of(cluster))
}

/// A message's instance and model hash tag.
fn parse(payload: &[u8]) -> Option<(&str, &str)> {
    std::str::from_utf8(payload).ok()?.split_once(' ')
}

/// How long a subscription may take to be made before it is tried again.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long to wait before subscribing again after Redis went away.
const RESUBSCRIBE: Duration = Duration::from_millis(500);

impl Cluster {
    /// The model a message from another instance says room freed for;
    /// None for this instance's own messages and for what is not one.
    fn freed_model(&self, payload: &[u8]) -> Option<String> {
        let (from, tag) = parse(payload)?;
        if from == &*self.id {
            return None;
        }
        ModelKeys::model_of(&self.name, tag)
    }

    /// Calls `wake` with the model of each message from another instance
    /// saying room freed, until the cluster's tasks stop; subscribes again
    /// whenever the subscription is lost (Redis away, restarted).
    pub async fn listen_freed(self: Arc<Self>, wake: impl Fn(&str) + Send + 'static) {
        use futures_util::StreamExt;
        loop {
            let subscribed = async {
                let mut pubsub = self.client.get_async_pubsub().await?;
                pubsub.subscribe(&self.freed).await?;
                Ok::<_, redis::RedisError>(pubsub)
            };
            match tokio::time::timeout(SUBSCRIBE_TIMEOUT, subscribed).await {
                Ok(Ok(pubsub)) => {
                    let mut messages = pubsub.into_on_message();
                    while let Some(msg) = messages.next().await {
                        if let Some(model) = self.freed_model(msg.get_payload_bytes()) {
                            wake(&model);
                        }
                    }
                    tracing::debug!("cluster: the subscription to freed room was lost");
                }
                Ok(Err(e)) => tracing::debug!("cluster: cannot subscribe to freed room: {e}"),
                Err(_) => tracing::debug!("cluster: subscribing to freed room timed out"),
            }
            tokio::time::sleep(RESUBSCRIBE).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_names_its_instance_and_the_models_tag() {
        let tag = "{sb:prod:gpt 4o}";
        let payload = format!("host-4000-00ff {tag}");
        assert_eq!(
            parse(payload.as_bytes()),
            Some(("host-4000-00ff", tag)),
            "an instance id has no space; a model name may"
        );
        assert_eq!(parse(b"nothing"), None);
        assert_eq!(parse(&[0xff, b' ', b'x']), None);
        assert_eq!(channel("prod"), "{sb:prod}:freed");
    }

    #[tokio::test]
    async fn only_other_instances_messages_wake_and_name_their_model() {
        let config = crate::config::ClusterConfig {
            redis_url: crate::config::ApiKey::parse("redis://127.0.0.1:1", ".".as_ref()).unwrap(),
            name: "prod".into(),
            advertise: None,
            on_redis_down: crate::config::OnRedisDown::Local,
            lease_ttl: crate::config::DEFAULT_LEASE_TTL,
        };
        let c = Cluster::new(&config, crate::events::EventBus::new(), "127.0.0.1:4000").unwrap();
        assert_eq!(c.freed, "{sb:prod}:freed");
        let tag = ModelKeys::new("prod", "gpt-4o}").tag().to_string();
        let from = |who: &str| format!("{who} {tag}").into_bytes();
        assert_eq!(
            c.freed_model(&from("other-1-0001")).as_deref(),
            Some("gpt-4o}")
        );
        assert_eq!(c.freed_model(&from(&c.id)), None, "its own");
        let elsewhere = ModelKeys::new("staging", "gpt-4o").tag().to_string();
        assert_eq!(c.freed_model(format!("x {elsewhere}").as_bytes()), None);
    }
}
