//! Properties of selection over random pools (proptest).

use std::time::Duration;

use proptest::prelude::*;
use switchboard::config::RoutingConfig;
use switchboard::router::{Pool, Verdict};

fn build(specs: &[(Option<u64>, bool)]) -> Pool {
    let mut p = Pool::new(RoutingConfig::default());
    for (i, (limit, enabled)) in specs.iter().enumerate() {
        p.push(format!("d{i}").into(), *limit, *enabled);
    }
    p
}

proptest! {
    #[test]
    fn never_picks_a_disabled_or_cooling_deployment(
        specs in prop::collection::vec((prop::option::of(1u64..1_000_000), any::<bool>()), 1..12),
        failing in prop::collection::vec(any::<bool>(), 12),
        picks in 1usize..200,
    ) {
        let mut p = build(&specs);
        for (i, f) in failing.iter().enumerate().take(specs.len()) {
            if *f {
                for _ in 0..3 { p.record(i, Duration::ZERO, Verdict::Failed); }
            }
        }
        for _ in 0..picks {
            match p.pick(Duration::from_secs(1), 0, &[]) {
                Ok(pick) => {
                    prop_assert!(specs[pick.index].1, "picked disabled {}", pick.index);
                    prop_assert!(!failing[pick.index], "picked cooling {}", pick.index);
                }
                Err(_) => prop_assert!(specs.iter().zip(&failing).all(|((_, en), f)| !en || *f)),
            }
        }
    }

    #[test]
    fn shares_match_the_weights_over_whole_cycles(
        limits in prop::collection::vec(1u64..50, 1..8),
        cycles in 1u64..4,
    ) {
        let specs: Vec<_> = limits.iter().map(|l| (Some(*l), true)).collect();
        let mut p = build(&specs);
        let total: u64 = limits.iter().sum();
        let mut counts = vec![0u64; limits.len()];
        for _ in 0..total * cycles {
            counts[p.pick(Duration::ZERO, 0, &[]).unwrap().index] += 1;
        }
        for (c, l) in counts.iter().zip(&limits) {
            prop_assert_eq!(*c, l * cycles);
        }
    }

    #[test]
    fn failover_tries_each_enabled_deployment_once(
        specs in prop::collection::vec((prop::option::of(1u64..1000), any::<bool>()), 1..10),
    ) {
        let mut p = build(&specs);
        let mut tried = Vec::new();
        while let Ok(pick) = p.pick(Duration::ZERO, 0, &tried) {
            prop_assert!(!tried.contains(&pick.index));
            tried.push(pick.index);
        }
        let enabled = specs.iter().filter(|s| s.1).count();
        prop_assert_eq!(tried.len(), enabled);
    }
}
