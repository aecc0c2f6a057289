//! A request's last word when nothing (more) can be tried: the gateway's
//! own answer, or an upstream's answer kept for the client.

use std::time::Duration;

use axum::body::Body;
use axum::response::Response;

use super::error::ApiError;
use super::flight::{Flight, Passback};
use super::proxy::{X_ATTEMPTS, X_DEPLOYMENT, respond};
use super::request::Endpoint;
use crate::events::{AttemptOutcome, RequestOutcome};
use crate::router::Unavailable;

impl Flight {
    /// Nothing (more) to try: the gateway's own answer.
    pub(super) fn give_up(&mut self, why: Unavailable) -> Response {
        let why = self.chain_unavailable(why);
        let attempts = self.attempts.len();
        // The deployment of the last attempt, whichever model it served.
        let last_tried = self.attempts.last().map(|a| a.deployment.clone());
        if let Some(answer) = self.chain.as_mut().and_then(|c| c.refused.take()) {
            // The client error that sent the request to other models, none
            // of which could serve it: the client hears the first answer.
            return self.pass_back(answer, attempts);
        }
        let model = self.origin().name.clone();
        let chained = self.fallbacks_tried();
        // Only failures count here: an attempt whose deployment does not
        // offer the endpoint says nothing about the others.
        let tried = attempts - self.not_offered.len();
        if tried == 0
            && why == Unavailable::Exhausted
            && let Some(answer) = self.not_offered_answer.take()
        {
            // No deployment offers the endpoint: the upstream's own answer.
            return self.pass_back(answer, attempts);
        }
        let failures = || {
            self.attempts
                .iter()
                .enumerate()
                .filter(|(i, _)| !self.not_offered.contains(i))
                .map(|(_, a)| &a.outcome)
        };
        let all = |f: fn(&AttemptOutcome) -> bool| tried > 0 && failures().all(f);
        // Anthropic's 529 (overloaded) cools a deployment down as a 429 does,
        // and tells the client the same: come back later.
        let all_rate_limited = all(|o| matches!(o, AttemptOutcome::Status { status: 429 | 529 }));
        let all_timed_out = all(|o| matches!(o, AttemptOutcome::Timeout));
        let error = if tried == 0
            && let Some(refusal) = self.refusal.take()
        {
            // The only deployments that could have taken it cannot honour it.
            match refusal {
                // Refused by more than one: not one provider's shortcoming.
                ApiError::Unsupported { message, param } if self.withdrawn > 1 => {
                    let what = message.split(": ").next().unwrap_or(&message).to_string();
                    ApiError::Unsupported {
                        message: format!(
                            "{what}: none of the deployments of `{model}`{chained} can honour it"
                        ),
                        param,
                    }
                }
                refusal => refusal,
            }
        } else if tried == 0 && self.incapable > 0 && why == Unavailable::Exhausted {
            ApiError::EndpointNotOffered(format!(
                "No deployment of `{model}`{chained} offers {}: {} of its deployments are of providers without it (only chat completions go to every provider).",
                self.endpoint.path(),
                self.incapable
            ))
        } else if tried == 0 {
            match why {
                Unavailable::NoneEnabled => ApiError::Unavailable {
                    message: format!("No deployment of model `{model}`{chained} is enabled."),
                    retry_after: None,
                },
                Unavailable::RateLimited { retry_after } => ApiError::RateLimited {
                    message: format!(
                        "Every enabled deployment of `{model}`{chained}{} is at its tokens-per-minute limit or rate limited; retry after {:.0}s.",
                        self.offering(),
                        retry_after.as_secs_f64().ceil()
                    ),
                    retry_after,
                },
                Unavailable::Failing { retry_after } => ApiError::Unavailable {
                    message: format!(
                        "Every enabled deployment of `{model}`{chained}{} is cooling down after failures.",
                        self.offering()
                    ),
                    retry_after: Some(retry_after),
                },
                Unavailable::Exhausted => ApiError::Unavailable {
                    message: format!("No deployment of `{model}`{chained} could take the request."),
                    retry_after: None,
                },
            }
        } else if all_rate_limited
            && matches!(
                why,
                Unavailable::RateLimited { .. } | Unavailable::Exhausted
            )
        {
            let retry_after = self.soonest_free();
            ApiError::RateLimited {
                message: format!(
                    "Every deployment of `{model}`{chained} tried ({tried}) answered 429 or 529 (rate limited or overloaded)."
                ),
                retry_after,
            }
        } else if all_timed_out {
            ApiError::GatewayTimeout {
                message: format!(
                    "Every deployment of `{model}`{chained} tried ({tried}) timed out."
                ),
            }
        } else {
            ApiError::BadGateway {
                message: format!(
                    "All {tried} deployment(s) of `{model}`{chained} tried failed; last: {}.",
                    self.last_failure.as_deref().unwrap_or("unknown error")
                ),
            }
        };
        let status = error.status().as_u16();
        self.finish(status, RequestOutcome::Failed, 0, 0, false);
        let mut response = super::proxy::refuse(self.endpoint, error);
        // Only an answer after an attempt names a deployment: a refusal the
        // gateway made itself (nothing sent) names none.
        if let Some(last) = last_tried {
            response
                .headers_mut()
                .insert(X_DEPLOYMENT, super::upstream::header_safe(&last));
        }
        if attempts > 0 {
            response
                .headers_mut()
                .insert(X_ATTEMPTS, super::proxy::attempts_value(attempts));
        }
        self.mark(&mut response);
        response
    }

    /// An upstream's answer kept for the client, given back as the end.
    fn pass_back(&mut self, answer: Passback, attempts: usize) -> Response {
        let status = answer.status.as_u16();
        self.finish(status, RequestOutcome::ClientError, 0, 0, false);
        let body = match self.endpoint {
            Endpoint::Messages => {
                super::door::messages::error::reshape_body(answer.status, &answer.body)
            }
            _ => answer.body,
        };
        let mut response = respond(
            answer.status,
            &answer.headers,
            Body::from(body),
            &answer.upstream,
            attempts,
            &answer.model,
        );
        if self.endpoint == Endpoint::Messages {
            super::door::messages::error::no_retry(&mut response);
        }
        self.mark(&mut response);
        response
    }

    /// Which deployments a "no deployment available" answer is about.
    fn offering(&self) -> String {
        match self.not_offered.len() {
            0 => String::new(),
            _ => format!(" that may offer {}", self.endpoint.path()),
        }
    }

    /// When the soonest deployment of the models tried frees.
    fn soonest_free(&self) -> Duration {
        let now = self.gw.now();
        self.visited()
            .iter()
            .filter_map(
                |route| match route.lock().pool.pick_hint(now, self.need()) {
                    Unavailable::RateLimited { retry_after }
                    | Unavailable::Failing { retry_after } => Some(retry_after),
                    _ => None,
                },
            )
            .min()
            .unwrap_or(Duration::from_secs(1))
    }
}
