//! Fallback models: where a request goes when its model has nothing left.
//!
//! A model's `fallbacks` are tried in order once every deployment of the
//! model (all tiers) is unavailable for the request or has failed it; a
//! "prompt too long" 400 goes to its `context_window_fallbacks` and a
//! content-policy refusal to its `content_policy_fallbacks` (empty by
//! default: back to the client). Only the lists of the model the client
//! asked for count, a model is never visited twice, and the request's one
//! deadline covers the whole chain.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::http::HeaderValue;

use super::ModelRoute;
use super::flight::{Flight, Passback};
use super::refusal::Refusal;
use crate::events::RouteChange;
use crate::router::Unavailable;

/// The state of a request's fallback chain.
pub(super) struct Chain {
    /// The model the client asked for.
    origin: Arc<ModelRoute>,
    /// Models visited, the origin first.
    visited: Vec<Arc<str>>,
    /// Models still to try, in order.
    queue: VecDeque<Arc<str>>,
    /// The worst reason a model had nothing: what the client hears when
    /// the chain runs out without an attempt.
    unavailable: Option<Unavailable>,
    /// The client error that sent the request down the chain: passed back
    /// when no other model serves it.
    pub(super) refused: Option<Passback>,
}

/// Which of the two "nothing left" reasons tells the client more: a rate
/// limit (with the soonest time) before failures, before nothing enabled.
fn worse(a: Unavailable, b: Unavailable) -> Unavailable {
    use Unavailable::*;
    let rank = |u: &Unavailable| match u {
        RateLimited { .. } => 3,
        Failing { .. } => 2,
        Exhausted => 1,
        NoneEnabled => 0,
    };
    match (a, b) {
        (RateLimited { retry_after: x }, RateLimited { retry_after: y }) => RateLimited {
            retry_after: x.min(y),
        },
        (Failing { retry_after: x }, Failing { retry_after: y }) => Failing {
            retry_after: x.min(y),
        },
        (a, b) if rank(&a) >= rank(&b) => a,
        (_, b) => b,
    }
}

impl Flight {
    /// The model the client asked for.
    /// Back to the model asked for, as if nothing had been tried (a
    /// request that waited for room starts over).
    pub(super) fn back_to_origin(&mut self) {
        if let Some(chain) = self.chain.take() {
            self.route = chain.origin;
        }
        self.skip_incapable();
    }

    pub(super) fn origin(&self) -> &Arc<ModelRoute> {
        self.chain.as_ref().map_or(&self.route, |c| &c.origin)
    }

    /// The `model` a translated answer names: the one asked for, unless
    /// that model reports the one that served.
    pub(super) fn answer_model(&self) -> &str {
        match &self.chain {
            Some(c) if !c.origin.lock().policy.report_served_model => &c.origin.name,
            _ => &self.route.name,
        }
    }

    /// Whether the answer is a fallback model's, named as the client asked.
    pub(super) fn renames_answer(&self) -> bool {
        self.chain.is_some()
            && !Arc::ptr_eq(self.origin(), &self.route)
            && !self.origin().lock().policy.report_served_model
    }

    /// `x-switchboard-model`: the model whose deployment answered.
    pub(super) fn served_header(&self) -> &HeaderValue {
        &self.route.header_value
    }

    fn chain(&mut self) -> &mut Chain {
        let route = &self.route;
        self.chain.get_or_insert_with(|| {
            let queue = route.lock().policy.fallbacks.iter().cloned().collect();
            Box::new(Chain {
                origin: route.clone(),
                visited: vec![route.name.clone()],
                queue,
                unavailable: None,
                refused: None,
            })
        })
    }

