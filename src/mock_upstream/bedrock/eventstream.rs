//! AWS event-stream frames, written by the mock itself.
//!
//! The mock must not share the gateway's framing (`aws-smithy-eventstream`
//! on the gateway's side): a bug in one would then hide in the other. This
//! encoder is written from the format's description: a 12-byte prelude
//! (total length, headers length, the prelude's CRC32), the headers (a
//! one-byte name length, the name, type 7 for a string, a two-byte value
//! length, the value), the payload, and the CRC32 of everything before it.
//! boto3's and the anthropic SDK's decoders check both CRCs.

use bytes::Bytes;

/// The CRC32 of IEEE 802.3 (polynomial 0xEDB88320, reflected), table-driven.
pub(crate) fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for &b in data {
        crc = TABLE[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

/// One frame with string headers.
pub(crate) fn encode(headers: &[(&str, &str)], payload: &[u8]) -> Bytes {
    let mut head = Vec::new();
    for (name, value) in headers {
        head.push(u8::try_from(name.len()).expect("short header names"));
        head.extend_from_slice(name.as_bytes());
        head.push(7);
        head.extend_from_slice(
            &u16::try_from(value.len())
                .expect("short header values")
                .to_be_bytes(),
        );
        head.extend_from_slice(value.as_bytes());
    }
    let total = 12 + head.len() + payload.len() + 4;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&u32::try_from(total).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&u32::try_from(head.len()).unwrap_or(u32::MAX).to_be_bytes());
    let prelude_crc = crc32(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(payload);
    let message_crc = crc32(&out);
    out.extend_from_slice(&message_crc.to_be_bytes());
    Bytes::from(out)
}

/// An event of the stream: `:event-type` names it, the payload is JSON.
pub(crate) fn event(kind: &str, payload: &[u8]) -> Bytes {
    encode(
        &[
            (":event-type", kind),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload,
    )
}

/// An exception inside the stream (`throttlingException`, ...).
pub(crate) fn exception(kind: &str, message: &str) -> Bytes {
    let payload = serde_json::json!({ "message": message }).to_string();
    encode(
        &[
            (":exception-type", kind),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        payload.as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_check_value() {
        // The standard check value of CRC-32/ISO-HDLC.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn an_empty_frame_is_the_specifications_example() {
        // The smallest message: no headers, no payload. Its bytes are those
        // of the event-stream test suite's `empty_message`.
        assert_eq!(
            &encode(&[], b"")[..],
            &[
                0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x05, 0xc2, 0x48, 0xeb, 0x7d, 0x98,
                0xc8, 0xff
            ][..]
        );
    }

    #[test]
    fn frames_carry_their_lengths_headers_and_crcs() {
        let f = event("chunk", br#"{"bytes":"e30="}"#);
        let total = u32::from_be_bytes(f[0..4].try_into().unwrap()) as usize;
        let headers = u32::from_be_bytes(f[4..8].try_into().unwrap()) as usize;
        assert_eq!(total, f.len());
        assert_eq!(
            u32::from_be_bytes(f[8..12].try_into().unwrap()),
            crc32(&f[..8])
        );
        assert_eq!(
            u32::from_be_bytes(f[total - 4..].try_into().unwrap()),
            crc32(&f[..total - 4])
        );
        assert_eq!(&f[12..12 + 12], b"\x0b:event-type");
        assert_eq!(&f[12 + headers..total - 4], br#"{"bytes":"e30="}"#);
    }
}
