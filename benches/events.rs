//! Event fan-out: what publishing one routing event costs the request path,
//! with nobody watching, with the dashboard watching, and with the dashboard
//! plus two `/admin/events` streams; and the gateway's own per-request
//! record of the last minute's figures.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use switchboard::events::{Attempt, AttemptOutcome, Event, EventBus, RequestEvent, RequestOutcome};

fn request_event(id: u64) -> Event {
    Event::Request(RequestEvent {
        id,
        at_ms: 1,
        model: Arc::from("gpt-4o"),
        endpoint: "chat/completions".into(),
        stream: false,
        attempts: vec![Attempt {
            model: None,
            deployment: Arc::from("azure-eastus"),
            outcome: AttemptOutcome::Ok { status: 200 },
            latency_ms: 1.5,
        }],
        status: 200,
        outcome: RequestOutcome::Ok,
        latency_ms: 1.6,
        prompt_tokens: 12,
        completion_tokens: 30,
        tokens_estimated: false,
        instance: None,
    })
}

fn fan_out(c: &mut Criterion) {
    let mut group = c.benchmark_group("events/publish");
    for watchers in [0usize, 1, 3] {
        let bus = EventBus::new();
        let mut rxs: Vec<_> = (0..watchers).map(|_| bus.subscribe()).collect();
        let mut id = 0u64;
        group.bench_with_input(BenchmarkId::from_parameter(watchers), &watchers, |b, _| {
            b.iter(|| {
                id += 1;
                bus.publish(black_box(request_event(id)));
                // The watchers keep up, as the dashboard does by draining per frame.
                for rx in &mut rxs {
                    while rx.try_recv().is_ok() {}
                }
            })
        });
    }
    group.finish();
}

/// What the gateway's last-minute figures cost each request: one record.
fn minute_stats(c: &mut Criterion) {
    let Event::Request(mut r) = request_event(1) else {
        unreachable!()
    };
    let mut stats = switchboard::gateway::stats::Stats::new(0);
    let mut at = 0u64;
    c.bench_function("stats/record", |b| {
        b.iter(|| {
            // About 500 requests a second, so slots roll over as in service.
            at += 2;
            r.at_ms = at;
            stats.record(black_box(&r));
        })
    });
}

criterion_group!(benches, fan_out, minute_stats);
criterion_main!(benches);
