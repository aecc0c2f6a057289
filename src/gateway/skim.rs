//! Skimming a JSON object for its top-level members, without validating.
//!
//! A Claude Code turn is tens of kilobytes of conversation resent on every
//! request, and the gateway needs three members of it to route (`model`,
//! `stream`, `max_tokens`). [`crate::gateway::json`] checks every byte
//! (UTF-8, grammar) at ~0.6 µs a kilobyte; this finds where each member's
//! value starts and ends and nothing else: each value jumped 64 bytes at a
//! time with vector masks where the processor has AVX2 or AVX-512
//! ([`wide`]: a 40 KB Codex turn in about 1.5 µs, where one `memchr` per
//! quote took 13 µs), through strings with `memchr` elsewhere. It
//! is exact for well-formed JSON; what it makes of a malformed document is
//! bounded (never a panic, never past the end) and the upstream, which
//! parses the body properly, has the last word on it.

mod wide;

/// Levels of nesting followed before giving up.
const MAX_DEPTH: usize = 128;

/// Why a document could not be skimmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unskimmable {
    pub what: &'static str,
    pub at: usize,
}

impl std::fmt::Display for Unskimmable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.what, self.at)
    }
}

struct Skim<'a> {
    doc: &'a [u8],
    at: usize,
    /// Values jumped 64 bytes at a time ([`wide`]), when the processor can.
    wide: wide::Width,
}

impl<'a> Skim<'a> {
    fn fail(&self, what: &'static str) -> Unskimmable {
        Unskimmable { what, at: self.at }
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.doc.get(self.at) {
            self.at += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.doc.get(self.at).copied()
    }

    /// Past the string whose opening quote is at `self.at`.
    fn string(&mut self) -> Result<(), Unskimmable> {
        let mut from = self.at + 1;
        loop {
            let Some(i) = memchr::memchr(b'"', &self.doc[from..]) else {
                self.at = self.doc.len();
                return Err(self.fail("an unterminated string"));
            };
            let quote = from + i;
            // Escaped when an odd number of backslashes precede it.
            let slashes = self.doc[..quote]
                .iter()
                .rev()
                .take_while(|&&b| b == b'\\')
                .count();
            from = quote + 1;
            if slashes % 2 == 0 {
                self.at = from;
                return Ok(());
            }
        }
    }

    /// Past the object or array whose opening bracket is at `self.at`.
    fn container(&mut self) -> Result<(), Unskimmable> {
        let mut depth = 0usize;
        while let Some(&b) = self.doc.get(self.at) {
            match b {
                b'"' => {
                    self.string()?;
                    continue;
                }
                b'{' | b'[' => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(self.fail("nesting too deep"));
                    }
                }
                b'}' | b']' => {
                    depth -= 1;
                    if depth == 0 {
                        self.at += 1;
                        return Ok(());
                    }
                }
                _ => {}
            }
            self.at += 1;
        }
        Err(self.fail("an unterminated object or array"))
    }

    /// Past a number, `true`, `false` or `null`.
    fn scalar(&mut self) {
        while let Some(b) = self.peek() {
            if matches!(b, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t') {
                return;
            }
            self.at += 1;
        }
    }

    fn value(&mut self) -> Result<&'a [u8], Unskimmable> {
        let start = self.at;
        match self.peek() {
            // A string whose first quote closes it (most of them, long or
            // short) costs one memchr; one with an escaped quote goes wide.
            Some(b'"') if self.plain_string() => {}
            Some(b'"' | b'{' | b'[')
                if let Some(end) = wide::end_of(self.wide, self.doc, start) =>
            {
                self.at = end?;
            }
            Some(b'"') => self.string()?,
            Some(b'{' | b'[') => self.container()?,
            Some(_) => self.scalar(),
            None => return Err(self.fail("a missing value")),
        }
        if self.at == start {
            return Err(self.fail("a missing value"));
        }
        Ok(&self.doc[start..self.at])
    }

    /// Past the string at `self.at` when its first quote is unescaped.
    fn plain_string(&mut self) -> bool {
        let from = self.at + 1;
        let Some(i) = memchr::memchr(b'"', &self.doc[from..]) else {
            return false;
        };
        // The opening quote, when the string is empty.
        if self.doc[from + i - 1] == b'\\' {
            return false;
        }
        self.at = from + i + 1;
        true
    }
}

