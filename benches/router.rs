//! Hot paths of the router core: choosing a deployment and the TPM window.
//! `cargo bench --bench router`

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use switchboard::config::RoutingConfig;
use switchboard::router::{Limits, Need, Pool, TpmWindow, Verdict};

fn pool(n: usize, limits: bool) -> Pool {
    let mut p = Pool::new(RoutingConfig::default());
    for i in 0..n {
        let limit = limits.then_some(100_000 + i as u64 * 10_000);
        p.push(format!("deployment-{i}").into(), limit, true);
    }
    p
}

fn selection(c: &mut Criterion) {
    let mut group = c.benchmark_group("select");
    for n in [2usize, 16, 128, 1000] {
        group.bench_with_input(BenchmarkId::new("tpm_weighted", n), &n, |b, &n| {
            let mut p = pool(n, true);
            let mut t = 0u64;
            b.iter(|| {
                // Advance the clock so the windows stay below their limits.
                t += 1;
                let now = Duration::from_micros(t * 50);
                let pick = p.pick(now, black_box(100), &[]).unwrap();
                p.settle(pick.index, now, pick.reservation, 0);
                p.record(pick.index, now, Verdict::Answered);
                pick.index
            })
        });
        group.bench_with_input(BenchmarkId::new("even", n), &n, |b, &n| {
            let mut p = pool(n, false);
            b.iter(|| p.pick(Duration::ZERO, black_box(100), &[]).unwrap().index)
        });
    }
    group.finish();
}

fn window(c: &mut Criterion) {
    c.bench_function("tpm_window/add_used", |b| {
        let mut w = TpmWindow::new();
        let mut t = 0u64;
        b.iter(|| {
            t += 1;
            let now = Duration::from_millis(t * 7);
            w.add(now, black_box(42));
            w.used(now)
        })
    });
}

/// Admission with every limit a deployment can have against the TPM
/// window alone (the bar: at most 1.5x).
fn admission(c: &mut Criterion) {
    let mut group = c.benchmark_group("admission");
    let all = |i: u64| Limits {
        tpm: Some(100_000_000 + i),
        rpm: Some(100_000_000),
        rpm_slice_s: Some(10),
        input_tpm: Some(100_000_000),
        output_tpm: Some(100_000_000),
        max_in_flight: Some(1_000),
    };
    for (name, limits) in [
        (
            "tpm_only",
            [
                Limits::tpm(Some(100_000_000)),
                Limits::tpm(Some(100_000_001)),
            ],
        ),
        ("four_limits", [all(0), all(1)]),
    ] {
        group.bench_function(name, |b| {
            let mut p = Pool::new(RoutingConfig::default());
            for (i, l) in limits.iter().enumerate() {
                p.push(format!("deployment-{i}").into(), *l, true);
            }
            let mut t = 0u64;
            b.iter(|| {
                t += 1;
                let now = Duration::from_micros(t * 50);
                let need = Need {
                    input: black_box(60),
                    output: 40,
                };
                let pick = p.pick(now, need, &[]).unwrap();
                p.settle(pick.index, now, pick.reservation, need);
                p.end(pick.index);
                p.record(pick.index, now, Verdict::Answered);
                pick.index
            })
        });
    }
    group.finish();
}

/// A request that lines up and is let on at once: the cost of the queue
/// when the wait is 0 s (the bar: under 5 us).
fn queue(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let q = switchboard::gateway::queue::Queue::default();
    c.bench_function("queue/zero_wait", |b| {
        b.iter(|| {
            rt.block_on(async {
                let place = q.join(1000).unwrap();
                place.turn().await;
                drop(place);
            })
        })
    });
    c.bench_function("queue/empty_check", |b| b.iter(|| black_box(&q).is_empty()));
}

criterion_group!(benches, selection, window, admission, queue);
criterion_main!(benches);
