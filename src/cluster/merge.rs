//! Settles and verdicts merged before they go to Redis: the functions'
//! cost is per op (a settle and an answer are ~13 µs of Lua on the bench
//! box, more than the rest of a request's share of its call), and under
//! load most of a batch's ops say the same thing of the same deployment.
//!
//! - Settles of one deployment counted in the same second and windows,
//!   that either all give room back or all do not, become one: their
//!   reservations and usage summed. A bucket then loses the sum of the
//!   reservations and gains the sum of the usage, as it does op by op
//!   while it holds what was reserved in it (it always does, but after a
//!   Redis that lost it, when the op-by-op clamp to what is left differs).
//! - An answer after an answer of the same deployment, with no other
//!   verdict of it between, changes nothing (the first one ended any
//!   failure run, probe or failure cooldown) and goes.
//!
//! Only what changes nothing else is merged: undos, releases and every
//! other verdict go as they are, in order.

use super::shared::Counted;
use super::{Op, What};
use crate::router::{Reservation, Spent, Verdict};

/// `ops` with the mergeable ones merged, in the order of the first of each.
pub(super) fn merge(ops: Vec<Op>) -> Vec<Op> {
    if ops.len() < 2 {
        return ops;
    }
    let mut kept: Vec<Op> = Vec::with_capacity(ops.len());
    for op in ops {
        match &op.what {
            What::Settle { counted, spent } => {
                let frees = gives_back(counted, spent);
                let same = kept.iter_mut().find_map(|k| match &mut k.what {
                    What::Settle {
                        counted: c,
                        spent: s,
                    } if k.dep == op.dep
                        && k.keys == op.keys
                        && c.windows == counted.windows
                        && c.reservation.second() == counted.reservation.second()
                        && gives_back(c, s) == frees =>
                    {
                        Some((c, s))
                    }
                    _ => None,
                });
                if let Some((c, s)) = same {
                    let (r, o) = (c.reservation, counted.reservation);
                    c.reservation = Reservation::at(r.second(), r.tokens() + o.tokens())
                        .with_output(r.output() + o.output());
                    *s = Spent {
                        input: s.input + spent.input,
                        output: s.output + spent.output,
                    };
                    continue;
                }
            }
            What::Record {
                verdict: Verdict::Answered,
                ..
            } => {
                let last = kept
                    .iter()
                    .rev()
                    .find(|k| k.dep == op.dep && k.keys == op.keys && k.is_verdict());
                if last.is_some_and(|k| {
                    matches!(
                        k.what,
                        What::Record {
                            verdict: Verdict::Answered,
                            ..
                        }
                    )
                }) {
                    continue;
                }
            }
            _ => {}
        }
        kept.push(op);
    }
    kept
}

/// Whether a settle gives tokens back (the functions then tell waiting
/// instances that room may have freed).
fn gives_back(counted: &Counted, spent: &Spent) -> bool {
    let r = counted.reservation;
    spent.input < r.tokens() - r.output() || spent.output < r.output()
}

impl Op {
    fn is_verdict(&self) -> bool {
        matches!(self.what, What::Record { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::keys::ModelKeys;
    use crate::cluster::shared::Windows;
    use crate::config::RoutingConfig;
    use crate::router::{Limits, Need};
    use std::sync::Arc;

    fn keys() -> ModelKeys {
        ModelKeys::new("prod", "m")
    }

    fn settle(dep: &str, second: u64, reserved: (u64, u64), spent: (u64, u64)) -> Op {
        settle_in(dep, second, Windows::default(), reserved, spent)
    }

    fn settle_in(
        dep: &str,
        second: u64,
        w: Windows,
        reserved: (u64, u64),
        spent: (u64, u64),
    ) -> Op {
        let need = Need {
            input: reserved.0,
            output: reserved.1,
        };
        Op {
            keys: keys(),
            dep: dep.into(),
            what: What::Settle {
                counted: Counted::new(second, need, w),
                spent: Spent {
                    input: spent.0,
                    output: spent.1,
                },
            },
        }
    }

    fn verdict(dep: &str, verdict: Verdict) -> Op {
        Op {
            keys: keys(),
            dep: dep.into(),
            what: What::Record {
                model: Arc::from("m"),
                verdict,
                policy: RoutingConfig::default(),
            },
        }
    }

    /// What each op is, as the functions would read it.
    fn shape(ops: &[Op]) -> Vec<String> {
        ops.iter()
            .map(|op| match &op.what {
                What::Settle { counted, spent } => {
                    let r = counted.reservation;
                    format!(
                        "s {} @{} {}+{} -> {}+{}",
                        op.dep,
                        r.second(),
                        r.tokens() - r.output(),
                        r.output(),
                        spent.input,
                        spent.output
                    )
                }
                What::Record { verdict, .. } => format!("r {} {verdict:?}", op.dep),
                What::Undo { .. } => format!("u {}", op.dep),
                What::Release { lease } => format!("l {} {lease}", op.dep),
            })
            .collect()
    }

    #[test]
    fn settles_of_one_second_and_deployment_become_one_with_the_sums() {
        let ops = vec![
            settle("east", 10, (30, 16), (12, 9)),
            settle("west", 10, (30, 16), (12, 9)),
            settle("east", 10, (20, 10), (5, 4)),
            settle("east", 11, (30, 16), (12, 9)),
            settle("east", 10, (1, 1), (1, 1)),
        ];
        assert_eq!(
            shape(&merge(ops)),
            [
                "s east @10 50+26 -> 17+13",
                "s west @10 30+16 -> 12+9",
                "s east @11 30+16 -> 12+9",
                // Gives nothing back: kept apart, so that whether room
                // freed is told as op by op.
                "s east @10 1+1 -> 1+1",
            ]
        );
    }

    #[test]
    fn settles_counted_in_other_windows_stay_apart() {
        let rpm = Windows::of(&Limits {
            rpm: Some(10),
            ..Limits::default()
        });
        let ops = vec![
            settle("east", 10, (30, 16), (12, 9)),
            settle_in("east", 10, rpm, (30, 16), (12, 9)),
        ];
        assert_eq!(merge(ops).len(), 2);
    }

    #[test]
    fn an_answer_after_an_answer_goes_but_not_after_another_verdict() {
        let ops = vec![
            verdict("east", Verdict::Answered),
            settle("east", 10, (30, 16), (12, 9)),
            verdict("east", Verdict::Answered),
            verdict("west", Verdict::Answered),
            verdict("east", Verdict::Failed),
            verdict("east", Verdict::Answered),
            verdict("east", Verdict::Answered),
            verdict("west", Verdict::RateLimited(None)),
            verdict("west", Verdict::Answered),
        ];
        assert_eq!(
            shape(&merge(ops)),
            [
                "r east Answered",
                "s east @10 30+16 -> 12+9",
                "r west Answered",
                "r east Failed",
                "r east Answered",
                "r west RateLimited(None)",
                "r west Answered",
            ]
        );
    }
}
