use super::table::Table;
use super::Header;

use bytes::{BufMut, BytesMut};
use http::header::HeaderName;

const DEFAULT_MAX_ALLOWED_SIZE: usize = 4 * 1024;

#[derive(Debug)]
pub struct Encoder {
    table: Table,
    max_allowed_size: usize,
    size_update: Option<SizeUpdate>,
    /// Reusable buffer for the encoded header block of a single frame.
    ///
    /// A header block only has to live until it is copied into the
    /// connection write buffer, so the buffer that holds it can be reused
    /// across frames instead of being allocated and freed per frame. See
    /// `take_scratch` / `return_scratch`.
    scratch: BytesMut,
}

#[derive(Debug, Copy, Clone, Eq, PartialEq)]
enum SizeUpdate {
    One(usize),
    Two(usize, usize), // min, max
}

impl Encoder {
    pub fn new(max_size: usize, capacity: usize) -> Encoder {
        let max_size = max_size.min(DEFAULT_MAX_ALLOWED_SIZE);

        Encoder {
            table: Table::new(max_size, capacity),
            max_allowed_size: DEFAULT_MAX_ALLOWED_SIZE,
            size_update: None,
            scratch: BytesMut::new(),
        }
    }

    #[cfg(test)]
    fn set_max_allowed_size(&mut self, max: usize) {
        self.max_allowed_size = max;

        if self.table.max_size() > max {
            self.update_max_size(max);
        }
    }

    /// Takes the reusable buffer for one header-block encode.
    ///
    /// The buffer is returned by `return_scratch` once the encoded block has
    /// been copied into the write buffer. If it is not returned - the
    /// CONTINUATION path keeps it, since the remainder is still needed - the
    /// next call simply starts from a fresh buffer.
    pub(crate) fn take_scratch(&mut self) -> BytesMut {
        std::mem::take(&mut self.scratch)
    }

    /// Returns a fully-written header block buffer for reuse.
    pub(crate) fn return_scratch(&mut self, scratch: BytesMut) {
        self.scratch = scratch;
    }

    /// Queues a max size update.
    ///
    /// The next call to `encode` will include a dynamic size update frame.
    pub fn update_max_size(&mut self, val: usize) {
        let val = val.min(self.max_allowed_size);

        match self.size_update {
            Some(SizeUpdate::One(old)) => {
                if val > old {
                    if old > self.table.max_size() {
                        self.size_update = Some(SizeUpdate::One(val));
                    } else {
                        self.size_update = Some(SizeUpdate::Two(old, val));
                    }
                } else {
                    self.size_update = Some(SizeUpdate::One(val));
                }
            }
            Some(SizeUpdate::Two(min, _)) => {
                if val < min {
                    self.size_update = Some(SizeUpdate::One(val));
                } else {
                    self.size_update = Some(SizeUpdate::Two(min, val));
                }
            }
            None => {
                if val != self.table.max_size() {
                    // Don't bother writing a frame if the value already matches
                    // the table's max size.
                    self.size_update = Some(SizeUpdate::One(val));
                }
            }
        }
    }

    /// Encode a set of headers into the provide buffer
    ///
    /// BATON-PATCH: every field is encoded without the dynamic table, as nginx and
    /// HAProxy encode their responses: a field the static table holds whole is an
    /// indexed field, any other is a literal without indexing (never indexed when the
    /// value is sensitive) whose name is a static-table index when the table has the
    /// name, and every string is a raw literal, not Huffman-coded. Upstream h2 looked
    /// each field up in, and inserted it into, a hashed dynamic table and Huffman-coded
    /// every string: about 4,000 instructions for a five-field response, more than
    /// whole HPACK-free parts of a proxied exchange. The peer's table-size settings are
    /// still followed (`encode_size_updates`), so the decoder's view stays exact.
    pub fn encode<I>(&mut self, headers: I, dst: &mut BytesMut)
    where
        I: IntoIterator<Item = Header<Option<HeaderName>>>,
    {
        self.encode_size_updates(dst);

        // The name of the previous field, for the fields of a repeated name (an
        // iterator over a `HeaderMap` yields the name only once).
        let mut last: Option<LastName> = None;

        for header in headers {
            match header.reify() {
                Ok(header) => {
                    let sensitive = header.is_sensitive();
                    match super::table::index_static(&header) {
                        Some((idx, true)) if !sensitive => {
                            encode_int(idx, 7, 0x80, dst);
                            last = Some(LastName::Static(idx));
                        }
                        Some((idx, _)) => {
                            encode_not_indexed_raw(idx, header.value_slice(), sensitive, dst);
                            last = Some(LastName::Static(idx));
                        }
                        None => {
                            dst.put_u8(if sensitive { 0b1_0000 } else { 0 });
                            encode_str_raw(header.name().as_slice(), dst);
                            encode_str_raw(header.value_slice(), dst);
                            last = match header {
                                Header::Field { name, .. } => Some(LastName::Literal(name)),
                                _ => None,
                            };
                        }
                    }
                }
                Err(value) => match last {
                    Some(LastName::Static(idx)) => {
                        encode_not_indexed_raw(idx, value.as_ref(), value.is_sensitive(), dst);
                    }
                    Some(LastName::Literal(ref name)) => {
                        dst.put_u8(if value.is_sensitive() { 0b1_0000 } else { 0 });
                        encode_str_raw(name.as_ref(), dst);
                        encode_str_raw(value.as_ref(), dst);
                    }
                    None => panic!(
                        "encoding header without name, but no previous index to use for name"
                    ),
                },
            }
        }
    }

