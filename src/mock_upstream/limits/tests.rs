use super::*;

fn opts(configure: impl FnOnce(&mut MockOptions)) -> MockOptions {
    let mut o = MockOptions::new("127.0.0.1:0".parse().unwrap());
    configure(&mut o);
    o
}

fn windows(configure: impl FnOnce(&mut MockOptions)) -> Windows {
    Windows::new(&opts(configure)).expect("a limit is set")
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn one(input: u64, written: u64, max: Option<u64>) -> Need {
    Need::new(input, written, max)
}

#[test]
fn no_limit_no_windows() {
    assert!(Windows::new(&opts(|_| {})).is_none());
    assert!(Windows::new(&opts(|o| o.max_in_flight = Some(3))).is_none());
}

#[test]
fn slices_allow_rpm_times_slice_over_sixty_at_least_one() {
    assert_eq!(per_slice(600, 1), 10);
    assert_eq!(per_slice(600, 10), 100);
    assert_eq!(per_slice(59, 1), 1, "rounded down, at least 1");
    assert_eq!(per_slice(119, 1), 1);
    assert_eq!(per_slice(65, 10), 10);
}

#[test]
fn requests_per_minute_slide() {
    let mut w = windows(|o| o.rpm_limit = Some(3));
    let t0 = Instant::now();
    for (i, left) in [2, 1, 0].into_iter().enumerate() {
        let (g, _) = w.admit(one(5, 5, None), t0 + secs(i as f64)).unwrap();
        let r = g.requests.unwrap();
        assert_eq!((r.limit, r.remaining, r.refused), (3, left, false));
        // Whole again 60 s after the last one.
        assert_eq!(r.reset, secs(60.0));
    }
    let refused = w.admit(one(5, 5, None), t0 + secs(10.0)).unwrap_err();
    assert_eq!(refused.dim, Dim::Requests);
    assert_eq!(refused.slice, None);
    let r = refused.gauges.requests.unwrap();
    assert_eq!((r.remaining, r.refused), (0, true));
    // The first request leaves at t0 + 60 s.
    assert_eq!(refused.retry_after, secs(50.0));
    assert_eq!(r.reset, secs(50.0));
    assert!(w.admit(one(5, 5, None), t0 + secs(60.0)).is_ok());
    assert!(w.admit(one(5, 5, None), t0 + secs(60.5)).is_err());
}

#[test]
fn a_slice_holds_back_a_burst_the_minute_allows() {
    // 600 a minute, 10 s slices: 100 in any 10 s.
    let mut w = windows(|o| {
        o.rpm_limit = Some(600);
        o.rpm_slice_s = Some(10);
    });
    let t0 = Instant::now();
    for i in 0..100 {
        let (g, _) = w
            .admit(one(1, 1, None), t0 + Duration::from_millis(i * 20))
            .unwrap();
        let r = g.requests.unwrap();
        assert_eq!(r.limit, 600);
        assert_eq!(r.remaining, 99 - i, "the slice's remaining is the lesser");
    }
    let refused = w.admit(one(1, 1, None), t0 + secs(5.0)).unwrap_err();
    assert_eq!(refused.dim, Dim::Requests);
    assert_eq!(refused.slice, Some((100, 10)));
    // The first of the slice leaves 10 s after it came.
    assert_eq!(refused.retry_after, secs(5.0));
    let r = refused.gauges.requests.unwrap();
    assert_eq!((r.limit, r.remaining, r.refused), (600, 0, true));
    assert!(w.admit(one(1, 1, None), t0 + secs(10.0)).is_ok());
}

#[test]
fn a_one_second_slice_is_precise_to_the_millisecond() {
    let mut w = windows(|o| {
        o.rpm_limit = Some(120);
        o.rpm_slice_s = Some(1);
    });
    let t0 = Instant::now();
    assert!(w.admit(one(1, 1, None), t0).is_ok());
    assert!(w.admit(one(1, 1, None), t0 + secs(0.5)).is_ok());
    let refused = w.admit(one(1, 1, None), t0 + secs(0.9)).unwrap_err();
    assert_eq!(refused.retry_after, secs(0.1));
    assert!(w.admit(one(1, 1, None), t0 + secs(1.0)).is_ok());
}

#[test]
fn input_and_output_are_counted_apart_and_refuse_apart() {
    let mut w = windows(|o| {
        o.input_tpm_limit = Some(100);
        o.output_tpm_limit = Some(50);
    });
    let t0 = Instant::now();
    // Output reserved from max_tokens.
    let (g, reservation) = w.admit(one(10, 5, Some(40)), t0).unwrap();
    assert_eq!(g.input.unwrap().remaining, 90);
    assert_eq!(g.output.unwrap().remaining, 10);
    assert!(g.tokens.is_none() && g.requests.is_none());
    let refused = w.admit(one(10, 5, Some(40)), t0 + secs(1.0)).unwrap_err();
    assert_eq!(refused.dim, Dim::Output);
    let (input, output) = (
        refused.gauges.input.unwrap(),
        refused.gauges.output.unwrap(),
    );
    assert!(!input.refused && input.remaining == 90, "{input:?}");
    assert!(output.refused && output.remaining == 10, "{output:?}");
    assert_eq!(refused.retry_after, secs(59.0));
    // The answer ends: what was written replaces what was reserved.
    w.output
        .as_mut()
        .unwrap()
        .settle(reservation.unwrap(), 5, t0 + secs(2.0));
    let (g, _) = w.admit(one(10, 5, Some(40)), t0 + secs(2.0)).unwrap();
    assert_eq!(g.output.unwrap().remaining, 5);
    // Input over its own limit, output fine.
    let refused = w.admit(one(81, 1, Some(1)), t0 + secs(3.0)).unwrap_err();
    assert_eq!(refused.dim, Dim::Input);
    assert!(!refused.gauges.output.unwrap().refused);
}

#[test]
fn a_refused_request_is_counted_nowhere() {
    let mut w = windows(|o| {
        o.tpm_limit = Some(1000);
        o.rpm_limit = Some(100);
        o.output_tpm_limit = Some(10);
    });
    let t0 = Instant::now();
    let refused = w.admit(one(5, 5, Some(20)), t0).unwrap_err();
    assert!(refused.too_large, "20 reserved of a 10 limit never fits");
    let (g, _) = w.admit(one(5, 5, Some(10)), t0).unwrap();
    assert_eq!(g.tokens.unwrap().remaining, 990);
    assert_eq!(g.requests.unwrap().remaining, 99);
}

#[test]
fn several_limits_refusing_wait_for_the_last() {
    let mut w = windows(|o| {
        o.tpm_limit = Some(20);
        o.rpm_limit = Some(1);
    });
    let t0 = Instant::now();
    w.admit(one(5, 5, None), t0).unwrap();
    w.admit(one(5, 5, None), t0 + secs(30.0)).unwrap_err();
    let refused = w.admit(one(15, 0, None), t0 + secs(30.0)).unwrap_err();
    assert_eq!(
        refused.dim,
        Dim::Tokens,
        "the first refusing limit names it"
    );
    assert!(refused.gauges.tokens.unwrap().refused);
    assert!(refused.gauges.requests.unwrap().refused);
    assert_eq!(refused.retry_after, secs(30.0));
}

#[test]
fn the_grace_makes_every_window_forget_early() {
    let mut w = windows(|o| {
        o.rpm_limit = Some(60);
        o.rpm_slice_s = Some(10);
        o.limit_grace_ms = 1500;
    });
    let t0 = Instant::now();
    for i in 0..10 {
        w.admit(one(1, 1, None), t0 + Duration::from_millis(i))
            .unwrap();
    }
    let refused = w.admit(one(1, 1, None), t0 + secs(1.0)).unwrap_err();
    assert_eq!(refused.slice, Some((10, 10)));
    // Counted until 8.5 s after the last of them (at 9 ms).
    assert!(w.admit(one(1, 1, None), t0 + secs(8.5)).is_err());
    assert!(w.admit(one(1, 1, None), t0 + secs(8.51)).is_ok());
}

#[test]
fn limits_count_refusals_by_dimension() {
    let limits = Limits::new(&opts(|o| {
        o.rpm_limit = Some(1);
        o.input_tpm_limit = Some(10);
    }));
    limits.admit(one(5, 5, None)).unwrap();
    limits.admit(one(50, 5, None)).unwrap_err();
    limits.count_refused(Dim::InFlight);
    let by = limits.refused();
    assert_eq!((by.requests, by.input, by.in_flight), (1, 1, 1));
    assert_eq!((by.tokens, by.output), (0, 0));
}

#[test]
fn the_settlement_rides_with_the_answer() {
    let limits = Limits::new(&opts(|o| o.output_tpm_limit = Some(100)));
    let admitted = limits.admit(one(1, 10, Some(60))).unwrap();
    assert_eq!(admitted.gauges.output.unwrap().remaining, 40);
    assert!(limits.admit(one(1, 10, Some(60))).is_err());
    drop(admitted);
    let again = limits.admit(one(1, 10, Some(60))).unwrap();
    assert_eq!(again.gauges.output.unwrap().remaining, 30);
    // Nothing to correct when the estimate was exact.
    assert!(limits.admit(one(1, 10, Some(10))).unwrap().settle.is_none());
}
