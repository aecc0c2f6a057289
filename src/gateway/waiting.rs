//! A request's wait for room (see `queue`): when it lines up, how long it
//! may wait, and what it is told when it may not.

use std::time::Duration;

use super::ModelRoute;
use super::flight::Flight;
use super::queue::Place;
use crate::router::Unavailable;

/// How a wait ended.
pub(super) enum Waited {
    /// Room may be there: pick again.
    Again,
    /// No waiting (not configured, the line is full, or room is not due
    /// within `max_wait_s`): answer as without a queue.
    No(Unavailable),
}

impl Flight {
    /// A new request for a model others are waiting for lines up behind
    /// them rather than taking room that frees for the first in line.
    /// Returns whether it waited for its turn; false when it could not
    /// line up (it then picks at once, as without a queue).
    pub(super) async fn line_up<'q>(
        &mut self,
        origin: &'q ModelRoute,
        place: &mut Option<Place<'q>>,
    ) -> Result<(), Unavailable> {
        let queueing = origin.lock().policy.queueing;
        if queueing.max_wait.is_zero() {
            return Ok(());
        }
        let Some(joined) = origin.queue.join(queueing.max_queue) else {
            return Err(self.hint_for(origin));
        };
        let deadline = tokio::time::Instant::from_std(joined.since + queueing.max_wait);
        let turn = tokio::time::timeout_at(deadline, joined.turn()).await;
        *place = Some(joined);
        match turn {
            Ok(()) => Ok(()),
            Err(_) => Err(self.hint_for(origin)),
        }
    }

    /// No deployment (and no fallback model) could take the request now:
    /// waits for room when it is due within the model's `max_wait_s` and
    /// the line has a place, else says why not.
    pub(super) async fn wait_for_room<'q>(
        &mut self,
        origin: &'q ModelRoute,
        place: &mut Option<Place<'q>>,
        why: Unavailable,
    ) -> Waited {
        // Only before anything was sent: after attempts failed the
        // answer says how they failed.
        let due = match why {
            Unavailable::RateLimited { retry_after } | Unavailable::Failing { retry_after } => {
                retry_after
            }
            _ => return Waited::No(why),
        };
        if !self.attempts.is_empty() {
            return Waited::No(why);
        }
        let queueing = origin.lock().policy.queueing;
        if queueing.max_wait.is_zero() {
            return Waited::No(why);
        }
        if place.is_none() {
            *place = origin.queue.join(queueing.max_queue);
        }
        let Some(p) = place.as_ref() else {
            tracing::debug!(model = %origin.name, "the line is full: answered at once");
            return Waited::No(why);
        };
        let waited = p.waited();
        if waited + due > queueing.max_wait {
            *place = None;
            return Waited::No(why);
        }
        let deadline = tokio::time::Instant::from_std(p.since + queueing.max_wait);
        let waiting = async {
            p.turn().await;
            p.room(due).await;
        };
        if tokio::time::timeout_at(deadline, waiting).await.is_err() {
            *place = None;
            return Waited::No(self.hint_for(origin));
        }
        // Room may be there; the model's own deployments come first again.
        self.back_to_origin();
        Waited::Again
    }

    /// The request got its deployment: it leaves the line (the next one
    /// tries at once), having waited this long.
    pub(super) fn admitted(&mut self, place: &mut Option<Place<'_>>) {
        if let Some(p) = place.take() {
            self.queued = Some(p.waited());
        }
    }

    /// Why the model cannot take the request now, for an answer without
    /// waiting.
    fn hint_for(&self, origin: &ModelRoute) -> Unavailable {
        let now = self.gw.now();
        match origin.lock().pool.pick_hint(now, self.need()) {
            Unavailable::Exhausted => Unavailable::RateLimited {
                retry_after: Duration::from_secs(1),
            },
            why => why,
        }
    }
}