/// Calls `member(key, value)` for each top-level member of the object
/// `doc`: `key` as written between its quotes (escapes not decoded),
/// `value` its exact bytes.
pub fn members<'a>(
    doc: &'a [u8],
    mut member: impl FnMut(&'a [u8], &'a [u8]),
) -> Result<(), Unskimmable> {
    until(doc, |k, v| {
        member(k, v);
        false
    })
}

/// The value of the first top-level member named `key` (as written), read
/// no further than it.
pub fn member<'a>(doc: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let mut found = None;
    until(doc, |k, v| {
        found = (k == key).then_some(v);
        found.is_some()
    })
    .ok()?;
    found
}

/// [`members`] until `member` says stop.
fn until<'a>(
    doc: &'a [u8],
    mut member: impl FnMut(&'a [u8], &'a [u8]) -> bool,
) -> Result<(), Unskimmable> {
    let mut s = Skim {
        doc,
        at: 0,
        wide: wide::width(),
    };
    s.ws();
    if s.peek() != Some(b'{') {
        return Err(s.fail("expected a JSON object"));
    }
    s.at += 1;
    s.ws();
    if s.peek() == Some(b'}') {
        return Ok(());
    }
    loop {
        s.ws();
        if s.peek() != Some(b'"') {
            return Err(s.fail("expected a key"));
        }
        let key_start = s.at + 1;
        s.string()?;
        let key = &doc[key_start..s.at - 1];
        s.ws();
        if s.peek() != Some(b':') {
            return Err(s.fail("expected ':'"));
        }
        s.at += 1;
        s.ws();
        let value = s.value()?;
        if member(key, value) {
            return Ok(());
        }
        s.ws();
        match s.peek() {
            Some(b',') => s.at += 1,
            Some(b'}') => return Ok(()),
            _ => return Err(s.fail("expected ',' or '}'")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(doc: &str) -> Result<Vec<(String, String)>, Unskimmable> {
        let mut out = Vec::new();
        members(doc.as_bytes(), |k, v| {
            out.push((
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            ))
        })?;
        Ok(out)
    }

    #[test]
    fn finds_each_member_and_its_exact_value() {
        let doc = r#" { "model" : "m\"x\\" , "messages":[{"content":"a \" ] } [ \\"},[1,2]], "n":-1.5e3,"s":true,"o":{"k":null}} "#;
        let got = all(doc).unwrap();
        assert_eq!(
            got,
            [
                ("model", r#""m\"x\\""#),
                ("messages", r#"[{"content":"a \" ] } [ \\"},[1,2]]"#),
                ("n", "-1.5e3"),
                ("s", "true"),
                ("o", r#"{"k":null}"#),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        assert_eq!(all("{}").unwrap(), []);
        assert_eq!(member(doc.as_bytes(), b"n"), Some(&b"-1.5e3"[..]));
        assert_eq!(member(doc.as_bytes(), b"k"), None);
    }

    #[test]
    fn agrees_with_serde_json_on_well_formed_objects() {
        for raw in [
            r#"{"a":"\\\\\"","b":[[],{}],"c":"\u00e9"}"#,
            r#"{"x":{"y":{"z":["\\",1,"]"]}},"w":0}"#,
        ] {
            let v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(raw).unwrap();
            let got = all(raw).unwrap();
            assert_eq!(got.len(), v.len());
            for (k, raw_value) in got {
                let parsed: serde_json::Value = serde_json::from_str(&raw_value).unwrap();
                assert_eq!(v[&k], parsed, "{k}");
            }
        }
    }

    #[test]
    fn malformed_documents_are_refused_without_panicking() {
        for bad in [
            "",
            "[]",
            "{",
            r#"{"a"}"#,
            r#"{"a":}"#,
            r#"{"a":"x}"#,
            r#"{"a":1 "b":2}"#,
            r#"{"a":[[[["#,
            "{\"a\":\"\\",
        ] {
            assert!(all(bad).is_err(), "{bad:?}");
        }
    }
}
