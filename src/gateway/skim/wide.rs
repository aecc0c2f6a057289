//! Jumping a whole string, array or object 64 bytes at a time, with the
//! widest vectors the processor has (AVX-512 or AVX2, and carry-less
//! multiply, found at run time): a bit mask of the quotes, backslashes and
//! brackets of each block, the escaped bytes found with simdjson's
//! subtraction trick (Langdale and Lemire, "Parsing Gigabytes of JSON per
//! Second"), the inside of strings with a prefix XOR of the quotes, and
//! the brackets outside strings counted with `popcnt`. What it costs is
//! per block, not per quote: a Codex turn of code, with an escaped quote
//! every 20 bytes, costs what its length does instead of one `memchr` a
//! quote. A block wholly inside a string sends the rest of that string to
//! a cheaper loop that looks only for its closing quote.

use super::Unskimmable;

/// Which vectors this processor has: looked up once, then an atomic load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Width {
    None,
    Avx2,
    Avx512,
}

pub(super) fn width() -> Width {
    #[cfg(target_arch = "x86_64")]
    {
        use std::is_x86_feature_detected as has;
        if !(has!("pclmulqdq") && has!("popcnt") && has!("bmi1") && has!("avx2")) {
            return Width::None;
        }
        if has!("avx512bw") {
            Width::Avx512
        } else {
            Width::Avx2
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Width::None
    }
}

/// The end (one past it) of the string, array or object that starts at
/// `doc[at]` (a quote or an opening bracket), or `None` without the
/// vectors for it.
pub(super) fn end_of(width: Width, doc: &[u8], at: usize) -> Option<Result<usize, Unskimmable>> {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `width` says the processor has the features each needs.
        match width {
            Width::Avx512 => Some(unsafe { x86::end_of_avx512(doc, at) }),
            Width::Avx2 => Some(unsafe { x86::end_of_avx2(doc, at) }),
            Width::None => None,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (width, doc, at);
        None
    }
}

const ODD: u64 = 0xAAAA_AAAA_AAAA_AAAA;

/// The bytes escaped by a backslash in a block, given its backslashes;
/// `carry` says the block's first byte is escaped (by an odd run of
/// backslashes ending the block before), and is left saying so of the
/// next block. simdjson's `json_escape_scanner`: a subtraction finds the
/// end of each run of backslashes, its parity by whether the run started
/// on an odd or an even bit.
#[inline(always)]
fn escaped(backslashes: u64, carry: &mut u64) -> u64 {
    if backslashes == 0 {
        return std::mem::take(carry);
    }
    // Both outcomes, worked out before the carry is known, then one
    // picked: from block to block the chain is a select, not the whole
    // computation (whose latency a long string paid per block).
    let codes = |potential: u64| (potential << 1 | ODD).wrapping_sub(potential) ^ ODD;
    let (plain, first) = (codes(backslashes), codes(backslashes & !1));
    let plain = (plain ^ backslashes, (plain & backslashes) >> 63);
    let first = (first ^ (backslashes | 1), (first & backslashes) >> 63);
    let (escaped, next) = if *carry == 0 { plain } else { first };
    *carry = next;
    escaped
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::super::MAX_DEPTH;
    use super::{Unskimmable, escaped};

    /// A block's bytes that matter, one bit each.
    struct Masks {
        quotes: u64,
        backslashes: u64,
        opens: u64,
        closes: u64,
    }

    /// How a block's masks are made; always inlined into a function that
    /// enables the features it needs.
    trait Vectors {
        /// # Safety
        /// The processor has the implementation's features.
        unsafe fn masks(block: &[u8; 64]) -> Masks;
    }

    struct Avx2;
    struct Avx512;

    impl Vectors for Avx2 {
        #[inline(always)]
        unsafe fn masks(block: &[u8; 64]) -> Masks {
            // SAFETY: 64 readable bytes, unaligned loads; AVX2 by contract.
            unsafe {
                let lo = _mm256_loadu_si256(block.as_ptr().cast());
                let hi = _mm256_loadu_si256(block.as_ptr().add(32).cast());
                let eq = |v: __m256i, b: u8| -> u64 {
                    let m = _mm256_movemask_epi8(_mm256_cmpeq_epi8(v, _mm256_set1_epi8(b as i8)));
                    u64::from(m as u32)
                };
                // `[` and `{` differ only in 0x20, as do `]` and `}`.
                let case = _mm256_set1_epi8(0x20);
                let (lo_c, hi_c) = (_mm256_or_si256(lo, case), _mm256_or_si256(hi, case));
                Masks {
                    quotes: eq(lo, b'"') | eq(hi, b'"') << 32,
                    backslashes: eq(lo, b'\\') | eq(hi, b'\\') << 32,
                    opens: eq(lo_c, b'{') | eq(hi_c, b'{') << 32,
                    closes: eq(lo_c, b'}') | eq(hi_c, b'}') << 32,
                }
            }
        }
    }

    impl Vectors for Avx512 {
        #[inline(always)]
        unsafe fn masks(block: &[u8; 64]) -> Masks {
            // SAFETY: 64 readable bytes, an unaligned load; AVX-512BW by
            // contract.
            unsafe {
                let v = _mm512_loadu_si512(block.as_ptr().cast());
                let eq = |v: __m512i, b: u8| _mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8(b as i8));
                let c = _mm512_or_si512(v, _mm512_set1_epi8(0x20));
                Masks {
                    quotes: eq(v, b'"'),
                    backslashes: eq(v, b'\\'),
                    opens: eq(c, b'{'),
                    closes: eq(c, b'}'),
                }
            }
        }
    }

    #[target_feature(enable = "avx2,pclmulqdq,popcnt,bmi1")]
    pub(super) unsafe fn end_of_avx2(doc: &[u8], at: usize) -> Result<usize, Unskimmable> {
        // SAFETY: the features are enabled here.
        unsafe { end_of::<Avx2>(doc, at) }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx2,pclmulqdq,popcnt,bmi1")]
    pub(super) unsafe fn end_of_avx512(doc: &[u8], at: usize) -> Result<usize, Unskimmable> {
        // SAFETY: the features are enabled here.
        unsafe { end_of::<Avx512>(doc, at) }
    }

    /// # Safety
    /// Inlined into a function with `V`'s features, carry-less multiply,
    /// `popcnt` and BMI1.
    #[inline(always)]
    unsafe fn end_of<V: Vectors>(doc: &[u8], at: usize) -> Result<usize, Unskimmable> {
        unsafe {
            if doc[at] == b'"' {
                string_rest::<V>(doc, at + 1, 0)
            } else {
                container_end::<V>(doc, at)
            }
        }
    }

    /// Each bit the XOR of it and all below: 1 from an opening quote up
    /// to (not with) its closing one.
    #[inline(always)]
    unsafe fn prefix_xor(quotes: u64) -> u64 {
        // SAFETY: carry-less multiply by contract of the callers.
        unsafe {
            let all = _mm_set1_epi8(-1);
            let q = _mm_set_epi64x(0, quotes as i64);
            _mm_cvtsi128_si64(_mm_clmulepi64_si128(q, all, 0)) as u64
        }
    }

    /// The 64 bytes from `pos`, the last block padded with spaces.
    #[inline(always)]
    fn block<'a>(doc: &'a [u8], pos: usize, tail: &'a mut [u8; 64]) -> &'a [u8; 64] {
        match doc.get(pos..pos + 64).and_then(|b| b.try_into().ok()) {
            Some(b) => b,
            None => {
                let rest = &doc[pos..];
                tail[..rest.len()].copy_from_slice(rest);
                tail[rest.len()..].fill(b' ');
                tail
            }
        }
    }

    /// One past the first unescaped quote from `pos`; `carry`: `doc[pos]`
    /// is escaped.
    #[inline(always)]
    unsafe fn string_rest<V: Vectors>(
        doc: &[u8],
        mut pos: usize,
        mut carry: u64,
    ) -> Result<usize, Unskimmable> {
        let mut blocks = doc.get(pos..).unwrap_or_default().chunks_exact(64);
        for block in blocks.by_ref() {
            // SAFETY: `V`'s features by contract.
            let m = unsafe { V::masks(block.try_into().unwrap_or(&[b' '; 64])) };
            let closing = m.quotes & !escaped(m.backslashes, &mut carry);
            if closing != 0 {
                return Ok(pos + closing.trailing_zeros() as usize + 1);
            }
            pos += 64;
        }
        let rest = blocks.remainder();
        if !rest.is_empty() {
            let mut tail = [b' '; 64];
            tail[..rest.len()].copy_from_slice(rest);
            // SAFETY: `V`'s features by contract.
            let m = unsafe { V::masks(&tail) };
            let closing = m.quotes & !escaped(m.backslashes, &mut carry);
            if closing != 0 {
                return Ok(pos + closing.trailing_zeros() as usize + 1);
            }
        }
        Err(Unskimmable {
            what: "an unterminated string",
            at: doc.len(),
        })
    }

    #[inline(always)]
    unsafe fn container_end<V: Vectors>(doc: &[u8], at: usize) -> Result<usize, Unskimmable> {
        let mut carry = 0u64;
        let mut inside = 0u64;
        let mut depth = 0usize;
        let mut tail = [b' '; 64];
        let mut pos = at;
        while pos < doc.len() {
            // SAFETY: `V`'s features by contract.
            let m = unsafe { V::masks(block(doc, pos, &mut tail)) };
            let quotes = m.quotes & !escaped(m.backslashes, &mut carry);
            if inside != 0 && quotes == 0 {
                // A block wholly inside a string: a long one, whose rest
                // costs only its quotes and backslashes.
                pos = unsafe { string_rest::<V>(doc, pos + 64, carry)? };
                (inside, carry) = (0, 0);
                continue;
            }
            // SAFETY: carry-less multiply by contract.
            let in_string = unsafe { prefix_xor(quotes) } ^ inside;
            inside = ((in_string as i64) >> 63) as u64;
            let opens = m.opens & !in_string;
            let closes = m.closes & !in_string;
            let (o, c) = (opens.count_ones() as usize, closes.count_ones() as usize);
            // Most blocks cannot close the value: counted, not walked.
            if c < depth && depth + o <= MAX_DEPTH {
                depth = depth + o - c;
                pos += 64;
                continue;
            }
            let mut each = opens | closes;
            while each != 0 {
                let i = each.trailing_zeros();
                if opens >> i & 1 == 1 {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(Unskimmable {
                            what: "nesting too deep",
                            at: pos + i as usize,
                        });
                    }
                } else {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(pos + i as usize + 1);
                    }
                }
                each &= each - 1;
            }
            pos += 64;
        }
        Err(Unskimmable {
            what: "an unterminated object or array",
            at: doc.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::{Skim, members};
    use super::Width;

    /// The widths this processor has, the scalar skim's first.
    fn widths() -> Vec<Width> {
        [Width::None, Width::Avx2, Width::Avx512]
            .into_iter()
            .filter(|w| *w as u8 <= super::width() as u8)
            .collect()
    }

    /// Each value of `doc` (values one after another), skimmed either way.
    fn skimmed(doc: &[u8], wide: super::Width) -> Result<Vec<&[u8]>, super::Unskimmable> {
        let mut s = Skim { doc, at: 0, wide };
        let mut out = Vec::new();
        loop {
            s.ws();
            if s.at >= doc.len() {
                return Ok(out);
            }
            out.push(s.value()?);
        }
    }

    #[test]
    fn escapes_are_read_across_block_boundaries() {
        let runs = [
            r#"\""#,
            r#"\\"#,
            r#"\\\""#,
            r#"\\\\"#,
            r#"\u0022"#,
            r#"\\\\\""#,
        ];
        for pad in 0..140 {
            for run in runs {
                for wrap in [("", ""), ("[", "]"), ("{\"k\":[", "]}")] {
                    let doc = format!("{}\"{}{run}y\"{} 1", wrap.0, "x".repeat(pad), wrap.1);
                    let doc = doc.as_bytes();
                    for width in widths() {
                        assert_eq!(
                            skimmed(doc, width).unwrap(),
                            skimmed(doc, Width::None).unwrap(),
                            "{width:?} {}",
                            String::from_utf8_lossy(doc)
                        );
                    }
                }
            }
        }
    }

    /// Strings of the bytes that matter here, runs of backslashes above all.
    fn text() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just("\\"),
                Just("\\\\\\"),
                Just("\""),
                Just("{"),
                Just("]"),
                Just("a"),
                Just("é"),
                Just("\n"),
                Just("0123456789abcdefghijklmnopqrstuvwxyz"),
            ],
            0..80,
        )
        .prop_map(|parts| parts.concat())
    }

    fn value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            text().prop_map(serde_json::Value::String),
            any::<i32>().prop_map(serde_json::Value::from),
            Just(serde_json::Value::Null),
        ];
        leaf.prop_recursive(5, 64, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
                proptest::collection::btree_map(text(), inner, 0..6)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        // Failures found are kept beside this file (the repository's top
        // level is not ours to add to).
        #![proptest_config(crate::props(256))]
        #[test]
        fn finds_the_same_ends_as_the_scalar_skim(
            values in proptest::collection::vec(value(), 1..6),
            pad in 0usize..70,
        ) {
            let mut doc = " ".repeat(pad).into_bytes();
            for v in &values {
                doc.extend_from_slice(v.to_string().as_bytes());
                doc.push(b' ');
            }
            let scalar = skimmed(&doc, Width::None).unwrap();
            for width in widths() {
                prop_assert_eq!(&skimmed(&doc, width).unwrap(), &scalar);
            }
            let got = scalar;
            prop_assert_eq!(got.len(), values.len());
            let object = format!(
                "{{{}}}",
                values.iter().enumerate().map(|(i, v)| format!("\"k{i}\":{v}")).collect::<Vec<_>>().join(",")
            );
            let mut n = 0;
            members(object.as_bytes(), |_, _| n += 1).unwrap();
            prop_assert_eq!(n, values.len());
        }

        #[test]
        fn bytes_of_any_kind_end_in_a_value_or_an_error_never_a_panic(
            doc in proptest::collection::vec(
                prop_oneof![Just(b'"'), Just(b'\\'), Just(b'['), Just(b'}'), Just(b'{'), Just(b']'), Just(b'a')],
                1..300,
            ),
        ) {
            for width in widths() {
                let _ = skimmed(&doc, width);
            }
            let _ = members(&doc, |_, _| {});
        }
    }
}
