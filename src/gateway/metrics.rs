//! Prometheus metrics: counters kept by the gateway, exposition written here.
//!
//! Why not a metrics registry crate: registering a labelled series looks the
//! key up by allocating and hashing every label, which cost ~10% of the
//! gateway's instructions per request. Here a request takes one short lock and
//! touches two small maps keyed by the `Arc<str>` names it already holds.
//!
//! Owned by the gateway rather than installed globally, so several gateways
//! (tests, the demo) can live in one process.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use super::named::Named;
use super::stats::Stats;
use crate::events::{AttemptOutcome, RequestEvent};
use crate::router::{SlotStatus, State};

/// A deployment gauge's value, when it has one.
type Gauge = fn(&SlotStatus) -> Option<f64>;

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

const LATENCY_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

pub struct Metrics {
    inner: Mutex<Inner>,
}

/// The counters since start and the last minute's statistics, behind one
/// lock so a request takes it once.
struct Inner {
    models: Named<ModelCounts>,
    minute: Stats,
}

#[derive(Default)]
struct ModelCounts {
    /// Requests by the status the client got.
    requests: Map<u16, u64>,
    failovers: u64,
    deployments: Named<DeploymentCounts>,
}

#[derive(Default)]
struct DeploymentCounts {
    attempts: Map<Outcome, u64>,
    prompt_tokens: u64,
    completion_tokens: u64,
    /// Requests this deployment answered, by latency bucket (the last is +Inf).
    buckets: [u64; LATENCY_BUCKETS.len() + 1],
    seconds: f64,
    /// Stream frames left out because they were not JSON.
    skipped_frames: u64,
}

/// An attempt's outcome as a label: an HTTP status or what went wrong before one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Outcome {
    Ok,
    Status(u16),
    Timeout,
    Connect,
    Auth,
    Invalid,
    Cancelled,
    NotOffered,
}

impl From<AttemptOutcome> for Outcome {
    fn from(o: AttemptOutcome) -> Self {
        match o {
            AttemptOutcome::Ok { .. } => Outcome::Ok,
            AttemptOutcome::Status { status } => Outcome::Status(status),
            AttemptOutcome::Timeout => Outcome::Timeout,
            AttemptOutcome::Connect => Outcome::Connect,
            AttemptOutcome::Auth => Outcome::Auth,
            AttemptOutcome::InvalidResponse => Outcome::Invalid,
            AttemptOutcome::Cancelled => Outcome::Cancelled,
            AttemptOutcome::NotOffered { .. } => Outcome::NotOffered,
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Ok => f.write_str("ok"),
            Outcome::Status(s) => write!(f, "{s}"),
            Outcome::Timeout => f.write_str("timeout"),
            Outcome::Connect => f.write_str("connect"),
            Outcome::Auth => f.write_str("auth"),
            Outcome::Invalid => f.write_str("invalid"),
            Outcome::Cancelled => f.write_str("cancelled"),
            Outcome::NotOffered => f.write_str("not_offered"),
        }
    }
}

fn count_attempts<'a>(
    model: &mut ModelCounts,
    attempts: impl Iterator<Item = &'a crate::events::Attempt>,
) {
    for a in attempts {
        let d = model
            .deployments
            .entry(&a.deployment, DeploymentCounts::default);
        *d.attempts.entry(a.outcome.into()).or_default() += 1;
    }
}

/// The tokens and latency of the request, to the deployment that answered.
fn count_answer(model: &mut ModelCounts, last: &crate::events::Attempt, e: &RequestEvent) {
    let d = model
        .deployments
        .entry(&last.deployment, DeploymentCounts::default);
    d.prompt_tokens += e.prompt_tokens;
    d.completion_tokens += e.completion_tokens;
    let seconds = e.latency_ms / 1000.0;
    let bucket = LATENCY_BUCKETS
        .iter()
        .position(|&le| seconds <= le)
        .unwrap_or(LATENCY_BUCKETS.len());
    d.buckets[bucket] += 1;
    d.seconds += seconds;
}

