//! BATON-PATCH (the whole file): header fields the caller encodes itself.
//!
//! A proxy that received a response's fields as bytes (an HTTP/1.1 head) can write
//! them into the HTTP/2 header block as they are, lowercased, without building an
//! `http::HeaderMap` first and without the map's hashing. `EncodedFields::push` refuses
//! a name that is not a token (as `HeaderName` does), a value with CR, LF or NUL
//! (RFC 9113 §8.2.1; `HeaderValue` also refuses the other control bytes, and baton's
//! fields were checked by it when their HTTP/1 head was parsed), and the
//! connection-specific fields h2's send check refuses. It encodes each field as
//! `hpack::Encoder::encode` does: a literal without indexing, the name a static-table
//! index where the table has it, raw strings.
//! `server::SendResponse::send_response_with_fields` sends them ahead of the
//! response's own map.

use crate::hpack::{encode_int, encode_str_raw as encode_str};
use bytes::{BufMut, BytesMut};
use std::fmt;

/// Header fields already encoded for an HTTP/2 header block (HPACK literals without
/// indexing), built with [`EncodedFields::push`].
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EncodedFields {
    block: BytesMut,
    count: usize,
}

/// Why [`EncodedFields::push`] refused a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidField {
    /// The name is empty or has a byte that is not a token character (RFC 9110 §5.1).
    Name,
    /// The value has a CR, LF or NUL (RFC 9113 §8.2.1).
    Value,
    /// A connection-specific field (`connection`, `keep-alive`, `proxy-connection`,
    /// `transfer-encoding`, `upgrade`, or `te` other than `trailers`), which HTTP/2
    /// forbids (RFC 9113 §8.2.2).
    ConnectionSpecific,
}

impl fmt::Display for InvalidField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InvalidField::Name => "invalid HTTP/2 field name",
            InvalidField::Value => "invalid HTTP/2 field value",
            InvalidField::ConnectionSpecific => "connection-specific field in HTTP/2",
        })
    }
}

impl std::error::Error for InvalidField {}

impl fmt::Debug for EncodedFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncodedFields")
            .field("count", &self.count)
            .field("bytes", &self.block.len())
            .finish()
    }
}

/// The longest name lowercased on the stack; longer ones use the heap.
const SHORT_NAME: usize = 64;

impl EncodedFields {
    /// No fields, with room for `bytes` bytes of encoded fields.
    pub fn with_capacity(bytes: usize) -> EncodedFields {
        EncodedFields {
            block: BytesMut::with_capacity(bytes),
            count: 0,
        }
    }

    /// Appends one field, its name in any case (it is written lowercased), and returns
    /// the name's index in HPACK's static table (RFC 7541 Appendix A) where the table
    /// has it: a caller looking for `date` (33) or `content-length` (28) among the fields
    /// need not compare names again. A field that is not a valid HTTP/2 field is refused
    /// and nothing is appended.
    pub fn push(&mut self, name: &[u8], value: &[u8]) -> Result<Option<usize>, InvalidField> {
        let mut short = [0u8; SHORT_NAME];
        let mut long = Vec::new();
        let lower: &mut [u8] = if name.len() <= SHORT_NAME {
            &mut short[..name.len()]
        } else {
            long.resize(name.len(), 0);
            &mut long
        };
        // One pass, without branches per byte: a byte that is not a token character
        // maps to 0.
        let mut invalid = name.is_empty();
        for (to, &from) in lower.iter_mut().zip(name) {
            let l = TOKEN_LOWER[from as usize];
            invalid |= l == 0;
            *to = l;
        }
        if invalid {
            return Err(InvalidField::Name);
        }
        if has_cr_lf_nul(value) {
            return Err(InvalidField::Value);
        }
        let lower = &*lower;
        match lower {
            b"connection" | b"keep-alive" | b"proxy-connection" | b"transfer-encoding"
            | b"upgrade" => return Err(InvalidField::ConnectionSpecific),
            b"te" if value != b"trailers" => return Err(InvalidField::ConnectionSpecific),
            _ => {}
        }
        let index = static_name(lower);
        match index {
            Some(index) => encode_int(index, 4, 0, &mut self.block),
            None => {
                self.block.put_u8(0);
                encode_str(lower, &mut self.block);
            }
        }
        encode_str(value, &mut self.block);
        self.count += 1;
        Ok(index)
    }

