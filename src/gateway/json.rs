//! A validating JSON scanner for the hot path: it checks that a document is
//! one well-formed JSON object and hands back the raw bytes of each top-level
//! member, without building anything.
//!
//! Every non-streaming answer is checked before it is passed on (a 200 with a
//! broken body is failed over, not forwarded) and its `usage` read. Through
//! serde that cost ~11 instructions a byte, most of it in the visitor machinery
//! that skipping values it does not want still goes through; this is a plain
//! loop over the bytes. It accepts what `serde_json` accepts when it skips a
//! value, with two differences: it insists on UTF-8 throughout (serde does not
//! check strings it skips; JSON text must be UTF-8, and clients would fail to
//! decode it), it refuses more than 128 levels of nesting (serde_json's own
//! parse stops at 127; it skips without a limit), and a top-level key whose
//! escapes name no character (a lone surrogate) is refused, as serde refuses
//! it when it reads keys. `tests::agrees_with_serde_json` holds it to that.

use std::fmt;

/// Levels of nesting accepted; also what bounds our recursion.
const MAX_DEPTH: usize = 128;

/// Why a document is not JSON, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid {
    pub what: &'static str,
    pub at: usize,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.what, self.at)
    }
}

impl std::error::Error for Invalid {}

/// `serde_json::from_slice`, with the UTF-8 checked once for the whole
/// document rather than once for every string serde reads (a key or a
/// short value costs it a call of its own: about a tenth of reading a small
/// answer). What is not UTF-8 is read by `from_slice` as before, so the
/// result and the error are the same.
pub fn parse<'a, T: serde::Deserialize<'a>>(doc: &'a [u8]) -> serde_json::Result<T> {
    match std::str::from_utf8(doc) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(doc),
    }
}

/// Validates `doc` as one JSON object and calls `member(key, value)` for each
/// top-level member: `key` decoded (`"mod\u0065l"` is `model`, as it is to
/// every JSON parser an upstream might use), `value` the exact bytes of the
/// value. `member` may reject the document with a reason of its own.
pub fn object_members<'a>(
    doc: &'a [u8],
    mut member: impl FnMut(&[u8], &'a [u8]) -> Result<(), &'static str>,
) -> Result<(), Invalid> {
    object_entries(doc, |key, _, value| member(key, value))
}

/// [`object_members`], also handing over each key as written (`quoted`,
/// quotes included), a slice of `doc` like the value: with both, a member
/// can be cut out.
pub fn object_entries<'a>(
    doc: &'a [u8],
    mut member: impl FnMut(&[u8], &'a [u8], &'a [u8]) -> Result<(), &'static str>,
) -> Result<(), Invalid> {
    // UTF-8 is checked where it can be other than ASCII, inside strings
    // (anywhere else a byte past ASCII breaks the grammar): most of a
    // document is then passed over once, not twice.
    let mut s = Scanner { doc, at: 0 };
    s.skip_ws();
    if s.peek() != Some(b'{') {
        return Err(s.invalid("expected a JSON object"));
    }
    let offset = |part: &[u8]| part.as_ptr() as usize - doc.as_ptr() as usize;
    s.object(1, |quoted, value| {
        let raw = &quoted[1..quoted.len() - 1];
        // Rare: only keys with escapes are decoded (and a key whose escapes
        // name no character, a lone surrogate, is refused).
        let decoded;
        let key = if raw.contains(&b'\\') {
            decoded = serde_json::from_slice::<String>(quoted).map_err(|_| Invalid {
                what: "a key with an invalid escape",
                at: offset(quoted),
            })?;
            decoded.as_bytes()
        } else {
            raw
        };
        member(key, quoted, value).map_err(|what| Invalid {
            what,
            at: offset(value),
        })
    })?;
    s.skip_ws();
    if s.at != doc.len() {
        return Err(s.invalid("trailing characters"));
    }
    Ok(())
}

struct Scanner<'a> {
    doc: &'a [u8],
    at: usize,
}

impl<'a> Scanner<'a> {
    fn invalid(&self, what: &'static str) -> Invalid {
        Invalid { what, at: self.at }
    }

