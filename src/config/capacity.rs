//! A deployment's limits beyond tokens per minute, and a model's queue
//! (CONTRACT.md, "Capacity"): checked here so that every mistake names its
//! field.

use std::time::Duration;

use super::deployment::{DeploymentSpec, FieldError};

/// A deployment's limits beyond `tpm_limit`; each optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capacity {
    /// Requests per minute.
    pub rpm_limit: Option<u64>,
    /// With `rpm_limit`: the slice (1 or 10 s) the provider enforces it in.
    pub rpm_slice_s: Option<u64>,
    pub input_tpm_limit: Option<u64>,
    pub output_tpm_limit: Option<u64>,
    /// Requests started and not finished.
    pub max_in_flight: Option<u64>,
}

/// The slices providers enforce a per-minute request limit in (Azure: 1 s
/// or 10 s, depending on the model and tier).
const SLICES: [i64; 2] = [1, 10];

/// Checks the capacity fields of a deployment spec.
pub(super) fn check(spec: &DeploymentSpec) -> Result<Capacity, FieldError> {
    let positive = |field: &str, value: Option<i64>| match value {
        None => Ok(None),
        Some(n) if n > 0 => Ok(Some(n.unsigned_abs())),
        Some(n) => Err(FieldError::new(
            field,
            format!("must be a whole number greater than 0 (got {n}); omit it for no limit"),
        )),
    };
    let capacity = Capacity {
        rpm_limit: positive("rpm_limit", spec.rpm_limit)?,
        rpm_slice_s: match spec.rpm_slice_s {
            None => None,
            Some(s) if SLICES.contains(&s) => Some(s.unsigned_abs()),
            Some(s) => {
                return Err(FieldError::new(
                    "rpm_slice_s",
                    format!(
                        "must be 1 or 10 (got {s}): the slices providers check a per-minute limit in"
                    ),
                ));
            }
        },
        input_tpm_limit: positive("input_tpm_limit", spec.input_tpm_limit)?,
        output_tpm_limit: positive("output_tpm_limit", spec.output_tpm_limit)?,
        max_in_flight: positive("max_in_flight", spec.max_in_flight)?,
    };
    if capacity.rpm_slice_s.is_some() && capacity.rpm_limit.is_none() {
        return Err(FieldError::new(
            "rpm_slice_s",
            "needs rpm_limit: it says how rpm_limit is enforced",
        ));
    }
    Ok(capacity)
}

/// How long a request may wait for room, and how many may wait, for one
/// model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queueing {
    /// Zero: no waiting, a 429 at once.
    pub max_wait: Duration,
    pub max_queue: usize,
}

/// Requests one model's queue holds unless `max_queue` says otherwise.
pub const DEFAULT_MAX_QUEUE: usize = 1000;

impl Default for Queueing {
    fn default() -> Self {
        Queueing {
            max_wait: Duration::ZERO,
            max_queue: DEFAULT_MAX_QUEUE,
        }
    }
}

/// `max_wait_s` as written: zero or more seconds, at most an hour (a
/// client waiting longer has long since given up).
pub(super) fn wait_seconds(seconds: f64) -> Result<Duration, String> {
    if seconds.is_nan() || seconds < 0.0 {
        return Err(format!(
            "must be 0 or more seconds (got {seconds}); 0 answers 429 at once"
        ));
    }
    if seconds > 3600.0 {
        return Err(format!(
            "{seconds} seconds is more than an hour; at most 3600"
        ));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// `max_queue` as written.
pub(super) fn queue_size(n: i64) -> Result<usize, String> {
    usize::try_from(n)
        .ok()
        .filter(|n| (1..=1_000_000).contains(n))
        .ok_or_else(|| format!("must be a whole number from 1 to 1000000 (got {n})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(f: impl FnOnce(&mut DeploymentSpec)) -> DeploymentSpec {
        let mut s = DeploymentSpec {
            name: "d".into(),
            model_id: "m".into(),
            ..DeploymentSpec::default()
        };
        f(&mut s);
        s
    }

    #[test]
    fn limits_must_be_positive_and_name_their_field() {
        for field in [
            "rpm_limit",
            "input_tpm_limit",
            "output_tpm_limit",
            "max_in_flight",
        ] {
            let s = spec(|s| match field {
                "rpm_limit" => s.rpm_limit = Some(0),
                "input_tpm_limit" => s.input_tpm_limit = Some(-1),
                "output_tpm_limit" => s.output_tpm_limit = Some(0),
                _ => s.max_in_flight = Some(-3),
            });
            let e = check(&s).unwrap_err();
            assert_eq!(e.field, field);
            assert!(e.message.contains("greater than 0"), "{}", e.message);
        }
    }

    #[test]
    fn a_slice_is_one_or_ten_seconds_of_an_rpm_limit() {
        let e = check(&spec(|s| {
            s.rpm_limit = Some(60);
            s.rpm_slice_s = Some(5);
        }))
        .unwrap_err();
        assert_eq!(e.field, "rpm_slice_s");
        assert!(e.message.contains("1 or 10"), "{}", e.message);
        let e = check(&spec(|s| s.rpm_slice_s = Some(10))).unwrap_err();
        assert!(e.message.contains("needs rpm_limit"), "{}", e.message);
        let c = check(&spec(|s| {
            s.rpm_limit = Some(600);
            s.rpm_slice_s = Some(10);
            s.max_in_flight = Some(8);
        }))
        .unwrap();
        assert_eq!(
            (c.rpm_limit, c.rpm_slice_s, c.max_in_flight),
            (Some(600), Some(10), Some(8))
        );
    }

    #[test]
    fn waits_and_queues_are_bounded() {
        assert_eq!(wait_seconds(0.0), Ok(Duration::ZERO));
        assert_eq!(wait_seconds(2.5), Ok(Duration::from_millis(2500)));
        assert!(wait_seconds(-1.0).is_err());
        assert!(wait_seconds(f64::NAN).is_err());
        assert!(wait_seconds(7200.0).is_err());
        assert_eq!(queue_size(5), Ok(5));
        assert!(queue_size(0).is_err());
    }
}
