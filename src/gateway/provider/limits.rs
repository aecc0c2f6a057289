//! What providers say about their rate limits, read into how long a
//! deployment should stay away.

use std::time::{Duration, SystemTime};

use axum::http::HeaderMap;

/// How long a provider asks us to stay away after a 429, from the headers
/// OpenAI and Azure send: `retry-after-ms`, `retry-after` (seconds), then
/// `x-ratelimit-reset-tokens` / `-requests` (durations like `6m0s`, `250ms`).
pub fn rate_limit_hint(headers: &HeaderMap) -> Option<Duration> {
    rate_limit_hint_at(headers, SystemTime::now())
}

/// [`rate_limit_hint`] with the wall clock given: `retry-after` may be an
/// HTTP date (RFC 9110), which only means something relative to now.
pub fn rate_limit_hint_at(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    // Azure sends its own millisecond header beside OpenAI's.
    for name in ["retry-after-ms", "x-ms-retry-after-ms"] {
        if let Some(ms) = text(name).and_then(|v| v.parse::<f64>().ok()) {
            return positive_secs(ms / 1000.0);
        }
    }
    if let Some(v) = text("retry-after") {
        if let Ok(s) = v.parse::<f64>() {
            return positive_secs(s);
        }
        if let Ok(at) = httpdate::parse_http_date(v) {
            // A date already past means "now": no wait, but still a hint.
            let wait = at.duration_since(now).unwrap_or_default();
            return positive_secs(wait.as_secs_f64());
        }
    }
    let openai = ["x-ratelimit-reset-tokens", "x-ratelimit-reset-requests"]
        .iter()
        .filter_map(|h| text(h).and_then(parse_reset))
        .max();
    openai.or_else(|| anthropic_reset(headers, now))
}

/// Anthropic's `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-reset`
/// (RFC 3339 times): of the limits used up (`-remaining: 0`), the latest
/// reset, since all of them must free; when none says it is used up, the
/// latest of all.
fn anthropic_reset(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    const KINDS: [&str; 4] = ["requests", "tokens", "input-tokens", "output-tokens"];
    let get = |name: String| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let mut exhausted = None::<Duration>;
    let mut any = None::<Duration>;
    for kind in KINDS {
        let Some(at) = get(format!("anthropic-ratelimit-{kind}-reset")).and_then(parse_rfc3339)
        else {
            continue;
        };
        let wait = at.duration_since(now).unwrap_or_default();
        any = any.max(Some(wait));
        if get(format!("anthropic-ratelimit-{kind}-remaining")) == Some("0") {
            exhausted = exhausted.max(Some(wait));
        }
    }
    exhausted
        .or(any)
        .and_then(|d| positive_secs(d.as_secs_f64()))
}

/// The limits a provider said ran out, each with how long until it
/// resets: Anthropic's `anthropic-ratelimit-{requests,input-tokens,
/// output-tokens}-remaining: 0` with their `-reset` times, so that only
/// the dimension that ran out is held back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Exhausted {
    requests: Option<Duration>,
    input: Option<Duration>,
    output: Option<Duration>,
}

impl Exhausted {
    pub fn of(headers: &HeaderMap, now: SystemTime) -> Exhausted {
        let get = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        };
        let kind = |kind: &str| {
            if get(&format!("anthropic-ratelimit-{kind}-remaining")) != Some("0") {
                return None;
            }
            let wait = get(&format!("anthropic-ratelimit-{kind}-reset"))
                .and_then(parse_rfc3339)
                .map(|at| at.duration_since(now).unwrap_or_default())
                // Said to be used up, with no time: a window's worth at most.
                .unwrap_or(Duration::from_secs(60));
            Some(wait.min(Duration::from_secs(60)))
        };
        if !headers
            .keys()
            .any(|k| k.as_str().starts_with("anthropic-ratelimit-"))
        {
            return Exhausted::default();
        }
        Exhausted {
            requests: kind("requests"),
            input: kind("input-tokens"),
            output: kind("output-tokens"),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Exhausted::default()
    }

    /// Each limit that ran out, with how long until it resets.
    pub fn dims(&self) -> impl Iterator<Item = (crate::router::Dim, Duration)> {
        use crate::router::Dim;
        [
            (Dim::Requests, self.requests),
            (Dim::Input, self.input),
            (Dim::Output, self.output),
        ]
        .into_iter()
        .filter_map(|(d, w)| w.map(|w| (d, w)))
    }
}

/// `2026-12-01T20:47:03Z`, with optional fractional seconds and a `Z` or
/// `±hh:mm` offset.
pub fn parse_rfc3339(v: &str) -> Option<SystemTime> {
    let b = v.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = v.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0u32;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let digits = v.get(start..i.min(start + 9))?;
        if digits.is_empty() {
            return None;
        }
        nanos = digits.parse::<u32>().ok()? * 10u32.pow(9 - digits.len() as u32);
    }
    let offset_s = match v.get(i..)? {
        "Z" | "z" => 0,
        tz if tz.len() == 6
            && matches!(tz.as_bytes()[0], b'+' | b'-')
            && tz.as_bytes()[3] == b':' =>
        {
            let sign = if tz.starts_with('-') { -1 } else { 1 };
            sign * (num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60)
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
    let secs = u64::try_from(secs).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::new(secs, nanos))
}

