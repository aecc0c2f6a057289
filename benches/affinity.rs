//! Sticky sessions against exact shares: a simulated load on the router
//! core, on its injected clock (deterministic, seconds to run).
//!
//! 200 conversations of Zipf-distributed length (1 to 60 turns, s = 1.1;
//! each turn resends the whole conversation, so a long one weighs far more
//! than a short one, and comes 1 to 6 s after the last) start within the
//! first minute at a model with three deployments whose TPM limits are 3:2:1
//! (60M TPM in all, five times the load: no limit is reached). Reported: each deployment's share of the tokens in
//! every whole minute and overall (target: within ±5 points of 50/33/17),
//! and how many follow-up turns went where the conversation's previous turn
//! went (target: ≥ 95 %), with `affinity = "session"` and with `"off"`.
//!
//! `cargo bench --bench affinity` (README quotes its output).

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use switchboard::config::RoutingConfig;
use switchboard::router::{Pool, SessionKey, Want};

const SESSIONS: usize = 200;
const LIMITS: [u64; 3] = [30_000_000, 20_000_000, 10_000_000];
const TTL: Duration = Duration::from_secs(300);

struct Turn {
    at_ms: u64,
    session: usize,
    prompt: u64,
    completion: u64,
}

/// Turns of `s`-Zipf lengths from 1 to `max`, drawn by inverse transform.
fn zipf(rng: &mut SmallRng, s: f64, max: usize) -> usize {
    let weights: Vec<f64> = (1..=max).map(|k| 1.0 / (k as f64).powf(s)).collect();
    let total: f64 = weights.iter().sum();
    let mut x = rng.random::<f64>() * total;
    for (k, w) in weights.iter().enumerate() {
        x -= w;
        if x <= 0.0 {
            return k + 1;
        }
    }
    max
}

fn workload(seed: u64) -> Vec<Turn> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut turns = Vec::new();
    for session in 0..SESSIONS {
        let length = zipf(&mut rng, 1.1, 60);
        let mut at = rng.random_range(0..60_000u64);
        let mut context = 1_500u64; // the system prompt and tools
        for _ in 0..length {
            let user = rng.random_range(50..800u64);
            let completion = rng.random_range(100..1_200u64);
            let prompt = context + user;
            turns.push(Turn {
                at_ms: at,
                session,
                prompt,
                completion,
            });
            context = prompt + completion;
            at += rng.random_range(1_000..6_000u64);
        }
    }
    turns.sort_by_key(|t| t.at_ms);
    turns
}

struct Outcome {
    /// Tokens per deployment per whole minute (and overall, last).
    minutes: Vec<[u64; 3]>,
    followups: u64,
    stayed: u64,
    repins: u64,
}

fn run(turns: &[Turn], sticky: bool) -> Outcome {
    let mut pool = Pool::new(RoutingConfig::default());
    for (i, limit) in LIMITS.iter().enumerate() {
        pool.push(format!("d{i}").into(), Some(*limit), true);
    }
    let mut last: Vec<Option<usize>> = vec![None; SESSIONS];
    let minutes_n = (turns.last().map_or(0, |t| t.at_ms) / 60_000 + 1) as usize;
    let mut out = Outcome {
        minutes: vec![[0; 3]; minutes_n + 1],
        followups: 0,
        stayed: 0,
        repins: 0,
    };
    for t in turns {
        let now = Duration::from_millis(t.at_ms);
        let want = Want {
            session: sticky.then(|| (SessionKey(t.session as u64 + 1), TTL)),
        };
        let estimate = t.prompt + 4_096;
        let Ok(pick) = pool.pick_for(now, estimate, &[], want) else {
            continue;
        };
        let tokens = t.prompt + t.completion;
        pool.settle(pick.index, now, pick.reservation, tokens);
        out.repins += u64::from(pick.repinned_from.is_some());
        if let Some(prev) = last[t.session] {
            out.followups += 1;
            out.stayed += u64::from(prev == pick.index);
        }
        last[t.session] = Some(pick.index);
        out.minutes[(t.at_ms / 60_000) as usize][pick.index] += tokens;
        out.minutes[minutes_n][pick.index] += tokens;
    }
    out
}

fn shares(t: &[u64; 3]) -> [f64; 3] {
    let total = t.iter().sum::<u64>().max(1) as f64;
    t.map(|x| x as f64 * 100.0 / total)
}

fn report(name: &str, o: &Outcome) -> f64 {
    let target = [50.0, 100.0 / 3.0, 100.0 / 6.0];
    println!("{name}:");
    let mut worst: f64 = 0.0;
    let n = o.minutes.len() - 1;
    for (m, t) in o.minutes.iter().enumerate() {
        let s = shares(t);
        let off = s
            .iter()
            .zip(target)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        let label = if m == n {
            "overall ".to_string()
        } else {
            format!("minute {}", m + 1)
        };
        println!(
            "  {label}: {:5.1}% {:5.1}% {:5.1}%  ({:.1}M tokens, off by at most {off:.1} points)",
            s[0],
            s[1],
            s[2],
            t.iter().sum::<u64>() as f64 / 1e6
        );
        // The first minute fills up and the last drains: the steady ones count.
        if m > 0 && m + 2 < n {
            worst = worst.max(off);
        }
    }
    let stayed = o.stayed as f64 * 100.0 / o.followups.max(1) as f64;
    println!(
        "  follow-ups where the previous turn went: {stayed:.1}% of {} ({} re-pins)",
        o.followups, o.repins
    );
    worst
}

fn main() {
    // `cargo test --benches` runs this as a test with `--bench` absent.
    let seed = std::env::var("SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let turns = workload(seed);
    println!(
        "{} conversations, {} turns, {:.1}M tokens over {:.1} minutes; TPM limits 3:2:1",
        SESSIONS,
        turns.len(),
        turns.iter().map(|t| t.prompt + t.completion).sum::<u64>() as f64 / 1e6,
        turns.last().map_or(0, |t| t.at_ms) as f64 / 60_000.0
    );
    let sticky = run(&turns, true);
    let worst = report("affinity = \"session\"", &sticky);
    println!("  steady minutes off by at most {worst:.1} points\n");
    let off = run(&turns, false);
    let worst_off = report("affinity = \"off\"", &off);
    println!("  steady minutes off by at most {worst_off:.1} points");
}
