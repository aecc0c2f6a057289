//! Prometheus metrics, rendered by `metrics-exporter-prometheus`.
//!
//! The recorder is owned by the gateway rather than installed globally, so
//! several gateways (tests, the demo) can live in one process.

use metrics::{Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::events::{AttemptOutcome, RequestEvent};
use crate::router::{SlotStatus, State};

static META: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

fn labels(pairs: &[(&'static str, &str)]) -> Vec<Label> {
    pairs
        .iter()
        .map(|(k, v)| Label::new(*k, v.to_string()))
        .collect()
}

impl Metrics {
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("switchboard_request_duration_seconds".into()),
                LATENCY_BUCKETS,
            )
            .expect("static, non-empty bucket list")
            .build_recorder();
        let handle = recorder.handle();
        Self { recorder, handle }
    }

    fn counter(&self, name: &'static str, pairs: &[(&'static str, &str)], by: u64) {
        if by > 0 {
            self.recorder
                .register_counter(&Key::from_parts(name, labels(pairs)), &META)
                .increment(by);
        }
    }

    fn gauge(&self, name: &'static str, pairs: &[(&'static str, &str)], value: f64) {
        self.recorder
            .register_gauge(&Key::from_parts(name, labels(pairs)), &META)
            .set(value);
    }

    pub fn record(&self, e: &RequestEvent) {
        let status = e.status.to_string();
        let model = &*e.model;
        self.counter(
            "switchboard_requests_total",
            &[("model", model), ("status", &status)],
            1,
        );
        if e.attempts.len() > 1 {
            self.counter(
                "switchboard_failovers_total",
                &[("model", model)],
                e.attempts.len() as u64 - 1,
            );
        }
        for a in &e.attempts {
            let outcome = match a.outcome {
                AttemptOutcome::Ok { .. } => "ok".to_string(),
                AttemptOutcome::Status { status } => status.to_string(),
                AttemptOutcome::Timeout => "timeout".into(),
                AttemptOutcome::Connect => "connect".into(),
                AttemptOutcome::InvalidResponse => "invalid".into(),
                AttemptOutcome::Cancelled => "cancelled".into(),
            };
            let dep = &*a.deployment;
            self.counter(
                "switchboard_attempts_total",
                &[("model", model), ("deployment", dep), ("outcome", &outcome)],
                1,
            );
        }
        if let Some(last) = e.attempts.last() {
            let dep = &*last.deployment;
            self.counter(
                "switchboard_tokens_total",
                &[("model", model), ("deployment", dep), ("kind", "prompt")],
                e.prompt_tokens,
            );
            self.counter(
                "switchboard_tokens_total",
                &[
                    ("model", model),
                    ("deployment", dep),
                    ("kind", "completion"),
                ],
                e.completion_tokens,
            );
            self.recorder
                .register_histogram(
                    &Key::from_parts(
                        "switchboard_request_duration_seconds",
                        labels(&[("model", model), ("deployment", dep)]),
                    ),
                    &META,
                )
                .record(e.latency_ms / 1000.0);
        }
    }

    /// The text exposition, with deployment gauges taken from `states`.
    pub fn render(&self, states: &[(String, Vec<SlotStatus>)]) -> String {
        for (model, slots) in states {
            for s in slots {
                let labels = [("model", model.as_str()), ("deployment", &*s.name)];
                self.gauge(
                    "switchboard_deployment_tpm_used",
                    &labels,
                    s.tpm_used as f64,
                );
                if let Some(limit) = s.tpm_limit {
                    self.gauge("switchboard_deployment_tpm_limit", &labels, limit as f64);
                }
                self.gauge(
                    "switchboard_deployment_healthy",
                    &labels,
                    f64::from(u8::from(s.state == State::Healthy)),
                );
                self.gauge(
                    "switchboard_deployment_enabled",
                    &labels,
                    f64::from(u8::from(s.enabled)),
                );
                self.gauge(
                    "switchboard_deployment_cooldown_seconds",
                    &labels,
                    s.cooldown_remaining_s,
                );
            }
        }
        self.handle.render()
    }
}
