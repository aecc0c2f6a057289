//! The router core's rules, on an injected clock.
use super::*;

fn s(v: u64) -> Duration {
    Duration::from_secs(v)
}

fn pool(limits: &[Option<u64>]) -> Pool {
    let mut p = Pool::new(RoutingConfig::default());
    for (i, l) in limits.iter().enumerate() {
        p.push(format!("d{i}").into(), *l, true);
    }
    p
}

fn counts(p: &mut Pool, n: usize) -> Vec<usize> {
    let mut c = vec![0; p.len()];
    for _ in 0..n {
        let pick = p.pick(s(0), 0, &[]).unwrap();
        c[pick.index] += 1;
    }
    c
}

#[test]
fn weights_follow_tpm_limits_exactly() {
    let mut p = pool(&[Some(300_000), Some(100_000)]);
    assert_eq!(counts(&mut p, 8), vec![6, 2]);
}

#[test]
fn no_limits_rotate_evenly() {
    let mut p = pool(&[None, None, None]);
    let order: Vec<usize> = (0..6)
        .map(|_| p.pick(s(0), 10, &[]).unwrap().index)
        .collect();
    assert_eq!(order, vec![0, 1, 2, 0, 1, 2]);
}

#[test]
fn mixed_unlimited_weighs_as_the_largest_limit() {
    let mut p = pool(&[Some(100), Some(300), None]);
    assert_eq!(counts(&mut p, 7), vec![1, 3, 3]);
}

#[test]
fn re_enabling_forgets_old_failures() {
    let mut p = pool(&[None]);
    for _ in 0..5 {
        p.record(0, s(0), Verdict::Failed);
    }
    p.set_enabled(0, false);
    p.set_enabled(0, true);
    assert_eq!(p.status(0, s(0)).state, State::Healthy);
    assert_eq!(p.status(0, s(0)).consecutive_failures, 0);
}

#[test]
fn disabled_deployments_get_nothing() {
    let mut p = pool(&[None, None]);
    p.set_enabled(0, false);
    assert_eq!(counts(&mut p, 4), vec![0, 4]);
    p.set_enabled(1, false);
    assert_eq!(p.pick(s(0), 1, &[]), Err(Unavailable::NoneEnabled));
}

#[test]
fn failover_skips_tried_deployments() {
    let mut p = pool(&[None, None, None]);
    let first = p.pick(s(0), 1, &[]).unwrap().index;
    let second = p.pick(s(0), 1, &[first]).unwrap().index;
    let third = p.pick(s(0), 1, &[first, second]).unwrap().index;
    let mut all = vec![first, second, third];
    all.sort();
    assert_eq!(all, vec![0, 1, 2]);
    assert_eq!(p.pick(s(0), 1, &[0, 1, 2]), Err(Unavailable::Exhausted));
}

#[test]
fn a_full_window_is_skipped_until_it_frees() {
    let mut p = pool(&[Some(1000), Some(1000)]);
    let a = p.pick(s(0), 900, &[]).unwrap();
    let b = p.pick(s(0), 900, &[]).unwrap();
    assert_ne!(a.index, b.index);
    assert_eq!(
        p.pick(Duration::from_millis(30_500), 200, &[]),
        Err(Unavailable::RateLimited {
            retry_after: Duration::from_millis(29_500)
        })
    );
    // The real usage was lower: the window frees at once.
    p.settle(a.index, s(31), a.reservation, 100);
    assert_eq!(p.pick(s(31), 200, &[]).unwrap().index, a.index);
    assert_eq!(p.status(a.index, s(31)).tpm_used, 300);
}

#[test]
fn rate_limited_and_failing_give_different_reasons() {
    let mut p = pool(&[None, None]);
    p.record(0, s(0), Verdict::RateLimited(Some(s(7))));
    for _ in 0..3 {
        p.record(1, s(0), Verdict::Failed);
    }
    assert_eq!(
        p.pick(s(1), 1, &[]),
        Err(Unavailable::RateLimited { retry_after: s(4) })
    );
    let mut q = pool(&[None]);
    for _ in 0..3 {
        q.record(0, s(0), Verdict::Failed);
    }
    assert_eq!(
        q.pick(s(2), 1, &[]),
        Err(Unavailable::Failing { retry_after: s(3) })
    );
    let st = q.status(0, s(2));
    assert_eq!(st.state, State::CoolingDown);
    assert_eq!(st.failures, 3);
}

#[test]
fn the_first_pick_after_a_cooldown_is_the_only_probe() {
    let mut p = pool(&[None, None]);
    for _ in 0..3 {
        p.record(0, s(0), Verdict::Failed);
    }
    assert_eq!(counts(&mut p, 2), vec![0, 2]);
    let mut probes = 0;
    let mut to_zero = 0;
    for _ in 0..4 {
        let pick = p.pick(s(6), 1, &[]).unwrap();
        probes += pick.probe as usize;
        to_zero += (pick.index == 0) as usize;
    }
    assert_eq!((probes, to_zero), (1, 1));
    assert_eq!(
        p.record(0, s(7), Verdict::Answered),
        Some(Transition::Recovered)
    );
    assert_eq!(p.status(0, s(7)).state, State::Healthy);
}