    /// The model had nothing (more) for the request (`why`): moves it to
    /// the next fallback model, if one is left and time remains. Returns
    /// whether it did.
    pub(super) fn fall_back(&mut self, why: Unavailable, deadline: tokio::time::Instant) -> bool {
        // The common case, a model with no fallbacks: nothing to set up.
        if self.chain.is_none() && self.route.lock().policy.fallbacks.is_empty() {
            return false;
        }
        let chain = self.chain();
        chain.unavailable = Some(match chain.unavailable {
            Some(seen) => worse(seen, why),
            None => why,
        });
        let reason = match why {
            Unavailable::NoneEnabled => "no deployment enabled".to_string(),
            Unavailable::RateLimited { .. } => "every deployment at its limit".to_string(),
            Unavailable::Failing { .. } => "every deployment cooling down".to_string(),
            Unavailable::Exhausted => "every deployment failed".to_string(),
        };
        self.next_model(reason, deadline, true)
    }

    /// A client error of `kind` came back: when the model asked for names
    /// fallbacks for it, the request goes there instead (the answer is
    /// kept for the client in case none serves). Returns whether it went.
    pub(super) fn divert(
        &mut self,
        kind: Refusal,
        answer: Passback,
        deadline: tokio::time::Instant,
    ) -> Result<(), Box<Passback>> {
        let list = {
            let state = self.origin().lock();
            let policy = &state.policy;
            match kind {
                Refusal::ContextWindow => policy.context_window_fallbacks.clone(),
                Refusal::ContentPolicy => policy.content_policy_fallbacks.clone(),
                Refusal::Other => return Err(Box::new(answer)),
            }
        };
        // The common case, no list for it: nothing to set up.
        if list.is_empty() && self.chain.is_none() {
            return Err(Box::new(answer));
        }
        let chain = self.chain();
        let queue: VecDeque<Arc<str>> = list
            .iter()
            .filter(|m| !chain.visited.contains(m))
            .cloned()
            .collect();
        if queue.is_empty() {
            // A policy refusal goes back with its own reason; a prompt too
            // long for every model tried, as the model asked for said it.
            return Err(Box::new(match kind {
                Refusal::ContextWindow => chain.refused.take().unwrap_or(answer),
                _ => answer,
            }));
        }
        chain.queue = queue;
        chain.refused.get_or_insert(answer);
        let reason = match kind {
            Refusal::ContextWindow => "prompt too long for its context window",
            _ => "refused by its content policy",
        };
        if self.next_model(reason.to_string(), deadline, false) {
            Ok(())
        } else {
            Err(Box::new(
                self.chain
                    .as_mut()
                    .and_then(|c| c.refused.take())
                    .expect("kept just above"),
            ))
        }
    }

    /// Moves the request to the next model of the chain. `steady`: the
    /// move is for a state of the model (nothing available) rather than
    /// this request's content: said once while it lasts, not per request.
    fn next_model(&mut self, reason: String, deadline: tokio::time::Instant, steady: bool) -> bool {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        let table = self.gw.shared.table.load();
        let from = self.route.name.clone();
        let next = {
            let chain = self.chain();
            let mut next = None;
            while let Some(name) = chain.queue.pop_front() {
                // A model removed by a reload since the config was checked
                // is passed over, like one already visited.
                if chain.visited.contains(&name) {
                    continue;
                }
                if let Some(route) = table.get(&name) {
                    chain.visited.push(name.clone());
                    next = Some((name, route.clone()));
                    break;
                }
            }
            next
        };
        let Some((name, route)) = next else {
            return false;
        };
        let news = !steady || {
            let origin = self.origin().clone();
            let mut state = origin.lock();
            let news = !state.fell_back_to.contains(&name);
            if news {
                state.fell_back_to.push(name.clone());
            }
            origin.falling_back.store(true, Ordering::Relaxed);
            news
        };
        if news {
            tracing::info!(model = %from, fallback = %name, %reason, "falling back to another model");
            self.publish_route(RouteChange::FellBack {
                to_model: name,
                reason,
            });
        }
        self.route = route;
        self.skip_incapable();
        true
    }