    /// How many fields were pushed.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no field was pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.block
    }
}

/// Whether `value` holds a CR, LF or NUL byte, eight bytes at a time: values are most
/// of a head's bytes.
fn has_cr_lf_nul(value: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // Non-zero exactly when some byte of `x` is zero.
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let mut chunks = value.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        if zero_byte(x)
            | zero_byte(x ^ (ONES * u64::from(b'\r')))
            | zero_byte(x ^ (ONES * u64::from(b'\n')))
            != 0
        {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&b| b == b'\r' || b == b'\n' || b == 0)
}

/// Each byte's lowercase form if it is a token character (RFC 9110 §5.6.2), else 0.
static TOKEN_LOWER: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = match c {
            b'A'..=b'Z' => c + 32,
            b'a'..=b'z' | b'0'..=b'9' | b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*'
            | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~' => c,
            _ => 0,
        };
        b += 1;
    }
    table
};

/// The static table's index of a lowercase field name (RFC 7541 Appendix A; the
/// first entry of each name), looked up among the names of the same length.
fn static_name(name: &[u8]) -> Option<usize> {
    let same_length: &[(&[u8], usize)] = match name.len() {
        3 => &[(b"age", 21), (b"via", 60)],
        4 => &[
            (b"date", 33),
            (b"etag", 34),
            (b"from", 37),
            (b"host", 38),
            (b"link", 45),
            (b"vary", 59),
        ],
        5 => &[(b"allow", 22), (b"range", 50)],
        6 => &[
            (b"accept", 19),
            (b"cookie", 32),
            (b"expect", 35),
            (b"server", 54),
        ],
        7 => &[(b"expires", 36), (b"referer", 51), (b"refresh", 52)],
        8 => &[(b"if-match", 39), (b"if-range", 42), (b"location", 46)],
        10 => &[(b"set-cookie", 55), (b"user-agent", 58)],
        11 => &[(b"retry-after", 53)],
        12 => &[(b"content-type", 31), (b"max-forwards", 47)],
        13 => &[
            (b"accept-ranges", 18),
            (b"authorization", 23),
            (b"cache-control", 24),
            (b"content-range", 30),
            (b"if-none-match", 41),
            (b"last-modified", 44),
        ],
        14 => &[(b"accept-charset", 15), (b"content-length", 28)],
        15 => &[(b"accept-encoding", 16), (b"accept-language", 17)],
        16 => &[
            (b"content-encoding", 26),
            (b"content-language", 27),
            (b"content-location", 29),
            (b"www-authenticate", 61),
        ],
        17 => &[(b"if-modified-since", 40), (b"transfer-encoding", 57)],
        18 => &[(b"proxy-authenticate", 48)],
        19 => &[
            (b"content-disposition", 25),
            (b"if-unmodified-since", 43),
            (b"proxy-authorization", 49),
        ],
        25 => &[(b"strict-transport-security", 56)],
        27 => &[(b"access-control-allow-origin", 20)],
        _ => &[],
    };
    same_length
        .iter()
        .find(|(known, _)| *known == name)
        .map(|&(_, index)| index)
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::hpack::{Decoder, Header};
    use std::io::Cursor;
    use std::ops::ControlFlow;

    fn decode(block: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut decoder = Decoder::new(4096);
        let mut src = BytesMut::from(block);
        let mut out = Vec::new();
        decoder
            .decode(&mut Cursor::new(&mut src), |h| {
                match h {
                    Header::Field { name, value } => {
                        out.push((name.as_str().to_owned(), value.as_bytes().to_vec()))
                    }
                    other => panic!("unexpected {other:?}"),
                }
                ControlFlow::Continue(())
            })
            .unwrap();
        out
    }

    #[test]
    fn cr_lf_and_nul_are_found_wherever_they_sit() {
        for len in 0..40 {
            let clean = vec![b'a'; len];
            assert!(!has_cr_lf_nul(&clean), "len {len}");
            for at in 0..len {
                for bad in [b'\r', b'\n', 0] {
                    let mut v = clean.clone();
                    v[at] = bad;
                    assert!(has_cr_lf_nul(&v), "len {len}, {bad:#04x} at {at}");
                }
            }
        }
        // Bytes next to the refused ones are not taken for them.
        let near: Vec<u8> = (1..=255u8)
            .filter(|b| ![b'\r', b'\n'].contains(b))
            .collect();
        assert!(!has_cr_lf_nul(&near));
    }

    #[test]
    fn fields_are_lowercased_and_read_back() {
        let mut fields = EncodedFields::default();
        fields.push(b"Content-Type", b"text/plain").unwrap();
        fields.push(b"X-Baton-Version", b"v2").unwrap();
        fields.push(b"set-cookie", b"a=1").unwrap();
        fields.push(b"Set-Cookie", b"b=2").unwrap();
        fields.push(b"TE", b"trailers").unwrap();
        let long = "x-".to_owned() + &"N".repeat(100);
        fields.push(long.as_bytes(), &[b'v'; 300]).unwrap();
        assert_eq!(fields.len(), 6);
        assert_eq!(
            decode(fields.as_bytes()),
            vec![
                ("content-type".to_owned(), b"text/plain".to_vec()),
                ("x-baton-version".to_owned(), b"v2".to_vec()),
                ("set-cookie".to_owned(), b"a=1".to_vec()),
                ("set-cookie".to_owned(), b"b=2".to_vec()),
                ("te".to_owned(), b"trailers".to_vec()),
                (long.to_ascii_lowercase(), vec![b'v'; 300]),
            ]
        );
    }

    #[test]
    fn static_names_are_indexes() {
        let mut fields = EncodedFields::default();
        assert_eq!(fields.push(b"Date", b"x"), Ok(Some(33)));
        assert_eq!(fields.push(b"www-authenticate", b"y"), Ok(Some(61)));
        assert_eq!(fields.push(b"x-date", b"z"), Ok(None));
        // name index 33 = 15 + 18; 61 = 15 + 46; then a literal name
        assert_eq!(
            fields.as_bytes(),
            b"\x0f\x12\x01x\x0f\x2e\x01y\x00\x06x-date\x01z"
        );
    }

    #[test]
    fn every_static_name_is_found() {
        for index in 15..=61 {
            let name = match crate::hpack::get_static(index) {
                Header::Field { name, .. } => name,
                other => panic!("{index}: {other:?}"),
            };
            assert_eq!(static_name(name.as_str().as_bytes()), Some(index), "{name}");
        }
        assert_eq!(static_name(b"x-date"), None);
        assert_eq!(static_name(b"dates"), None);
    }

    #[test]
    fn invalid_fields_are_refused_and_leave_nothing() {
        let mut fields = EncodedFields::default();
        assert_eq!(fields.push(b"", b"v"), Err(InvalidField::Name));
        assert_eq!(fields.push(b"bad name", b"v"), Err(InvalidField::Name));
        assert_eq!(fields.push(b":status", b"200"), Err(InvalidField::Name));
        assert_eq!(fields.push(b"x", b"a\r\nb"), Err(InvalidField::Value));
        assert_eq!(fields.push(b"x", b"a\0b"), Err(InvalidField::Value));
        for name in [
            &b"Connection"[..],
            b"keep-alive",
            b"Proxy-Connection",
            b"transfer-encoding",
            b"upgrade",
            b"te",
        ] {
            assert_eq!(
                fields.push(name, b"gzip"),
                Err(InvalidField::ConnectionSpecific),
                "{name:?}"
            );
        }
        assert!(fields.is_empty());
        assert!(fields.as_bytes().is_empty());
    }
}