    fn peek(&self) -> Option<u8> {
        self.doc.get(self.at).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.at += 1;
        }
    }

    fn colon(&mut self) -> Result<(), Invalid> {
        self.skip_ws();
        if self.peek() != Some(b':') {
            return Err(self.invalid("expected `:`"));
        }
        self.at += 1;
        Ok(())
    }

    /// After a member or element: `,` (more follow) or `close` (done).
    fn end_of_member(&mut self, close: u8) -> Result<bool, Invalid> {
        self.skip_ws();
        match self.peek() {
            Some(b',') => {
                self.at += 1;
                Ok(false)
            }
            Some(c) if c == close => {
                self.at += 1;
                Ok(true)
            }
            _ => Err(self.invalid("expected `,` or a closing bracket")),
        }
    }

    fn value(&mut self, depth: usize) -> Result<(), Invalid> {
        match self.peek() {
            Some(b'"') => self.quick_string(),
            Some(b'{') => self.object(depth + 1, |_, _| Ok(())),
            Some(b'[') => self.array(depth + 1),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.invalid("expected a value")),
        }
    }

    /// Steps into an object or array at `depth`: whether it is empty (and
    /// then already closed).
    fn open(&mut self, depth: usize, close: u8) -> Result<bool, Invalid> {
        if depth > MAX_DEPTH {
            return Err(self.invalid("nested too deeply"));
        }
        self.at += 1;
        self.skip_ws();
        let empty = self.peek() == Some(close);
        if empty {
            self.at += 1;
        }
        Ok(empty)
    }

    /// At an opening brace; calls `member(key, value)` with the key as
    /// written, quotes included, and the exact bytes of the value.
    fn object(
        &mut self,
        depth: usize,
        mut member: impl FnMut(&'a [u8], &'a [u8]) -> Result<(), Invalid>,
    ) -> Result<(), Invalid> {
        if self.open(depth, b'}')? {
            return Ok(());
        }
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(self.invalid("expected a key"));
            }
            let key_start = self.at;
            self.quick_string()?;
            let key = &self.doc[key_start..self.at];
            self.colon()?;
            self.skip_ws();
            let value_start = self.at;
            self.value(depth)?;
            member(key, &self.doc[value_start..self.at])?;
            if self.end_of_member(b'}')? {
                return Ok(());
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<(), Invalid> {
        if self.open(depth, b']')? {
            return Ok(());
        }
        loop {
            self.skip_ws();
            self.value(depth)?;
            if self.end_of_member(b']')? {
                return Ok(());
            }
        }
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<(), Invalid> {
        if self.doc[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(())
        } else {
            Err(self.invalid("expected a value"))
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
        self.at - start
    }

    fn number(&mut self) -> Result<(), Invalid> {
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek() {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.invalid("invalid number")),
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            if self.digits() == 0 {
                return Err(self.invalid("invalid number"));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            if self.digits() == 0 {
                return Err(self.invalid("invalid number"));
            }
        }
        Ok(())
    }

    /// Skips the run of string characters that need no attention, eight
    /// bytes at a time: stops at the first quote, backslash or control
    /// character, and with `ASCII` at the first byte past ASCII too.
    fn skip_plain<const ASCII: bool>(&mut self) {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGH: u64 = 0x8080_8080_8080_8080;
        // The high bit of each byte of `x` that is zero. A borrow can mark
        // bytes above a zero byte too, never below: the lowest mark is exact.
        let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
        while let Some(chunk) = self.doc.get(self.at..self.at + 8) {
            let w = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
            let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
            let special = zero(w ^ (ONES * u64::from(b'"')))
                | zero(w ^ (ONES * u64::from(b'\\')))
                | below_space
                | if ASCII { w & HIGH } else { 0 };
            if special != 0 {
                self.at += (special.trailing_zeros() / 8) as usize;
                return;
            }
            self.at += 8;
        }
        while let Some(&c) = self.doc.get(self.at) {
            if c == b'"' || c == b'\\' || c < 0x20 || (ASCII && c >= 0x80) {
                return;
            }
            self.at += 1;
        }
    }

    /// At a byte past ASCII in a string: checks the run of text up to the
    /// next quote, backslash or control character as UTF-8 (no sequence
    /// can hold an ASCII byte, so the run ends between characters).
    #[cold]
    fn text_past_ascii(&mut self) -> Result<(), Invalid> {
        let start = self.at;
        self.skip_plain::<false>();
        std::str::from_utf8(&self.doc[start..self.at])
            .map(|_| ())
            .map_err(|e| Invalid {
                what: "invalid UTF-8",
                at: start + e.valid_up_to(),
            })
    }

    /// At an opening quote; ends past the closing one. Most strings (keys,
    /// ids, roles) are plain ASCII up to their quote: those are passed
    /// here, inline; the rest (escapes, text past ASCII, errors) go on in
    /// [`Scanner::string`]'s loop. A call per string was ~60 instructions
    /// of entry and exit alone.
    #[inline(always)]
    fn quick_string(&mut self) -> Result<(), Invalid> {
        let open = self.at;
        self.at += 1;
        self.skip_plain::<true>();
        if self.peek() == Some(b'"') {
            self.at += 1;
            return Ok(());
        }
        self.at = open;
        self.string()
    }

    /// At an opening quote; ends past the closing one.
    #[inline(never)]
    fn string(&mut self) -> Result<(), Invalid> {
        self.at += 1;
        loop {
            self.skip_plain::<true>();
            if self.peek().is_some_and(|c| c >= 0x80) {
                self.text_past_ascii()?;
            }
            match self.peek() {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.at += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.at += 1
                        }
                        Some(b'u') => {
                            let hex = self.doc.get(self.at + 1..self.at + 5);
                            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                                return Err(self.invalid("invalid \\u escape"));
                            }
                            self.at += 5;
                        }
                        _ => return Err(self.invalid("invalid escape")),
                    }
                }
                Some(_) => return Err(self.invalid("control character in a string")),
                None => return Err(self.invalid("unterminated string")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn accepts(doc: &[u8]) -> bool {
        object_members(doc, |_, _| Ok(())).is_ok()
    }

    /// What serde_json says when it skips a value, with our conditions: an
    /// object at the top, and UTF-8 throughout.
    fn serde_accepts(doc: &[u8]) -> bool {
        std::str::from_utf8(doc).is_ok()
            && doc.trim_ascii_start().first() == Some(&b'{')
            && serde_json::from_slice::<serde::de::IgnoredAny>(doc).is_ok()
    }

    #[test]
    fn reports_each_top_level_member_with_its_raw_value() {
        let doc =
            br#" { "id" : "x\"y", "usage": {"total_tokens": 3}, "n": [1, {"a": null}] , "e":{} } "#;
        let mut seen = Vec::new();
        object_members(doc, |k, v| {
            seen.push((
                String::from_utf8(k.to_vec()).unwrap(),
                String::from_utf8(v.to_vec()).unwrap(),
            ));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            seen,
            [
                ("id".into(), r#""x\"y""#.into()),
                ("usage".into(), r#"{"total_tokens": 3}"#.into()),
                ("n".into(), r#"[1, {"a": null}]"#.into()),
                ("e".into(), "{}".into()),
            ] as [(String, String); 4]
        );
    }

    #[test]
    fn rejects_what_is_not_one_json_object_and_says_where() {
        for (doc, at) in [
            (&b""[..], 0),
            (b"[1]", 0),
            (b"<html>", 0),
            (b"{\"a\":1", 6),
            (b"{\"a\":1}}", 7),
            (b"{\"a\":01}", 6),
            (b"{\"a\":1.}", 7),
            (b"{\"a\":tru}", 5),
            (b"{\"a\":\"\x01\"}", 6),
            (b"{\"a\":\"\\x\"}", 7),
            (b"{\"a\":\"\\u12g4\"}", 7),
            (b"{\"a\":[1,]}", 8),
            (b"{\"a\":\"\xff\"}", 6),
            (b"{\"a\" 1}", 5),
            (b"{a:1}", 1),
        ] {
            let err = object_members(doc, |_, _| Ok(())).unwrap_err();
            assert_eq!(err.at, at, "{:?}: {err}", String::from_utf8_lossy(doc));
            assert!(!serde_accepts(doc));
        }
    }

    #[test]
    fn keys_are_decoded() {
        let mut keys = Vec::new();
        object_members(br#"{"mod\u0065l": 1, "a\"b": 2, "plain": 3}"#, |k, _| {
            keys.push(String::from_utf8(k.to_vec()).unwrap());
            Ok(())
        })
        .unwrap();
        assert_eq!(keys, ["model", "a\"b", "plain"]);
        let err = object_members(br#"{"x\ud800": 1}"#, |_, _| Ok(())).unwrap_err();
        assert_eq!(err.what, "a key with an invalid escape");
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = |n: usize| format!("{{\"a\":{}1{}}}", "[".repeat(n), "]".repeat(n));
        assert!(accepts(deep(127).as_bytes()));
        let err = object_members(deep(100_000).as_bytes(), |_, _| Ok(())).unwrap_err();
        assert_eq!(
            err,
            Invalid {
                what: "nested too deeply",
                at: 5 + 127
            }
        );
    }

    #[test]
    fn a_member_can_reject_the_document() {
        let err = object_members(br#"{"a": 1, "usage": "x"}"#, |k, _| {
            if k == b"usage" {
                Err("bad usage")
            } else {
                Ok(())
            }
        })
        .unwrap_err();
        assert_eq!(
            err,
            Invalid {
                what: "bad usage",
                at: 18
            }
        );
    }

    /// JSON-ish text: valid documents from serde_json, then cut, spliced or
    /// with a byte changed, so most cases are near misses.
    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(|n| n.into()),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| f.into()),
            "[ -~\u{80}-\u{10ffff}\\\\\"\n\t\u{1}]{0,40}".prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::Array),
                prop::collection::btree_map("[a-z\"\\\\]{0,6}", inner, 0..5)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn mutated() -> impl Strategy<Value = Vec<u8>> {
        (
            json_value(),
            any::<bool>(),
            any::<prop::sample::Index>(),
            any::<u8>(),
            0..4u8,
        )
            .prop_map(|(value, pretty, at, byte, how)| {
                let mut doc = if pretty {
                    serde_json::to_vec_pretty(&value).unwrap()
                } else {
                    serde_json::to_vec(&value).unwrap()
                };
                if doc.is_empty() {
                    return doc;
                }
                let i = at.index(doc.len());
                match how {
                    0 => {}
                    1 => doc[i] = byte,
                    2 => doc.truncate(i),
                    _ => doc.insert(i, b"{}[]\",:\\0e.-tn \x7f\x1f"[byte as usize % 17]),
                }
                doc
            })
    }

    proptest! {
        #![proptest_config(crate::props(4000))]
        #[test]
        fn agrees_with_serde_json(doc in mutated()) {
            prop_assert_eq!(accepts(&doc), serde_accepts(&doc), "{:?}", String::from_utf8_lossy(&doc));
        }
    }
}
