//! Checking an AWS Signature Version 4 the way AWS does, written from the
//! specification and independent of the gateway's signer (which uses the
//! `aws-sigv4` crate): the canonical request is rebuilt from what arrived
//! (method, path encoded once more, sorted query, the signed headers,
//! the body's SHA-256), signed with the key derived from the secret, the
//! date, the region and the service, and compared in constant time.

use std::time::{Duration, SystemTime};

use hyper::header::HeaderMap;
use ring::{digest, hmac};

/// How far a request's `x-amz-date` may be from the mock's clock (AWS's
/// own allowance).
const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// Why a request is refused: the exception AWS names and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused {
    pub(crate) exception: &'static str,
    pub(crate) message: String,
}

fn refused(exception: &'static str, message: impl Into<String>) -> Refused {
    Refused {
        exception,
        message: message.into(),
    }
}

/// The credentials the mock accepts.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    pub(crate) access_key_id: String,
    pub(crate) secret_access_key: String,
}

pub(crate) fn verify(
    keys: &Keys,
    method: &str,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<(), Refused> {
    verify_for("bedrock", keys, method, path, query, headers, body, now)
}

/// [`verify`] for any service's scope (the AWS test suite signs for `service`).
#[allow(clippy::too_many_arguments)]
fn verify_for(
    expected_service: &str,
    keys: &Keys,
    method: &str,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<(), Refused> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(auth) = text("authorization") else {
        return Err(refused(
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        ));
    };
    let Some(fields) = auth.strip_prefix("AWS4-HMAC-SHA256 ") else {
        return Err(refused(
            "IncompleteSignatureException",
            "Authorization header requires the AWS4-HMAC-SHA256 algorithm",
        ));
    };
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in fields.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed_headers = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let (Some(credential), Some(signed_headers), Some(signature)) =
        (credential, signed_headers, signature)
    else {
        return Err(refused(
            "IncompleteSignatureException",
            "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters",
        ));
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [key_id, date, region, service, terminator] = scope[..] else {
        return Err(refused(
            "IncompleteSignatureException",
            "Credential should be scoped to a valid region, service and date",
        ));
    };
    if terminator != "aws4_request" || service != expected_service {
        return Err(refused(
            "InvalidSignatureException",
            format!(
                "Credential should be scoped to correct service: '{expected_service}' (got '{service}')"
            ),
        ));
    }
    if key_id != keys.access_key_id {
        return Err(refused(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ));
    }
    let Some(amz_date) = text("x-amz-date") else {
        return Err(refused(
            "IncompleteSignatureException",
            "Date must be in ISO-8601 'basic format'; no x-amz-date header",
        ));
    };
    let at = parse_amz_date(amz_date).ok_or_else(|| {
        refused(
            "IncompleteSignatureException",
            format!("Date must be in ISO-8601 'basic format'. Got '{amz_date}'"),
        )
    })?;
    if !amz_date.starts_with(date) {
        return Err(refused(
            "InvalidSignatureException",
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP",
        ));
    }
    let skew = now
        .duration_since(at)
        .or_else(|_| at.duration_since(now))
        .unwrap_or_default();
    if skew > MAX_SKEW {
        return Err(refused(
            "InvalidSignatureException",
            format!(
                "Signature expired: {amz_date} is now earlier or later than 15 minutes from the server's time"
            ),
        ));
    }
    let names: Vec<&str> = signed_headers.split(';').collect();
    if !names.contains(&"host") {
        return Err(refused(
            "InvalidSignatureException",
            "'Host' must be a signed header",
        ));
    }
    let mut canonical = String::new();
    canonical.push_str(method);
    canonical.push('\n');
    canonical.push_str(&uri_encode(path, false));
    canonical.push('\n');
    canonical.push_str(&canonical_query(query.unwrap_or_default()));
    canonical.push('\n');
    for name in &names {
        let values: Vec<String> = headers
            .get_all(*name)
            .iter()
            .map(|v| collapse(&String::from_utf8_lossy(v.as_bytes())))
            .collect();
        canonical.push_str(name);
        canonical.push(':');
        canonical.push_str(&values.join(","));
        canonical.push('\n');
    }
    canonical.push('\n');
    canonical.push_str(signed_headers);
    canonical.push('\n');
    let payload_hash = match text("x-amz-content-sha256") {
        Some(h) => h.to_string(),
        None => hex::encode(digest::digest(&digest::SHA256, body)),
    };
    canonical.push_str(&payload_hash);
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{region}/{service}/aws4_request\n{}",
        hex::encode(digest::digest(&digest::SHA256, canonical.as_bytes()))
    );
    let mut key = format!("AWS4{}", keys.secret_access_key).into_bytes();
    for part in [date, region, service, "aws4_request"] {
        key = sign(&key, part.as_bytes());
    }
    let expected = hex::encode(sign(&key, to_sign.as_bytes()));
    use subtle::ConstantTimeEq;
    if !bool::from(expected.as_bytes().ct_eq(signature.as_bytes())) {
        return Err(refused(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
        ));
    }
    Ok(())
}

fn sign(key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
        .as_ref()
        .to_vec()
}

/// Percent-encodes all but the unreserved characters (and `/` in a path).
fn uri_encode(s: &str, encode_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (b == b'/' && !encode_slash)
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode(&percent_decode(k), true),
                uri_encode(&percent_decode(v), true),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Trimmed, with runs of spaces as one.
fn collapse(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `20150830T123600Z` as a time.
fn parse_amz_date(s: &str) -> Option<SystemTime> {
    if s.len() != 16 || &s[8..9] != "T" || !s.ends_with('Z') {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(4..6)?, n(6..8)?);
    let (hh, mm, ss) = (n(9..11)?, n(11..13)?, n(13..15)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    crate::mock_upstream::dates::utc(y, m, d, hh, mm, ss)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    /// 2015-08-30T12:36:00Z, the time of the AWS test suite's requests.
    fn signed_at() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160)
    }

    #[test]
    fn the_aws_test_suites_get_vanilla_is_accepted() {
        // aws-sig-v4-test-suite/get-vanilla: GET / to example.amazonaws.com.
        let h = headers(&[
            ("host", "example.amazonaws.com"),
            ("x-amz-date", "20150830T123600Z"),
            (
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
            ),
        ]);
        let check =
            |h: &HeaderMap| verify_for("service", &keys(), "GET", "/", None, h, b"", signed_at());
        assert_eq!(check(&h), Ok(()));
        let mut other = h.clone();
        other.insert("x-amz-date", "20150830T123601Z".parse().unwrap());
        assert_eq!(
            check(&other).unwrap_err().exception,
            "InvalidSignatureException"
        );
    }

    /// A Bedrock InvokeModel request as botocore 1.43 signs it (at the test
    /// suite's time, with its keys): the model ID's `:` encoded once in
    /// the URL and once more in the canonical request.
    fn botocore_signed() -> HeaderMap {
        headers(&[
            ("host", "127.0.0.1:4300"),
            ("content-type", "application/json"),
            ("x-amz-date", "20150830T123600Z"),
            (
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=0615d06f8125ebee779ff58fba8f1a0034a5b6a28e10d69c9f75c5bc062306b9",
            ),
        ])
    }

    const PATH: &str = "/model/anthropic.claude-v2%3A1/invoke";
    const BODY: &[u8] = b"{\"messages\":[]}";

    #[test]
    fn a_botocore_signature_is_accepted_and_anything_else_is_refused() {
        let now = signed_at();
        let good = botocore_signed();
        let check =
            |h: &HeaderMap, body: &[u8], at| verify(&keys(), "POST", PATH, None, h, body, at);
        assert_eq!(check(&good, BODY, now), Ok(()));
        assert_eq!(
            check(&good, b"{\"messages\":[1]}", now)
                .unwrap_err()
                .exception,
            "InvalidSignatureException",
            "a tampered body"
        );
        let wrong_secret = Keys {
            secret_access_key: "not-the-secret".into(),
            ..keys()
        };
        assert_eq!(
            verify(&wrong_secret, "POST", PATH, None, &good, BODY, now)
                .unwrap_err()
                .exception,
            "InvalidSignatureException"
        );
        let later = now + Duration::from_secs(20 * 60);
        assert!(
            check(&good, BODY, later)
                .unwrap_err()
                .message
                .contains("expired")
        );
        assert_eq!(
            check(&HeaderMap::new(), BODY, now).unwrap_err().exception,
            "MissingAuthenticationTokenException"
        );
        let other_service = verify_for("s3", &keys(), "POST", PATH, None, &good, BODY, now);
        assert!(other_service.unwrap_err().message.contains("'s3'"));
    }

    #[test]
    fn dates_parse() {
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(signed_at()));
        assert_eq!(parse_amz_date("2015-08-30"), None);
    }
}