fn tiered(tiers: &[(u32, Option<u64>)]) -> Pool {
    let mut p = Pool::new(RoutingConfig::default());
    for (i, (tier, limit)) in tiers.iter().enumerate() {
        let index = p.push(format!("d{i}").into(), *limit, true);
        p.set_priority(index, *tier);
    }
    p
}

#[test]
fn the_best_tier_takes_everything_while_it_has_room() {
    let mut p = tiered(&[(2, Some(100_000)), (1, Some(1_000)), (2, Some(50_000))]);
    let picks: Vec<usize> = (0..5)
        .map(|_| p.pick(s(0), 100, &[]).unwrap().index)
        .collect();
    assert_eq!(picks, vec![1; 5]);
    assert_eq!(p.spilled_to(), None);
}

#[test]
fn a_full_tier_spills_with_shares_exact_below_and_traffic_returns_at_once() {
    let mut p = tiered(&[(1, Some(1_000)), (2, Some(200_000)), (2, Some(100_000))]);
    let first = p.pick(s(0), 900, &[]).unwrap();
    assert_eq!((first.index, first.tier_change.clone()), (0, None));
    let spill = p.pick(s(0), 900, &[]).unwrap();
    assert_eq!(
        spill.tier_change,
        Some(TierChange::Spilled {
            from: 1,
            to: 2,
            reason: "tier 1 full (d0 at limit)".into()
        })
    );
    // Inside tier 2 the weights hold exactly (2:1), the spill is said once.
    let mut counts = [0usize; 3];
    counts[spill.index] += 1;
    for _ in 0..5 {
        let pick = p.pick(s(0), 900, &[]).unwrap();
        assert_eq!(pick.tier_change, None);
        counts[pick.index] += 1;
    }
    assert_eq!(counts, [0, 4, 2]);
    // The window frees: the very next request goes back to tier 1.
    let back = p.pick(s(61), 900, &[]).unwrap();
    assert_eq!(
        (back.index, back.tier_change),
        (0, Some(TierChange::Returned { to: 1 }))
    );
}

#[test]
fn failover_walks_the_tier_then_the_next() {
    let mut p = tiered(&[(1, None), (2, None), (1, None), (3, None)]);
    let mut tried = Vec::new();
    while let Ok(pick) = p.pick(s(0), 1, &tried) {
        tried.push(pick.index);
    }
    assert_eq!(tried.len(), 4);
    let mut first_two = tried[..2].to_vec();
    first_two.sort();
    assert_eq!(first_two, vec![0, 2]);
    assert_eq!(&tried[2..], &[1, 3]);
}

#[test]
fn a_rate_limited_or_cooling_tier_spills_and_says_why() {
    let mut p = tiered(&[(1, None), (1, None), (2, None)]);
    p.record(0, s(0), Verdict::RateLimited(Some(s(30))));
    for _ in 0..3 {
        p.record(1, s(0), Verdict::Failed);
    }
    let pick = p.pick(s(1), 1, &[]).unwrap();
    assert_eq!(pick.index, 2);
    assert_eq!(
        pick.tier_change,
        Some(TierChange::Spilled {
            from: 1,
            to: 2,
            reason: "tier 1 full (d0 rate limited, d1 cooling down)".into()
        })
    );
}

#[test]
fn a_retired_deployment_in_another_tier_makes_no_tiers() {
    let mut p = tiered(&[(5, None), (1, None)]);
    p.retire(0);
    assert_eq!(p.pick(s(0), 1, &[]).unwrap().index, 1);
}

#[test]
fn disabling_the_best_tier_is_no_spill() {
    let mut p = tiered(&[(1, None), (2, None)]);
    p.set_enabled(0, false);
    let pick = p.pick(s(0), 1, &[]).unwrap();
    assert_eq!((pick.index, pick.tier_change), (1, None));
}

fn session(name: &str) -> Want {
    Want {
        session: Some((SessionKey::of(name), s(300))),
    }
}

#[test]
fn a_session_sticks_to_its_deployment_while_it_can_take_it() {
    let mut p = pool(&[None, None, None]);
    let first = p.pick_for(s(0), 10, &[], session("a")).unwrap().index;
    for t in 1..10 {
        // Other traffic in between moves the round robin on.
        p.pick(s(t), 10, &[]).unwrap();
        let again = p.pick_for(s(t), 10, &[], session("a")).unwrap();
        assert_eq!((again.index, again.repinned_from), (first, None));
    }
    // Its deployment cools down: re-pinned elsewhere, and said so.
    p.record(first, s(10), Verdict::RateLimited(Some(s(20))));
    let moved = p.pick_for(s(10), 10, &[], session("a")).unwrap();
    assert_ne!(moved.index, first);
    assert_eq!(moved.repinned_from, Some(first));
    // It stays with the new one after the first recovers.
    let after = p.pick_for(s(40), 10, &[], session("a")).unwrap();
    assert_eq!((after.index, after.repinned_from), (moved.index, None));
}

