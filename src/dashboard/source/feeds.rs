//! The tasks that feed an attached dashboard: the state poll and the
//! event stream, each retried with back-off, the stream resumed from its
//! last position.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::header::AUTHORIZATION;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::link::{Backoff, Part};
use super::remote::{Failure, REQUEST_TIMEOUT, Remote, error_message, root_cause};
use super::sse::SseReader;
use crate::dashboard::tui::{self, BATCH, DATA_FRAME, Msg, SNAPSHOT_EVERY};
use crate::events::{Event, LaggedEvent, unix_ms};

/// The gateway sends a keep-alive every 5 s: this much silence means the
/// stream is dead even if no socket said so.
const STREAM_IDLE: Duration = Duration::from_secs(15);

/// `/admin/state` every [`SNAPSHOT_EVERY`]; after a failure, with back-off.
pub(super) async fn poll_state(remote: Remote, tx: mpsc::Sender<Msg>, stop: CancellationToken) {
    let mut backoff = Backoff::default();
    let mut wait = SNAPSHOT_EVERY;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
        let fetched = tokio::select! {
            _ = stop.cancelled() => break,
            f = remote.fetch_state() => f,
        };
        match fetched {
            Ok(state) => {
                backoff.reset();
                wait = SNAPSHOT_EVERY;
                remote.report(&tx, Part::Poll, Ok(())).await;
                if let Err(mpsc::error::TrySendError::Closed(_)) =
                    tx.try_send(tui::state_msg(state))
                {
                    break;
                }
            }
            Err(f) => {
                wait = backoff.next();
                remote.report(&tx, Part::Poll, Err(f.brief())).await;
            }
        }
        if tx.is_closed() {
            break;
        }
    }
}

/// Follows `/admin/events`, reconnecting with back-off and resuming from
/// the last event seen.
pub(super) async fn follow_events(remote: Remote, tx: mpsc::Sender<Msg>, stop: CancellationToken) {
    let mut backoff = Backoff::default();
    let mut last_id: Option<String> = None;
    loop {
        let result = tokio::select! {
            _ = stop.cancelled() => break,
            r = stream_once(&remote, &tx, &mut last_id, &mut backoff) => r,
        };
        if tx.is_closed() {
            break;
        }
        let why = match result {
            Ok(()) => "the gateway ended the event stream".to_string(),
            Err(f) => f.brief(),
        };
        remote.report(&tx, Part::Stream, Err(why)).await;
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(backoff.next()) => {}
        }
    }
}

/// One connection of the event stream, until it ends.
async fn stream_once(
    remote: &Remote,
    tx: &mpsc::Sender<Msg>,
    last_id: &mut Option<String>,
    backoff: &mut Backoff,
) -> Result<(), Failure> {
    let url = remote.url_for(&["admin", "events"]);
    let mut req = remote
        .inner
        .client
        .get(url)
        .header("accept", "text/event-stream");
    if let Some(auth) = &remote.inner.auth {
        req = req.header(AUTHORIZATION, auth.clone());
    }
    if let Some(id) = last_id.as_deref() {
        req = req.header("last-event-id", id);
    }
    let response = tokio::time::timeout(REQUEST_TIMEOUT, req.send())
        .await
        .map_err(|_| Failure::Network("no answer".into()))?
        .map_err(|e| Failure::Network(root_cause(&e)))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.bytes().await.unwrap_or_default();
        return Err(Failure::Status(
            status.as_u16(),
            error_message(status, &body),
        ));
    }
    let down_since = remote
        .inner
        .link
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .down_since();
    remote.report(tx, Part::Stream, Ok(())).await;
    backoff.reset();
    let mut body = response.bytes_stream();
    let mut reader = SseReader::default();
    let mut batch: Vec<Arc<Event>> = Vec::new();
    let mut first = true;
    loop {
        let chunk = match tokio::time::timeout(STREAM_IDLE, body.next()).await {
            Err(_) => return Err(Failure::Network("the event stream went silent".into())),
            Ok(None) => return Ok(()),
            Ok(Some(Err(e))) => return Err(Failure::Network(root_cause(&e))),
            Ok(Some(Ok(chunk))) => chunk,
        };
        let events = reader
            .feed(&chunk)
            .map_err(|_| Failure::Invalid("an event stream line without end".into()))?;
        if let Some(id) = reader.last_id() {
            *last_id = Some(id.to_string());
        }
        for ev in events {
            let Ok(mut event) = serde_json::from_str::<Event>(&ev.data) else {
                tracing::debug!("skipped an event this dashboard does not know");
                continue;
            };
            // The gateway counts what a resumed stream missed; the time away is ours to say.
            if let (Event::Lagged(l), true, Some(since)) = (&mut event, first, down_since) {
                annotate(l, since);
            }
            first = false;
            batch.push(Arc::new(event));
        }
        if !batch.is_empty() {
            for part in std::mem::take(&mut batch).chunks(BATCH) {
                let msg = Msg::Events {
                    events: part.to_vec(),
                    lagged: 0,
                };
                if tx.send(msg).await.is_err() {
                    return Ok(());
                }
            }
            // At most one batch a data frame, as for a gateway in process.
            tokio::time::sleep(DATA_FRAME).await;
        }
    }
}

fn annotate(l: &mut LaggedEvent, down_since_ms: u64) {
    let away = unix_ms().saturating_sub(down_since_ms).div_ceil(1000);
    let note = format!("while disconnected for {away}s");
    l.note = Some(match l.note.take() {
        Some(theirs) => format!("{theirs}; {note}"),
        None => note,
    });
    if l.at_ms == 0 {
        l.at_ms = unix_ms();
    }
}