fn positive_secs(s: f64) -> Option<Duration> {
    (s.is_finite() && s >= 0.0).then(|| Duration::from_secs_f64(s.min(86_400.0)))
}

/// Parses OpenAI's reset durations: `1s`, `6m0s`, `1h2m3.5s`, `250ms`, or bare seconds.
pub fn parse_reset(v: &str) -> Option<Duration> {
    if let Ok(secs) = v.parse::<f64>() {
        return positive_secs(secs);
    }
    let mut total = 0.0f64;
    let mut number = String::new();
    let mut chars = v.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let value: f64 = number.parse().ok()?;
        number.clear();
        let unit = match c {
            'h' => 3600.0,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                0.001
            }
            'm' => 60.0,
            's' => 1.0,
            _ => return None,
        };
        total += value * unit;
        any = true;
    }
    if !number.is_empty() || !any {
        return None;
    }
    positive_secs(total)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// days_from_civil), for the timestamps providers send.
pub(crate) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn retry_after_may_be_an_http_date() {
        let now = httpdate::parse_http_date("Sat, 28 Nov 2026 12:00:00 GMT").unwrap();
        let h = headers(&[("retry-after", "Sat, 28 Nov 2026 12:00:42 GMT")]);
        assert_eq!(rate_limit_hint_at(&h, now), Some(Duration::from_secs(42)));
        let past = headers(&[("retry-after", "Sat, 28 Nov 2026 11:59:00 GMT")]);
        assert_eq!(rate_limit_hint_at(&past, now), Some(Duration::ZERO));
        let junk = headers(&[("retry-after", "soon")]);
        assert_eq!(rate_limit_hint_at(&junk, now), None);
    }

    #[test]
    fn reset_durations_parse_like_openai_writes_them() {
        assert_eq!(parse_reset("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(parse_reset("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_reset("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(
            parse_reset("1h2m3.5s"),
            Some(Duration::from_secs_f64(3723.5))
        );
        assert_eq!(parse_reset("12"), Some(Duration::from_secs(12)));
        assert_eq!(parse_reset("soon"), None);
        assert_eq!(parse_reset("5x"), None);
    }

    #[test]
    fn hints_prefer_the_most_precise_header() {
        assert_eq!(
            rate_limit_hint(&headers(&[
                ("retry-after-ms", "1500"),
                ("retry-after", "9")
            ])),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            rate_limit_hint(&headers(&[("retry-after", "9")])),
            Some(Duration::from_secs(9))
        );
        assert_eq!(
            rate_limit_hint(&headers(&[
                ("x-ratelimit-reset-tokens", "20s"),
                ("x-ratelimit-reset-requests", "2s")
            ])),
            Some(Duration::from_secs(20))
        );
        assert_eq!(rate_limit_hint(&headers(&[])), None);
        assert_eq!(rate_limit_hint(&headers(&[("retry-after", "-3")])), None);
    }

    #[test]
    fn rfc3339_times_parse_with_fractions_and_offsets() {
        let at = |s| {
            parse_rfc3339(s).map(|t| {
                t.duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap()
                    .as_secs_f64()
            })
        };
        assert_eq!(at("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(at("2026-12-01T20:47:03Z"), Some(1_796_158_023.0));
        assert_eq!(at("2026-12-01T20:47:03.250Z"), Some(1_796_158_023.25));
        assert_eq!(at("2026-12-01T21:47:03+01:00"), Some(1_796_158_023.0));
        assert_eq!(at("2000-02-29T00:00:00Z"), Some(951_782_400.0));
        for bad in [
            "2026-12-01",
            "2026-13-01T00:00:00Z",
            "2026-12-01T20:47:03",
            "soon",
            "2026-12-01T20:47:03.Z",
        ] {
            assert_eq!(at(bad), None, "{bad}");
        }
    }

    #[test]
    fn anthropic_resets_count_the_limits_used_up() {
        let now = parse_rfc3339("2026-12-01T20:00:00Z").unwrap();
        let h = headers(&[
            ("anthropic-ratelimit-requests-remaining", "10"),
            ("anthropic-ratelimit-requests-reset", "2026-12-01T20:00:50Z"),
            ("anthropic-ratelimit-tokens-remaining", "0"),
            ("anthropic-ratelimit-tokens-reset", "2026-12-01T20:00:12Z"),
        ]);
        assert_eq!(rate_limit_hint_at(&h, now), Some(Duration::from_secs(12)));
        let unknown = headers(&[("anthropic-ratelimit-requests-reset", "2026-12-01T20:00:30Z")]);
        assert_eq!(
            rate_limit_hint_at(&unknown, now),
            Some(Duration::from_secs(30))
        );
        // retry-after, which Anthropic sends on a 429, comes first.
        let both = headers(&[
            ("retry-after", "3"),
            ("anthropic-ratelimit-tokens-reset", "2026-12-01T20:00:30Z"),
        ]);
        assert_eq!(rate_limit_hint_at(&both, now), Some(Duration::from_secs(3)));
        assert_eq!(
            rate_limit_hint_at(&headers(&[("x-ms-retry-after-ms", "700")]), now),
            Some(Duration::from_millis(700))
        );
    }
}
