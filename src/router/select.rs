//! Smooth weighted round robin (the algorithm nginx uses for upstream weights).
//!
//! Every candidate gains its weight; the one with the most accumulated credit
//! wins and pays back the sum of the weights that competed. Over any run of
//! `sum(weights)` picks each candidate is chosen exactly `weight` times, and the
//! picks are spread out rather than bunched, so shares hold over few requests.

/// One competitor: its weight and its running credit (kept by the caller).
pub struct Candidate<'a> {
    pub index: usize,
    pub weight: i64,
    pub credit: &'a mut i64,
}

/// Picks one candidate and updates the credits; `None` when there are none.
pub fn smooth_wrr<'a>(candidates: impl IntoIterator<Item = Candidate<'a>>) -> Option<usize> {
    let mut total = 0i64;
    let mut best: Option<(usize, &'a mut i64)> = None;
    for c in candidates {
        *c.credit += c.weight;
        total += c.weight;
        let better = match &best {
            None => true,
            Some((_, credit)) => *c.credit > **credit,
        };
        if better {
            best = Some((c.index, c.credit));
        }
    }
    let (index, credit) = best?;
    *credit -= total;
    Some(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(weights: &[i64], picks: usize) -> Vec<usize> {
        let mut credits = vec![0i64; weights.len()];
        (0..picks)
            .map(|_| {
                let cands = credits.iter_mut().zip(weights).enumerate().map(
                    |(index, (credit, &weight))| Candidate {
                        index,
                        weight,
                        credit,
                    },
                );
                smooth_wrr(cands).unwrap()
            })
            .collect()
    }

    #[test]
    fn shares_are_exact_over_one_cycle_and_spread_out() {
        let picks = run(&[5, 1, 1], 7);
        assert_eq!(picks, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn equal_weights_rotate() {
        assert_eq!(run(&[1, 1, 1], 6), vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn no_candidates_no_pick() {
        assert_eq!(smooth_wrr(std::iter::empty()), None);
    }
}