#[test]
fn a_pin_expires_after_the_ttl() {
    let mut p = pool(&[None, None]);
    let first = p.pick_for(s(0), 10, &[], session("a")).unwrap().index;
    assert_eq!(p.pinned(SessionKey::of("a"), s(299), s(300)), Some(first));
    assert_eq!(p.pinned(SessionKey::of("a"), s(300), s(300)), None);
    let st = p.statuses(s(1), s(300));
    assert_eq!(st[first].pinned_sessions, 1);
    assert_eq!(p.statuses(s(301), s(300))[first].pinned_sessions, 0);
}

#[test]
fn new_sessions_go_where_the_tokens_are_fewest_for_the_weight() {
    let mut p = pool(&[Some(300_000), Some(100_000)]);
    // One long session on d0's share of the weight...
    let a = p
        .pick_for(s(0), 30_000, &[], session("long"))
        .unwrap()
        .index;
    assert_eq!(a, 0);
    // ...so the next new sessions go to d1 until it has a third as many tokens.
    let b = p.pick_for(s(0), 5_000, &[], session("b")).unwrap().index;
    let c = p.pick_for(s(0), 5_000, &[], session("c")).unwrap().index;
    assert_eq!((b, c), (1, 1));
    // 10k of 100k is 30k of 300k: a tie goes to the larger deployment.
    let d = p.pick_for(s(0), 5_000, &[], session("d")).unwrap().index;
    assert_eq!(d, 0);
    let e = p.pick_for(s(0), 5_000, &[], session("e")).unwrap().index;
    assert_eq!(e, 1, "10k of 100k is below 35k of 300k");
}

#[test]
fn a_pin_in_a_lower_tier_gives_way_when_the_best_tier_frees() {
    let mut p = tiered(&[(1, None), (2, None)]);
    p.record(0, s(0), Verdict::RateLimited(Some(s(5))));
    assert_eq!(p.pick_for(s(1), 1, &[], session("a")).unwrap().index, 1);
    let back = p.pick_for(s(6), 1, &[], session("a")).unwrap();
    assert_eq!((back.index, back.repinned_from), (0, Some(1)));
}

#[test]
fn a_lone_session_never_hops() {
    // Limits far above its load: only a limit would move it.
    let mut p = pool(&[Some(3_000_000), Some(2_000_000), Some(1_000_000)]);
    let first = p
        .pick_for(s(0), 2_000, &[], session("alone"))
        .unwrap()
        .index;
    for t in 1..50 {
        let pick = p
            .pick_for(s(t), 2_000 + 500 * t, &[], session("alone"))
            .unwrap();
        assert_eq!((pick.index, pick.repinned_from), (first, None), "turn {t}");
    }
}

#[test]
fn sessions_piled_on_one_deployment_spread_when_moving_one_helps() {
    let mut p = pool(&[None, None]);
    // Ten sessions land together on d0 and d1 alternately...
    let names: Vec<String> = (0..10).map(|i| format!("s{i}")).collect();
    let mut at = Vec::new();
    for n in &names {
        at.push(p.pick_for(s(0), 1_000, &[], session(n)).unwrap().index);
    }
    // ...then the ones on d0 turn out heavy and those on d1 light.
    let mut moves = 0;
    for t in 1..20 {
        for (n, &home) in names.iter().zip(&at) {
            let tokens = if home == 0 { 5_000 } else { 200 };
            let pick = p.pick_for(s(t), tokens, &[], session(n)).unwrap();
            moves += usize::from(pick.repinned_from.is_some());
        }
    }
    let st = p.statuses(s(20), s(300));
    let (a, b) = (st[0].tpm_used as f64, st[1].tpm_used as f64);
    assert!(moves > 0 && moves <= 5, "a few sessions move ({moves})");
    assert!(
        (a / (a + b) - 0.5).abs() < 0.15,
        "the load evens out: {a} vs {b}"
    );
}

#[test]
fn a_failed_attempt_on_the_best_tier_is_no_spill() {
    let mut p = tiered(&[(1, None), (2, None)]);
    let first = p.pick(s(0), 1, &[]).unwrap();
    assert_eq!(first.index, 0);
    // It failed once (no cooldown yet): the retry goes to tier 2, but the
    // model is not spilling, and the next request is tier 1's again.
    p.record(0, s(0), Verdict::Failed);
    let retry = p.pick(s(0), 1, &[0]).unwrap();
    assert_eq!((retry.index, retry.tier_change), (1, None));
    assert_eq!(p.spilled_to(), None);
    let next = p.pick(s(0), 1, &[]).unwrap();
    assert_eq!((next.index, next.tier_change), (0, None));
}
