//! Every limit, on an injected clock, through the pool's picks.
use std::time::Duration;

use super::*;
use crate::config::RoutingConfig;
use crate::router::{Pool, Unavailable};

fn s(v: u64) -> Duration {
    Duration::from_secs(v)
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn pool(limits: &[Limits]) -> Pool {
    let mut p = Pool::new(RoutingConfig::default());
    for (i, l) in limits.iter().enumerate() {
        p.push(format!("d{i}").into(), *l, true);
    }
    p
}

fn need(input: u64, output: u64) -> Need {
    Need { input, output }
}

fn retry_after(e: Unavailable) -> Duration {
    match e {
        Unavailable::RateLimited { retry_after } => retry_after,
        other => panic!("expected RateLimited, got {other:?}"),
    }
}

#[test]
fn rpm_counts_requests_in_a_sliding_minute() {
    let rpm = Limits {
        rpm: Some(3),
        ..Limits::default()
    };
    let mut p = pool(&[rpm]);
    for t in [0, 10, 20] {
        p.pick(s(t), need(1_000_000, 0), &[]).unwrap();
    }
    let e = p.pick(s(30), 1, &[]).unwrap_err();
    assert_eq!(
        retry_after(e),
        s(30),
        "the request of second 0 leaves at 60"
    );
    assert_eq!(p.why_not(0, s(30), 1, &[]), "at RPM limit");
    assert!(p.pick(s(60), 1, &[]).is_ok());
}

#[test]
fn slices_cap_bursts_within_the_minute() {
    // 600 a minute in 10 s slices: 100 in any 10 s.
    let azure = Limits {
        rpm: Some(600),
        rpm_slice_s: Some(10),
        ..Limits::default()
    };
    let mut p = pool(&[azure]);
    for _ in 0..100 {
        p.pick(ms(5_500), 1, &[]).unwrap();
    }
    let e = p.pick(ms(5_900), 1, &[]).unwrap_err();
    // Second 5's requests leave the slice at second 15.
    assert_eq!(retry_after(e), ms(9_100));
    assert!(p.pick(s(14), 1, &[]).is_err());
    assert!(p.pick(s(15), 1, &[]).is_ok());
    // A 1 s slice of 60 a minute: one a second.
    let one = Limits {
        rpm: Some(60),
        rpm_slice_s: Some(1),
        ..Limits::default()
    };
    let mut p = pool(&[one]);
    assert!(p.pick(ms(100), 1, &[]).is_ok());
    assert!(p.pick(ms(900), 1, &[]).is_err());
    assert!(p.pick(ms(1_000), 1, &[]).is_ok());
}

#[test]
fn input_and_output_fill_their_own_windows() {
    let anthropic = Limits {
        input_tpm: Some(10_000),
        output_tpm: Some(1_000),
        ..Limits::default()
    };
    let mut p = pool(&[anthropic]);
    let a = p.pick(s(0), need(100, 800), &[]).unwrap();
    // The output window holds 800 of 1,000: another 800 does not fit.
    assert!(p.pick(s(1), need(100, 800), &[]).is_err());
    assert_eq!(
        p.why_not(0, s(1), need(100, 800), &[]),
        "at output TPM limit"
    );
    // It used 50: settled, there is room again.
    p.settle(0, s(1), a.reservation, need(120, 50));
    let used = p.used(0, s(1));
    assert_eq!((used.input, used.output, used.tokens), (120, 50, 170));
    assert!(p.pick(s(1), need(100, 800), &[]).is_ok());
    // Input-heavy load fills the input window while output has room.
    assert!(p.pick(s(2), need(9_800, 10), &[]).is_err());
    assert_eq!(
        p.why_not(0, s(2), need(9_800, 10), &[]),
        "at input TPM limit"
    );
}

#[test]
fn the_provider_can_say_a_dimension_ran_out() {
    let mut p = pool(&[Limits::default(), Limits::default()]);
    p.exhaust(0, Dim::Output, s(30));
    assert_eq!(p.status(0, s(5)).limited_by, Some(Dim::Output));
    for _ in 0..4 {
        assert_eq!(p.pick(s(5), 1, &[]).unwrap().index, 1);
    }
    assert_eq!(p.status(0, s(30)).limited_by, None);
    let picks: Vec<usize> = (0..4)
        .map(|_| p.pick(s(30), 1, &[]).unwrap().index)
        .collect();
    assert!(picks.contains(&0));
}

#[test]
fn in_flight_places_free_when_requests_end() {
    let vllm = Limits {
        max_in_flight: Some(2),
        ..Limits::default()
    };
    let mut p = pool(&[vllm]);
    let a = p.pick(s(0), 1, &[]).unwrap();
    let _b = p.pick(s(0), 1, &[]).unwrap();
    assert_eq!(p.status(0, s(0)).in_flight, 2);
    assert_eq!(
        retry_after(p.pick(s(0), 1, &[]).unwrap_err()),
        crate::router::pick::IN_FLIGHT_HINT
    );
    assert_eq!(p.why_not(0, s(0), 1, &[]), "at max in flight");
    p.end(a.index);
    assert!(p.pick(s(0), 1, &[]).is_ok());
    // A request never sent frees its place and counts nothing.
    let mut p = pool(&[vllm]);
    let a = p.pick(s(0), need(10, 10), &[]).unwrap();
    p.undo(0, s(0), a.reservation);
    let used = p.used(0, s(0));
    assert_eq!((used.requests, used.tokens, used.in_flight), (0, 0, 0));
}

#[test]
fn admissible_only_inside_every_limit() {
    let all = Limits {
        tpm: Some(1_000),
        rpm: Some(100),
        rpm_slice_s: Some(10),
        input_tpm: Some(800),
        output_tpm: Some(500),
        max_in_flight: Some(5),
    };
    let mut p = pool(&[all]);
    // 16 requests per 10 s slice; tokens stop it first here.
    for _ in 0..5 {
        let r = p.pick(s(0), need(100, 100), &[]).unwrap();
        p.end(r.index);
    }
    assert_eq!(p.why_not(0, s(0), need(100, 100), &[]), "at limit");
}

#[test]
fn weights_follow_tokens_then_requests_then_in_flight() {
    let split = |i, o| Limits {
        input_tpm: Some(i),
        output_tpm: Some(o),
        ..Limits::default()
    };
    // Split limits weigh as their sum, beside a plain TPM limit.
    let mut p = pool(&[split(300, 100), Limits::tpm(Some(200))]);
    let mut c = [0; 2];
    for _ in 0..6 {
        c[p.pick(s(0), 0, &[]).unwrap().index] += 1;
    }
    assert_eq!(c, [4, 2]);
    // Requests a minute weigh when no deployment has a token limit.
    let rpm = |n| Limits {
        rpm: Some(n),
        ..Limits::default()
    };
    let mut p = pool(&[rpm(3000), rpm(1000)]);
    let mut c = [0; 2];
    for _ in 0..8 {
        c[p.pick(s(0), 0, &[]).unwrap().index] += 1;
    }
    assert_eq!(c, [6, 2]);
    // Places in flight when nothing else is set (vLLM replicas).
    let slots = |n| Limits {
        max_in_flight: Some(n),
        ..Limits::default()
    };
    let mut p = pool(&[slots(16), slots(8)]);
    let mut c = [0; 2];
    for _ in 0..6 {
        let r = p.pick(s(0), 0, &[]).unwrap();
        p.end(r.index);
        c[r.index] += 1;
    }
    assert_eq!(c, [4, 2]);
}

#[test]
fn the_forecast_counts_down_at_a_steady_rate() {
    let limit = Limits::tpm(Some(5_000));
    let mut p = pool(&[limit]);
    for t in 0..40 {
        let r = p.pick(s(t), 100, &[]).unwrap();
        p.end(r.index);
    }
    // 4,000 of 5,000 at 100 a second: about 10 s left.
    let f = p.status(0, s(40)).forecast_full_s.unwrap();
    assert!((9.0..12.0).contains(&f), "{f}");
    // Later, nearer.
    for t in 40..45 {
        let r = p.pick(s(t), 100, &[]).unwrap();
        p.end(r.index);
    }
    let g = p.status(0, s(45)).forecast_full_s.unwrap();
    assert!(g < f && (4.0..7.0).contains(&g), "{g}");
    // A rate the window can hold forever: never.
    let mut p = pool(&[limit]);
    for t in 0..40 {
        let r = p.pick(s(t), 10, &[]).unwrap();
        p.end(r.index);
    }
    assert_eq!(p.status(0, s(40)).forecast_full_s, None);
}

#[test]
fn the_forecast_counts_what_leaves_the_window() {
    // A burst of 3,000 at second 0, then 40 a second: at second 50 the
    // window holds 5,000 of 6,000. At ~47 a second (the burst weighs in
    // a little), naively full in ~21 s; but the burst leaves at second
    // 60, and a minute of 40 a second is 2,400: never.
    let mut p = pool(&[Limits::tpm(Some(6_000))]);
    let r = p.pick(s(0), 3_000, &[]).unwrap();
    p.end(r.index);
    for t in 1..=50 {
        let r = p.pick(s(t), 40, &[]).unwrap();
        p.end(r.index);
    }
    assert_eq!(p.status(0, s(50)).tpm_used, 5_000);
    assert_eq!(p.status(0, s(50)).forecast_full_s, None);
}

#[test]
fn each_limit_has_its_own_forecast() {
    let both = Limits {
        tpm: Some(100_000),
        output_tpm: Some(2_000),
        max_in_flight: Some(4),
        ..Limits::default()
    };
    let mut p = pool(&[both]);
    for t in 0..30 {
        let r = p.pick(s(t), need(10, 50), &[]).unwrap();
        p.end(r.index);
    }
    // 1,500 of 2,000 output at 50 a second: ~10 s; tokens far off.
    let status = p.status(0, s(30));
    let by: Vec<(Dim, Option<f64>)> = status
        .forecasts
        .iter()
        .map(|f| (f.limit, f.full_s))
        .collect();
    assert_eq!(by.len(), 3, "{by:?}");
    assert_eq!(by[0].1, None, "60 tokens a second never fill 100,000");
    let output = by[1].1.unwrap();
    assert!((8.0..12.0).contains(&output), "{output}");
    assert_eq!(by[2], (Dim::InFlight, None));
    assert_eq!(status.forecast_full_s, Some(output));
}
