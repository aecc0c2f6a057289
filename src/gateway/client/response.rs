//! What an upstream answered: status, headers, and the body still to read.
//!
//! The headers of an answer on a connection of our own stay as they came,
//! slices of the head: a successful answer is asked for three of them
//! (content type, cache control, request id), while a real provider sends
//! twenty (rate-limit figures, trace ids, cookies), and a header map made of
//! all of them cost ~300 instructions a header. The map is made only when
//! something asks for all of them (an error's classification, count_tokens).

use std::sync::OnceLock;

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Version};
use bytes::Bytes;

use super::body::Body;

pub struct Response {
    status: StatusCode,
    version: Version,
    headers: Headers,
    body: Body,
}

enum Headers {
    Map(HeaderMap),
    Raw(RawHeaders),
}

/// An answer's header lines as httparse found them in its head.
pub(super) struct RawHeaders {
    head: Bytes,
    /// Per header: where its name starts and ends, where its value starts
    /// and ends, in `head`.
    spans: Vec<[u32; 4]>,
    map: OnceLock<HeaderMap>,
}

impl RawHeaders {
    pub(super) fn new(head: Bytes, spans: Vec<[u32; 4]>) -> Self {
        Self {
            head,
            spans,
            map: OnceLock::new(),
        }
    }

    /// Names (as sent, any case) and values, in order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.spans.iter().map(|&[n0, n1, v0, v1]| {
            (
                &self.head[n0 as usize..n1 as usize],
                &self.head[v0 as usize..v1 as usize],
            )
        })
    }

    /// Every value of the header `name` (lowercase).
    pub(super) fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> {
        self.iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    fn get(&self, name: &HeaderName) -> Option<HeaderValue> {
        let [_, _, v0, v1] = *self.spans.iter().find(|&&[n0, n1, _, _]| {
            self.head[n0 as usize..n1 as usize].eq_ignore_ascii_case(name.as_str().as_bytes())
        })?;
        HeaderValue::from_maybe_shared(self.head.slice(v0 as usize..v1 as usize)).ok()
    }

    fn map(&self) -> &HeaderMap {
        self.map.get_or_init(|| {
            let mut map = HeaderMap::with_capacity(self.spans.len());
            // httparse took only token names and values without control
            // characters: neither conversion below refuses what it took.
            for &[n0, n1, v0, v1] in &self.spans {
                let name = HeaderName::from_bytes(&self.head[n0 as usize..n1 as usize]);
                let value =
                    HeaderValue::from_maybe_shared(self.head.slice(v0 as usize..v1 as usize));
                if let (Ok(name), Ok(value)) = (name, value) {
                    map.append(name, value);
                }
            }
            map
        })
    }
}

impl Response {
    pub(super) fn from_hyper(answer: axum::http::Response<hyper::body::Incoming>) -> Self {
        let (parts, body) = answer.into_parts();
        Self {
            status: parts.status,
            version: parts.version,
            headers: Headers::Map(parts.headers),
            body: Body::hyper(body),
        }
    }

    pub(super) fn raw(
        status: StatusCode,
        version: Version,
        headers: RawHeaders,
        body: Body,
    ) -> Self {
        Self {
            status,
            version,
            headers: Headers::Raw(headers),
            body,
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn version(&self) -> Version {
        self.version
    }

    /// The first value of the header `name`.
    pub fn header(&self, name: &HeaderName) -> Option<HeaderValue> {
        match &self.headers {
            Headers::Map(map) => map.get(name).cloned(),
            Headers::Raw(raw) => raw.get(name),
        }
    }

    /// All the headers (made into a map at the first ask).
    pub fn headers(&self) -> &HeaderMap {
        match &self.headers {
            Headers::Map(map) => map,
            Headers::Raw(raw) => raw.map(),
        }
    }

    pub fn into_body(self) -> Body {
        self.body
    }
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}
