mod decoder;
mod encoder;
pub(crate) mod header;
pub(crate) mod huffman;
mod table;

#[cfg(test)]
mod test;

pub use self::decoder::{Decoder, DecoderError, NeedMore};
pub use self::encoder::Encoder;
// BATON-PATCH: for `crate::encoded`.
pub(crate) use self::encoder::{encode_int, encode_str_raw};
#[cfg(test)]
pub(crate) use self::decoder::get_static;
pub use self::header::{BytesStr, Header};
