//! The mock's own calendar arithmetic (Howard Hinnant's civil-date
//! algorithms), so that it shares no date code with the gateway it tests:
//! the reset times Anthropic writes, the `x-amz-date` SigV4 signs.

use std::time::{Duration, SystemTime};

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub(crate) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// `2026-12-01T20:47:03Z`, as Anthropic writes its reset times.
pub(crate) fn rfc3339(at: SystemTime) -> String {
    let secs = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The same, rounded up to the next whole second: a reset time that a
/// client waits for must not come before the moment it means.
pub(crate) fn rfc3339_ceil(at: SystemTime) -> String {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let up = Duration::from_secs(since.as_secs() + u64::from(since.subsec_nanos() > 0));
    rfc3339(SystemTime::UNIX_EPOCH + up)
}

/// A UTC date and time as a `SystemTime` (None before 1970).
pub(crate) fn utc(y: i64, m: i64, d: i64, hh: i64, mm: i64, ss: i64) -> Option<SystemTime> {
    let secs = days_from_civil(y, m, d) * 86_400 + hh * 3600 + mm * 60 + ss;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_158_023);
        assert_eq!(rfc3339(at), "2026-12-01T20:47:03Z");
        assert_eq!(utc(2026, 12, 1, 20, 47, 3), Some(at));
        assert_eq!(rfc3339_ceil(at), "2026-12-01T20:47:03Z");
        assert_eq!(
            rfc3339_ceil(at + Duration::from_millis(1)),
            "2026-12-01T20:47:04Z"
        );
        assert_eq!(
            rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
    }

    #[test]
    fn every_day_of_four_centuries_round_trips() {
        for days in -1_000..150_000 {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
    }
}