    fn encode_size_updates(&mut self, dst: &mut BytesMut) {
        match self.size_update.take() {
            Some(SizeUpdate::One(val)) => {
                self.table.resize(val);
                encode_size_update(val, dst);
            }
            Some(SizeUpdate::Two(min, max)) => {
                self.table.resize(min);
                self.table.resize(max);
                encode_size_update(min, dst);
                encode_size_update(max, dst);
            }
            None => {}
        }
    }

    // BATON-PATCH: `encode_header` and `encode_header_without_name`, which wrote a
    // field by its place in the dynamic table, are gone with the dynamic indexing.
}

impl Default for Encoder {
    fn default() -> Encoder {
        Encoder::new(4096, 0)
    }
}

fn encode_size_update(val: usize, dst: &mut BytesMut) {
    encode_int(val, 5, 0b0010_0000, dst)
}

// BATON-PATCH: `encode_not_indexed`, `encode_not_indexed2` and `encode_str` (Huffman
// coding) are replaced by `encode_not_indexed_raw` and `encode_str_raw` below.

/// BATON-PATCH: the name of the field before, for `encode`'s repeated names.
enum LastName {
    Static(usize),
    Literal(HeaderName),
}

/// BATON-PATCH: a literal field without indexing (or never indexed) whose name is the
/// static table's entry `name`, its value a raw string.
fn encode_not_indexed_raw(name: usize, value: &[u8], sensitive: bool, dst: &mut BytesMut) {
    encode_int(name, 4, if sensitive { 0b1_0000 } else { 0 }, dst);
    encode_str_raw(value, dst);
}

/// BATON-PATCH: a string literal without Huffman coding (RFC 7541 §5.2, H = 0).
pub(crate) fn encode_str_raw(val: &[u8], dst: &mut BytesMut) {
    encode_int(val.len(), 7, 0, dst);
    dst.extend_from_slice(val);
}

/// Encode an integer into the given destination buffer
///
/// BATON-PATCH: `pub(crate)`, for `crate::encoded`.
pub(crate) fn encode_int<B: BufMut>(
    mut value: usize,   // The integer to encode
    prefix_bits: usize, // The number of bits in the prefix
    first_byte: u8,     // The base upon which to start encoding the int
    dst: &mut B,
) {
    if encode_int_one_byte(value, prefix_bits) {
        dst.put_u8(first_byte | value as u8);
        return;
    }

    let low = (1 << prefix_bits) - 1;

    value -= low;

    dst.put_u8(first_byte | low as u8);

    while value >= 128 {
        dst.put_u8(0b1000_0000 | value as u8);

        value >>= 7;
    }

    dst.put_u8(value as u8);
}

/// Returns true if the in the int can be fully encoded in the first byte.
fn encode_int_one_byte(value: usize, prefix_bits: usize) -> bool {
    value < (1 << prefix_bits) - 1
}

#[cfg(test)]
mod test {
    // BATON-PATCH: upstream's tests here checked dynamic indexing and Huffman coding,
    // which `encode` no longer does; these check what it does instead, and that
    // h2's own decoder reads back every field.
    use super::*;
    use crate::hpack::Decoder;
    use http::*;

    #[test]
    fn fields_the_static_table_holds_whole_are_one_byte() {
        let mut encoder = Encoder::default();
        let res = encode(
            &mut encoder,
            vec![method("GET"), method("POST"), status(200), status(404)],
        );
        assert_eq!(*res, [0x80 | 2, 0x80 | 3, 0x80 | 8, 0x80 | 13]);
        assert_eq!(encoder.table.len(), 0);
    }

