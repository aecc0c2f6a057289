//! Every instance's events for whoever watches one of them, relayed through
//! Redis only while someone does.
//!
//! An instance with a watcher (an `/admin/events` stream, its own
//! dashboard) says so each second in `{sb:<name>}:watchers` (a sorted set
//! of instance ids scored by time, expiring on its own) and subscribes to
//! `{sb:<name>}:events`. Each instance relays its own events there, in
//! batches, only while some *other* instance watches: nobody watching
//! costs nothing but the second's check, and one watcher costs the others
//! one PUBLISH per batch. Relayed events reach the watcher's bus tagged
//! with the instance that served them, so the event stream and the
//! dashboard show them like their own.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::watch;

use super::Cluster;
use crate::events::{Event, unix_ms};

/// How long a watcher's mark holds without being renewed.
const WATCHED_MS: u64 = 3000;
/// How often an instance renews its mark and checks the others'.
const CHECK: Duration = Duration::from_secs(1);
/// Events are gathered this long into one PUBLISH.
const BATCH_WINDOW: Duration = Duration::from_millis(50);
/// The most events in one PUBLISH.
const BATCH_MAX: usize = 512;

impl Cluster {
    fn events_channel(&self) -> String {
        format!("{}:events", self.tag())
    }

    /// Each second: marks this instance as watched when it is, and learns
    /// whether another instance is (then `relay` is true).
    pub async fn watch_marks(self: Arc<Self>, relay: watch::Sender<bool>) {
        let key = format!("{}:watchers", self.tag());
        let mut tick = tokio::time::interval(CHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = unix_ms();
            let mut pipe = redis::pipe();
            if self.events.watchers() > 0 {
                pipe.cmd("ZADD")
                    .arg(&key)
                    .arg(now)
                    .arg(&*self.id)
                    .ignore()
                    .cmd("PEXPIRE")
                    .arg(&key)
                    .arg(WATCHED_MS)
                    .ignore();
            } else {
                pipe.cmd("ZREM").arg(&key).arg(&*self.id).ignore();
            }
            pipe.cmd("ZRANGEBYSCORE")
                .arg(&key)
                .arg(now.saturating_sub(WATCHED_MS))
                .arg("+inf");
            let mut con = self.connection();
            let answer: Result<redis::RedisResult<(Vec<String>,)>, _> =
                tokio::time::timeout(super::REDIS_TIMEOUT * 5, pipe.query_async(&mut con)).await;
            // Redis away: relay nothing (the watchers cannot get it anyway).
            let others = match answer {
                Ok(Ok((ids,))) => ids.iter().any(|id| id != &*self.id),
                _ => false,
            };
            relay.send_if_modified(|on| std::mem::replace(on, others) != others);
        }
    }

    /// Publishes this instance's events while `on` says someone elsewhere
    /// watches; subscribes to the bus only then, so that otherwise the
    /// gateway's events cost what they cost without a cluster.
    pub async fn relay(self: Arc<Self>, mut on: watch::Receiver<bool>) {
        loop {
            while !*on.borrow_and_update() {
                if on.changed().await.is_err() {
                    return;
                }
            }
            tracing::debug!("cluster: relaying events for a watcher elsewhere");
            let mut rx = self.events.subscribe();
            loop {
                let first = tokio::select! {
                    changed = on.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        if !*on.borrow() {
                            break;
                        }
                        continue;
                    }
                    first = rx.recv() => first,
                };
                let mut batch = Vec::new();
                match first {
                    Ok(e) => batch.push(e.event),
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return,
                }
                tokio::time::sleep(BATCH_WINDOW).await;
                while batch.len() < BATCH_MAX {
                    match rx.try_recv() {
                        Ok(e) => batch.push(e.event),
                        Err(TryRecvError::Lagged(_)) => {}
                        Err(_) => break,
                    }
                }
                let own: Vec<&Event> = batch
                    .iter()
                    .map(|e| &**e)
                    .filter(|e| e.instance().is_some_and(|i| Arc::ptr_eq(i, &self.id)))
                    .collect();
                if own.is_empty() {
                    continue;
                }
                let Ok(text) = serde_json::to_vec(&own) else {
                    continue;
                };
                let mut con = self.connection();
                // Lost when Redis is away: events are for watching, not records.
                let _: Result<redis::RedisResult<i64>, _> = tokio::time::timeout(
                    super::REDIS_TIMEOUT * 5,
                    redis::cmd("PUBLISH")
                        .arg(self.events_channel())
                        .arg(text)
                        .query_async(&mut con),
                )
                .await;
            }
        }
    }

    /// While this instance has a watcher, takes the others' events from
    /// Redis onto its own bus.
    pub async fn receive_events(self: Arc<Self>) {
        use futures_util::StreamExt;
        loop {
            while self.events.watchers() == 0 {
                tokio::time::sleep(CHECK / 4).await;
            }
            let subscribed = async {
                let mut pubsub = self.client.get_async_pubsub().await?;
                pubsub.subscribe(self.events_channel()).await?;
                Ok::<_, redis::RedisError>(pubsub)
            };
            let pubsub = match tokio::time::timeout(Duration::from_secs(2), subscribed).await {
                Ok(Ok(p)) => p,
                _ => {
                    tokio::time::sleep(CHECK / 2).await;
                    continue;
                }
            };
            let mut messages = pubsub.into_on_message();
            let mut check = tokio::time::interval(CHECK);
            loop {
                tokio::select! {
                    msg = messages.next() => {
                        let Some(msg) = msg else { break };
                        let Ok(events) = serde_json::from_slice::<Vec<Event>>(msg.get_payload_bytes()) else {
                            continue;
                        };
                        for event in events {
                            // Untagged or ours: not from another instance.
                            if event.instance().is_none_or(|i| **i == *self.id) {
                                continue;
                            }
                            self.events.publish(event);
                        }
                    }
                    _ = check.tick() => {
                        if self.events.watchers() == 0 {
                            break;
                        }
                    }
                }
            }
        }
    }
}
