//! A request head off a client connection, taken only when it is a plain
//! one the front serves itself: a POST, HTTP/1.1, to a proxied endpoint,
//! with a body of known length within the limit. Anything else is left in
//! the buffer, untouched, for hyper.

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, Version, request};
use bytes::BytesMut;

use crate::gateway::framing::{content_length, has_token};
use crate::gateway::request::Endpoint;

/// The most headers a request the front serves may carry (hyper takes more,
/// and answers 431 past its own limit).
const MAX_HEADERS: usize = 64;

/// What the buffer holds.
pub(super) enum Parsed {
    /// Not a whole head yet.
    Partial,
    /// A request the front serves: its head is taken off the buffer.
    Ours(Box<Head>),
    /// Anything else (another method or path, a chunked or oversized body,
    /// an upgrade, HTTP/1.0, a malformed head): for hyper, from the start.
    NotOurs,
}

pub(super) struct Head {
    pub(super) parts: request::Parts,
    pub(super) endpoint: Endpoint,
    /// The body's length (Content-Length; none means 0).
    pub(super) length: usize,
    /// The client asked for the connection to close after this answer.
    pub(super) close: bool,
    /// The client waits for a `100 Continue` before it sends the body.
    pub(super) expects_continue: bool,
}

/// Reads a head from `buf`, taking it off only when it is [`Parsed::Ours`].
pub(super) fn parse(buf: &mut BytesMut, max_body: usize) -> Parsed {
    // Left uninitialised: zeroing 64 headers (2 KiB) cost more than reading
    // the handful a request has.
    let mut slots =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::NotOurs,
    };
    if req.method != Some("POST") || req.version != Some(1) {
        return Parsed::NotOurs;
    }
    let path = req.path.unwrap_or_default();
    let (route, query) = path.split_once('?').unwrap_or((path, ""));
    // A query of plain characters only (Claude Code's `?beta=true`), so
    // that the URI made from it below cannot fail.
    if !query
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"=&-_.~%+".contains(&b))
    {
        return Parsed::NotOurs;
    }
    let Some(endpoint) = super::super::proxy::endpoint_for(route) else {
        return Parsed::NotOurs;
    };
    let base = buf.as_ptr() as usize;
    let span = |s: &[u8]| {
        let start = s.as_ptr() as usize - base;
        (start, start + s.len())
    };
    let path = span(path.as_bytes());
    let mut length = None;
    let mut close = false;
    let mut expects_continue = false;
    let mut headers = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let Ok(name) = HeaderName::from_bytes(h.name.as_bytes()) else {
            return Parsed::NotOurs;
        };
        match name.as_str() {
            "content-length" => match content_length(h.value).and_then(|n| usize::try_from(n).ok())
            {
                Some(n) if length.is_none_or(|l| l == n) => length = Some(n),
                _ => return Parsed::NotOurs,
            },
            "transfer-encoding" | "upgrade" => return Parsed::NotOurs,
            "connection" => close |= has_token(h.value, b"close"),
            "expect" if h.value.eq_ignore_ascii_case(b"100-continue") => expects_continue = true,
            "expect" => return Parsed::NotOurs,
            _ => {}
        }
        headers.push((name, span(h.value)));
    }
    let length = length.unwrap_or(0);
    // Over the limit: hyper's path answers 413 after draining the body.
    if length > max_body {
        return Parsed::NotOurs;
    }
    // From here the head is taken. Neither step below can fail on what
    // httparse accepted and the checks above let through (a known path, a
    // plain query; values without control characters), so the fallbacks
    // are never used.
    let head = buf.split_to(len).freeze();
    let uri = Uri::from_maybe_shared(head.slice(path.0..path.1)).unwrap_or_default();
    let mut map = HeaderMap::with_capacity(headers.len());
    for (name, (start, end)) in headers {
        if let Ok(value) = HeaderValue::from_maybe_shared(head.slice(start..end)) {
            map.append(name, value);
        }
    }
    let mut parts = request::Request::new(()).into_parts().0;
    parts.method = Method::POST;
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    parts.headers = map;
    Parsed::Ours(Box::new(Head {
        parts,
        endpoint,
        length,
        close,
        expects_continue,
    }))
}