    #[test]
    fn a_static_name_is_an_index_and_the_value_a_raw_literal() {
        let mut encoder = Encoder::default();
        let res = encode(&mut encoder, vec![method("PATCH"), status(302)]);
        // literal without indexing, name index 2 (:method), raw "PATCH"
        // then name index 8 (:status), raw "302"
        assert_eq!(&res[..], b"\x02\x05PATCH\x08\x03302");
        let res = encode(&mut encoder, vec![header("content-type", "text/plain")]);
        assert_eq!(&res[..], b"\x0f\x10\x0atext/plain"); // index 31 = 15 + 16
        assert_eq!(encoder.table.len(), 0);
    }

    #[test]
    fn an_unknown_name_is_a_raw_literal_too() {
        let mut encoder = Encoder::default();
        let res = encode(&mut encoder, vec![header("x-version", "v2")]);
        assert_eq!(&res[..], b"\x00\x09x-version\x02v2");
        // the same field again is written again: nothing is indexed
        let again = encode(&mut encoder, vec![header("x-version", "v2")]);
        assert_eq!(res, again);
        assert_eq!(encoder.table.len(), 0);
    }

    #[test]
    fn sensitive_values_are_never_indexed() {
        let mut encoder = Encoder::default();
        let mut value = HeaderValue::from_static("secret");
        value.set_sensitive(true);
        let mut custom = HeaderValue::from_static("token");
        custom.set_sensitive(true);
        let res = encode(
            &mut encoder,
            vec![
                Header::Field {
                    name: Some(header::AUTHORIZATION),
                    value,
                },
                Header::Field {
                    name: Some(HeaderName::from_static("x-key")),
                    value: custom,
                },
            ],
        );
        // never indexed (0001xxxx): name index 23 = 15 + 8, then a literal name
        assert_eq!(&res[..], b"\x1f\x08\x06secret\x10\x05x-key\x05token");
    }

    #[test]
    fn a_repeated_name_is_written_for_each_value() {
        let mut encoder = Encoder::default();
        let res = encode(
            &mut encoder,
            vec![
                header("set-cookie", "a=1"),
                nameless("b=2"),
                header("x-one", "1"),
                nameless("2"),
            ],
        );
        // set-cookie is static index 55 = 15 + 40
        assert_eq!(
            &res[..],
            b"\x0f\x28\x03a=1\x0f\x28\x03b=2\x00\x05x-one\x011\x00\x05x-one\x012"
        );
    }

    #[test]
    fn long_strings_have_multi_byte_lengths() {
        let mut encoder = Encoder::default();
        let value = "v".repeat(300);
        let res = encode(&mut encoder, vec![header("x-long", &value)]);
        // 300 = 127 + 173: 0x7f, then 173 in groups of 7 bits, low first:
        // 0x2d with the continuation bit (0xad), then 0x01
        assert_eq!(&res[..11], b"\x00\x06x-long\x7f\xad\x01");
        assert_eq!(&res[11..], value.as_bytes());
    }

    #[test]
    fn the_decoder_reads_back_every_field() {
        let mut encoder = Encoder::default();
        let mut decoder = Decoder::new(4096);
        let mut sensitive = HeaderValue::from_static("hush");
        sensitive.set_sensitive(true);
        let fields = vec![
            status(503),
            header("content-type", "application/json"),
            header("date", "Sat, 05 Dec 2026 15:00:00 GMT"),
            header("x-baton-version", "v1"),
            nameless("v2"),
            header("accept-encoding", "gzip, deflate"),
            Header::Field {
                name: Some(header::COOKIE),
                value: sensitive,
            },
            header("x-long", &"e".repeat(200)),
        ];
        let mut expected = Vec::new();
        let mut last_name = None;
        for field in &fields {
            match field {
                Header::Field { name: Some(n), value } => {
                    last_name = Some(n.clone());
                    expected.push((n.as_str().to_owned(), value.as_bytes().to_vec()));
                }
                Header::Field { name: None, value } => {
                    let n = last_name.clone().unwrap();
                    expected.push((n.as_str().to_owned(), value.as_bytes().to_vec()));
                }
                Header::Status(s) => expected.push((":status".into(), s.as_str().into())),
                Header::Method(m) => expected.push((":method".into(), m.as_str().into())),
                _ => unreachable!(),
            }
        }
        // twice over one connection's encoder and decoder: no state to go out of step
        for _ in 0..2 {
            let mut block = encode(&mut encoder, fields.clone());
            let mut got = Vec::new();
            decoder
                .decode(&mut std::io::Cursor::new(&mut block), |h| {
                    let name = match h.name() {
                        crate::hpack::header::Name::Field(n) => n.as_str().to_owned(),
                        crate::hpack::header::Name::Status => ":status".to_owned(),
                        other => panic!("unexpected {other:?}"),
                    };
                    got.push((name, h.value_slice().to_vec()));
                    std::ops::ControlFlow::Continue(())
                })
                .unwrap();
            assert_eq!(got, expected);
        }
    }