    /// The model asked for served this request itself: if it was falling
    /// back, that has ended (said once).
    pub(super) fn served_by_origin(&self) {
        if self.chain.is_some() || !self.route.falling_back.load(Ordering::Relaxed) {
            return;
        }
        self.served_by_origin_again();
    }

    #[cold]
    fn served_by_origin_again(&self) {
        let ended = {
            let mut state = self.route.lock();
            self.route.falling_back.store(false, Ordering::Relaxed);
            std::mem::take(&mut state.fell_back_to)
        };
        if let Some(to) = ended.first().cloned() {
            tracing::info!(model = %self.route.name, fallback = %to, "the model serves its requests again");
            self.publish_route(RouteChange::ServesAgain { after: to });
        }
    }

    /// What the chain has to say when it ran out: the worst reason a model
    /// had nothing, merged with the last one's.
    pub(super) fn chain_unavailable(&self, why: Unavailable) -> Unavailable {
        match self.chain.as_ref().and_then(|c| c.unavailable) {
            Some(seen) => worse(seen, why),
            None => why,
        }
    }

    /// The models the request went to, the one asked for first.
    pub(super) fn visited(&self) -> Vec<Arc<ModelRoute>> {
        match &self.chain {
            None => vec![self.route.clone()],
            Some(c) => {
                let table = self.gw.shared.table.load();
                let mut routes = vec![c.origin.clone()];
                routes.extend(c.visited[1..].iter().filter_map(|n| table.get(n).cloned()));
                routes
            }
        }
    }

    /// ` (fallbacks tried: a, b)`, for the final error's message.
    pub(super) fn fallbacks_tried(&self) -> String {
        match &self.chain {
            Some(c) if c.visited.len() > 1 => {
                let names: Vec<&str> = c.visited[1..].iter().map(|n| &**n).collect();
                format!(" (fallback models tried: {})", names.join(", "))
            }
            _ => String::new(),
        }
    }
}

/// `body` (one JSON object) with its top-level `model` naming `name`: a
/// fallback model's answer, as the client asked for it. Unchanged when it
/// has no `model` string.
pub(super) fn rename_model(body: bytes::Bytes, name: &str) -> bytes::Bytes {
    let mut span = None;
    let _ = super::json::object_members(&body, |key, value| {
        if key == b"model" && value.first() == Some(&b'"') {
            span = Some((
                value.as_ptr() as usize - body.as_ptr() as usize,
                value.len(),
            ));
        }
        Ok(())
    });
    let Some((start, len)) = span else {
        return body;
    };
    let quoted = serde_json::to_vec(name).unwrap_or_default();
    let mut out = Vec::with_capacity(body.len() + quoted.len());
    out.extend_from_slice(&body[..start]);
    out.extend_from_slice(&quoted);
    out.extend_from_slice(&body[start + len..]);
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_worse_reason_wins_and_the_soonest_time() {
        let rl = |s| Unavailable::RateLimited {
            retry_after: Duration::from_secs(s),
        };
        assert_eq!(worse(rl(9), rl(3)), rl(3));
        assert_eq!(worse(Unavailable::NoneEnabled, rl(9)), rl(9));
        assert_eq!(
            worse(
                Unavailable::Failing {
                    retry_after: Duration::from_secs(1)
                },
                Unavailable::Exhausted
            ),
            Unavailable::Failing {
                retry_after: Duration::from_secs(1)
            }
        );
    }

    #[test]
    fn a_fallbacks_answer_names_the_model_asked_for() {
        let body = bytes::Bytes::from_static(
            br#"{"id":"x","model":"gpt-4o-mini-2024","choices":[{"message":{"model":"inner"}}]}"#,
        );
        assert_eq!(
            &rename_model(body, "gpt-4o")[..],
            br#"{"id":"x","model":"gpt-4o","choices":[{"message":{"model":"inner"}}]}"#
        );
        let none = bytes::Bytes::from_static(br#"{"id":"x"}"#);
        assert_eq!(&rename_model(none, "gpt-4o")[..], br#"{"id":"x"}"#);
    }
}
