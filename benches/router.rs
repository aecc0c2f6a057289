//! Hot paths of the router core: choosing a deployment and the TPM window.
//! `cargo bench --bench router`

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use switchboard::config::RoutingConfig;
use switchboard::router::{Pool, TpmWindow, Verdict};

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

criterion_group!(benches, selection, window);
criterion_main!(benches);