    #[test]
    fn size_updates_are_still_sent() {
        let mut encoder = Encoder::default();
        encoder.update_max_size(0);
        let res = encode(&mut encoder, vec![method("GET")]);
        assert_eq!(*res, [0x20, 0x80 | 2]);
        encoder.update_max_size(100);
        let res = encode(&mut encoder, vec![method("GET")]);
        assert_eq!(*res, [0x20 | 31, 69, 0x80 | 2]);
    }

    #[test]
    fn test_update_max_size_combos() {
        let mut encoder = Encoder::default();
        assert!(encoder.size_update.is_none());
        assert_eq!(4096, encoder.table.max_size());

        encoder.update_max_size(4096); // Default size
        assert!(encoder.size_update.is_none());

        encoder.update_max_size(0);
        assert_eq!(Some(SizeUpdate::One(0)), encoder.size_update);

        encoder.update_max_size(100);
        assert_eq!(Some(SizeUpdate::Two(0, 100)), encoder.size_update);

        let mut encoder = Encoder::default();
        encoder.set_max_allowed_size(8000);
        encoder.update_max_size(8000);
        assert_eq!(Some(SizeUpdate::One(8000)), encoder.size_update);

        encoder.update_max_size(100);
        assert_eq!(Some(SizeUpdate::One(100)), encoder.size_update);

        encoder.update_max_size(8000);
        assert_eq!(Some(SizeUpdate::Two(100, 8000)), encoder.size_update);

        encoder.update_max_size(4000);
        assert_eq!(Some(SizeUpdate::Two(100, 4000)), encoder.size_update);

        encoder.update_max_size(50);
        assert_eq!(Some(SizeUpdate::One(50)), encoder.size_update);
    }

    #[test]
    fn test_large_size_update() {
        let mut encoder = Encoder::default();
        encoder.set_max_allowed_size(usize::MAX);

        encoder.update_max_size(1912930560);
        assert_eq!(Some(SizeUpdate::One(1912930560)), encoder.size_update);

        let mut dst = BytesMut::with_capacity(6);
        encoder.encode_size_updates(&mut dst);
        assert_eq!([63, 225, 129, 148, 144, 7], &dst[..]);
    }

    #[test]
    fn test_large_size_update_is_capped() {
        let mut encoder = Encoder::new(0, 0);

        encoder.update_max_size(1912930560);
        assert_eq!(
            Some(SizeUpdate::One(DEFAULT_MAX_ALLOWED_SIZE)),
            encoder.size_update
        );

        let mut dst = BytesMut::with_capacity(3);
        encoder.encode_size_updates(&mut dst);
        assert_eq!([63, 225, 31], &dst[..]);
        assert_eq!(DEFAULT_MAX_ALLOWED_SIZE, encoder.table.max_size());
    }

    fn encode(e: &mut Encoder, hdrs: Vec<Header<Option<HeaderName>>>) -> BytesMut {
        let mut dst = BytesMut::with_capacity(1024);
        e.encode(hdrs, &mut dst);
        dst
    }

    fn method(s: &str) -> Header<Option<HeaderName>> {
        Header::Method(Method::from_bytes(s.as_bytes()).unwrap())
    }

    fn status(code: u16) -> Header<Option<HeaderName>> {
        Header::Status(StatusCode::from_u16(code).unwrap())
    }

    fn header(name: &str, val: &str) -> Header<Option<HeaderName>> {
        let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
        let value = HeaderValue::from_bytes(val.as_bytes()).unwrap();

        Header::Field {
            name: Some(name),
            value,
        }
    }

    fn nameless(val: &str) -> Header<Option<HeaderName>> {
        Header::Field {
            name: None,
            value: HeaderValue::from_bytes(val.as_bytes()).unwrap(),
        }
    }
}