impl Metrics {
    pub fn new(now_ms: u64) -> Self {
        Metrics {
            inner: Mutex::new(Inner {
                models: Named::default(),
                minute: Stats::new(now_ms),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the last minute's statistics under the lock.
    pub fn with_minute<T>(&self, f: impl FnOnce(&Stats) -> T) -> T {
        f(&self.lock().minute)
    }

    pub fn record(&self, e: &RequestEvent) {
        let mut inner = self.lock();
        inner.minute.record(e);
        let model = inner.models.entry(&e.model, ModelCounts::default);
        *model.requests.entry(e.status).or_default() += 1;
        // Passing over a deployment that lacks the endpoint is not a failover.
        let tried = e
            .attempts
            .iter()
            .filter(|a| !matches!(a.outcome, AttemptOutcome::NotOffered { .. }));
        model.failovers += tried.count().saturating_sub(1) as u64;
        if e.attempts.iter().all(|a| a.model.is_none()) {
            // The common case: every attempt was the model's own.
            count_attempts(model, e.attempts.iter());
            if let Some(last) = e.attempts.last() {
                count_answer(model, last, e);
            }
            return;
        }
        // Some went to a fallback model: each counts under its model.
        for a in &e.attempts {
            let model = inner
                .models
                .entry(a.model.as_ref().unwrap_or(&e.model), ModelCounts::default);
            count_attempts(model, std::iter::once(a));
        }
        if let Some(last) = e.attempts.last() {
            let model = inner.models.entry(
                last.model.as_ref().unwrap_or(&e.model),
                ModelCounts::default,
            );
            count_answer(model, last, e);
        }
    }

    /// Frames of a stream `deployment` answered that were left out because
    /// they were not JSON (the stream went on without them).
    pub fn skipped_frames(&self, model: &Arc<str>, deployment: &Arc<str>, frames: u64) {
        let mut inner = self.lock();
        let model = inner.models.entry(model, ModelCounts::default);
        model
            .deployments
            .entry(deployment, DeploymentCounts::default)
            .skipped_frames += frames;
    }

    /// The text exposition, with deployment gauges taken from `states`.
    pub fn render(&self, states: &[(String, Vec<SlotStatus>)]) -> String {
        let mut out = String::with_capacity(4096);
        {
            let inner = self.lock();
            let models = &inner.models;
            let mut names: Vec<&Arc<str>> = models.keys().collect();
            names.sort();

            header(
                &mut out,
                "requests_total",
                "counter",
                "Requests by the status the client got.",
            );
            for name in &names {
                let mut statuses: Vec<_> = models[*name].requests.iter().collect();
                statuses.sort();
                for (status, n) in statuses {
                    line(
                        &mut out,
                        "requests_total",
                        &[("model", name), ("status", &status.to_string())],
                        *n,
                    );
                }
            }
            header(
                &mut out,
                "failovers_total",
                "counter",
                "Attempts after the first, summed over requests.",
            );
            for name in &names {
                line(
                    &mut out,
                    "failovers_total",
                    &[("model", name)],
                    models[*name].failovers,
                );
            }
            header(
                &mut out,
                "attempts_total",
                "counter",
                "Upstream attempts by deployment and outcome.",
            );
            for name in &names {
                for (dep, d) in sorted(&models[*name]) {
                    let mut outcomes: Vec<_> = d.attempts.iter().collect();
                    outcomes.sort();
                    for (outcome, n) in outcomes {
                        let labels = [
                            ("model", &***name),
                            ("deployment", dep),
                            ("outcome", &outcome.to_string()),
                        ];
                        line(&mut out, "attempts_total", &labels, *n);
                    }
                }
            }
            header(
                &mut out,
                "tokens_total",
                "counter",
                "Tokens billed by the deployment that answered.",
            );
            for name in &names {
                for (dep, d) in sorted(&models[*name]) {
                    for (kind, n) in [
                        ("prompt", d.prompt_tokens),
                        ("completion", d.completion_tokens),
                    ] {
                        line(
                            &mut out,
                            "tokens_total",
                            &[("model", name), ("deployment", dep), ("kind", kind)],
                            n,
                        );
                    }
                }
            }
            header(
                &mut out,
                "stream_frames_skipped_total",
                "counter",
                "Stream frames left out because they were not JSON.",
            );
            for name in &names {
                for (dep, d) in sorted(&models[*name]) {
                    if d.skipped_frames > 0 {
                        let labels = [("model", &***name), ("deployment", dep)];
                        line(
                            &mut out,
                            "stream_frames_skipped_total",
                            &labels,
                            d.skipped_frames,
                        );
                    }
                }
            }
            header(
                &mut out,
                "request_duration_seconds",
                "histogram",
                "Request latency by the deployment that answered.",
            );
            for name in &names {
                for (dep, d) in sorted(&models[*name]) {
                    let count: u64 = d.buckets.iter().sum();
                    if count == 0 {
                        continue;
                    }
                    let labels =
                        format!("model=\"{}\",deployment=\"{}\"", escape(name), escape(dep));
                    let mut cumulative = 0;
                    for (i, n) in d.buckets.iter().enumerate() {
                        cumulative += n;
                        let le = LATENCY_BUCKETS
                            .get(i)
                            .map_or("+Inf".to_string(), f64::to_string);
                        let _ = writeln!(
                            out,
                            "switchboard_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}"
                        );
                    }
                    let _ = writeln!(
                        out,
                        "switchboard_request_duration_seconds_sum{{{labels}}} {}",
                        d.seconds
                    );
                    let _ = writeln!(
                        out,
                        "switchboard_request_duration_seconds_count{{{labels}}} {count}"
                    );
                }
            }
        }

        let gauges: [(&str, &str, Gauge); 5] = [
            (
                "deployment_tpm_used",
                "Tokens counted in the current one-minute window.",
                |s| Some(s.tpm_used as f64),
            ),
            (
                "deployment_tpm_limit",
                "The configured tokens-per-minute limit.",
                |s| s.tpm_limit.map(|l| l as f64),
            ),
            (
                "deployment_healthy",
                "1 when the deployment takes traffic.",
                |s| Some(f64::from(u8::from(s.state == State::Healthy))),
            ),
            (
                "deployment_enabled",
                "1 when the deployment is enabled.",
                |s| Some(f64::from(u8::from(s.enabled))),
            ),
            (
                "deployment_cooldown_seconds",
                "Seconds left of the deployment's cooldown.",
                |s| Some(s.cooldown_remaining_s),
            ),
        ];
        for (name, help, value) in gauges {
            header(&mut out, name, "gauge", help);
            for (model, slots) in states {
                for s in slots {
                    if let Some(v) = value(s) {
                        line(
                            &mut out,
                            name,
                            &[("model", model), ("deployment", &s.name)],
                            v,
                        );
                    }
                }
            }
        }
        out
    }
}

fn sorted(m: &ModelCounts) -> Vec<(&Arc<str>, &DeploymentCounts)> {
    let mut d: Vec<_> = m.deployments.iter().collect();
    d.sort_by(|a, b| a.0.cmp(b.0));
    d
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP switchboard_{name} {help}");
    let _ = writeln!(out, "# TYPE switchboard_{name} {kind}");
}

fn line(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
    let _ = write!(out, "switchboard_{name}{{");
    for (i, (k, v)) in labels.iter().enumerate() {
        let comma = if i == 0 { "" } else { "," };
        let _ = write!(out, "{comma}{k}=\"{}\"", escape(v));
    }
    let _ = writeln!(out, "}} {value}");
}

/// A label value as the text format wants it: `\`, `"` and newlines escaped.
fn escape(v: &str) -> std::borrow::Cow<'_, str> {
    if !v.contains(['\\', '"', '\n']) {
        return v.into();
    }
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Attempt, RequestOutcome};

    fn event(attempts: &[(&str, AttemptOutcome)], status: u16, latency_ms: f64) -> RequestEvent {
        RequestEvent {
            id: 1,
            at_ms: 0,
            model: "m".into(),
            endpoint: "chat.completions".into(),
            stream: false,
            attempts: attempts
                .iter()
                .map(|(d, o)| Attempt {
                    model: None,
                    deployment: (*d).into(),
                    outcome: *o,
                    latency_ms: 1.0,
                })
                .collect(),
            status,
            outcome: RequestOutcome::Ok,
            latency_ms,
            prompt_tokens: 10,
            completion_tokens: 5,
            tokens_estimated: false,
            instance: None,
        }
    }

    #[test]
    fn counts_requests_attempts_tokens_and_latency_buckets() {
        let m = Metrics::new(0);
        let ok = AttemptOutcome::Ok { status: 200 };
        m.record(&event(
            &[("a", AttemptOutcome::Status { status: 429 }), ("b", ok)],
            200,
            3.0,
        ));
        m.record(&event(&[("b", ok)], 200, 200.0));
        m.record(&event(&[("a", AttemptOutcome::Timeout)], 504, 7000.0));
        m.skipped_frames(&"m".into(), &"b".into(), 2);
        let text = m.render(&[]);
        for want in [
            "switchboard_requests_total{model=\"m\",status=\"200\"} 2",
            "switchboard_requests_total{model=\"m\",status=\"504\"} 1",
            "switchboard_failovers_total{model=\"m\"} 1",
            "switchboard_attempts_total{model=\"m\",deployment=\"a\",outcome=\"429\"} 1",
            "switchboard_attempts_total{model=\"m\",deployment=\"a\",outcome=\"timeout\"} 1",
            "switchboard_attempts_total{model=\"m\",deployment=\"b\",outcome=\"ok\"} 2",
            "switchboard_tokens_total{model=\"m\",deployment=\"b\",kind=\"prompt\"} 20",
            // 3 ms lands in le=0.005; cumulative counts after it.
            "switchboard_request_duration_seconds_bucket{model=\"m\",deployment=\"b\",le=\"0.0025\"} 0",
            "switchboard_request_duration_seconds_bucket{model=\"m\",deployment=\"b\",le=\"0.005\"} 1",
            "switchboard_request_duration_seconds_bucket{model=\"m\",deployment=\"b\",le=\"0.25\"} 2",
            "switchboard_request_duration_seconds_bucket{model=\"m\",deployment=\"b\",le=\"+Inf\"} 2",
            "switchboard_request_duration_seconds_count{model=\"m\",deployment=\"b\"} 2",
            "switchboard_request_duration_seconds_bucket{model=\"m\",deployment=\"a\",le=\"5\"} 0",
            "switchboard_request_duration_seconds_bucket{model=\"m\",deployment=\"a\",le=\"10\"} 1",
            "# TYPE switchboard_request_duration_seconds histogram",
            "switchboard_stream_frames_skipped_total{model=\"m\",deployment=\"b\"} 2",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new(0);
        let mut e = event(&[("eu \"west\"\\1", AttemptOutcome::Connect)], 502, 1.0);
        e.model = "a\nb".into();
        m.record(&e);
        let text = m.render(&[]);
        assert!(
            text.contains(r#"switchboard_attempts_total{model="a\nb",deployment="eu \"west\"\\1",outcome="connect"} 1"#),
            "{text}"
        );
    }
}
