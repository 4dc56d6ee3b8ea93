//! WebSocket frame boundaries (RFC 6455 §5.2) for the upgraded-connection tunnel: the
//! proxy may only inject its own Close frame between two frames, so each direction of a
//! WebSocket tunnel counts frames while it copies. Only header bytes are looked at;
//! payload bytes are counted, never read or unmasked.

/// Opcode of a Close control frame.
pub(crate) const OPCODE_CLOSE: u8 = 0x8;

/// Close status sent to both sides when an instance is drained (1001, Going Away).
const GOING_AWAY: u16 = 1001;

/// Reason sent with the Going Away close: tells the client what to do.
const CLOSE_REASON: &[u8] = b"baton: instance draining, reconnect";

/// Longest frame header: 2 bytes, 8 bytes of extended length, 4 bytes of mask key.
const MAX_HEADER: usize = 14;

/// Tracks where frames start and end in one direction of a WebSocket byte stream.
#[derive(Debug, Default)]
pub(crate) struct FrameTracker {
    /// Header bytes of the frame being started, collected across reads.
    head: [u8; MAX_HEADER],
    head_len: usize,
    /// Payload bytes of the current frame not seen yet.
    remaining: u64,
    /// The stream stopped looking like WebSocket frames (a 64-bit length with its most
    /// significant bit set): no boundary is ever reported again.
    broken: bool,
}

impl FrameTracker {
    /// Whether the bytes seen so far end exactly at the end of a frame, so a new frame
    /// may be written here.
    pub(crate) fn at_boundary(&self) -> bool {
        !self.broken && self.head_len == 0 && self.remaining == 0
    }

    /// Account for `data` (the next bytes of the stream) and return how many of them
    /// were consumed. Without `stop_at_end` everything is consumed; with it, consumption
    /// stops right after the end of the first frame that ends inside `data`, and the
    /// rest belongs to the following frames.
    pub(crate) fn advance(&mut self, data: &[u8], stop_at_end: bool) -> usize {
        let mut i = 0;
        loop {
            if self.broken {
                return data.len();
            }
            if self.remaining > 0 {
                let available = (data.len() - i) as u64;
                let take = self.remaining.min(available);
                // `take` is at most `data.len() - i`, so it fits in usize.
                i += take as usize;
                self.remaining -= take;
                if self.remaining > 0 || stop_at_end {
                    return i;
                }
                continue;
            }
            if i == data.len() {
                return i;
            }
            let need = header_len(&self.head[..self.head_len]);
            let copy = (need - self.head_len).min(data.len() - i);
            self.head[self.head_len..self.head_len + copy].copy_from_slice(&data[i..i + copy]);
            self.head_len += copy;
            i += copy;
            // The second byte decides the full header length: look again before parsing.
            if self.head_len < header_len(&self.head[..self.head_len]) {
                continue;
            }
            match payload_len(&self.head[..self.head_len]) {
                Some(len) => {
                    self.remaining = len;
                    self.head_len = 0;
                    if len == 0 && stop_at_end {
                        return i;
                    }
                }
                None => {
                    self.broken = true;
                    return data.len();
                }
            }
        }
    }
}

/// Header length implied by the header bytes seen so far (2 until the second byte is
/// known).
fn header_len(head: &[u8]) -> usize {
    let Some(&second) = head.get(1) else {
        return 2;
    };
    let extended = match second & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if second & 0x80 != 0 { 4 } else { 0 };
    2 + extended + mask
}

/// Payload length of a complete header; `None` for a 64-bit length with its most
/// significant bit set, which RFC 6455 forbids.
fn payload_len(head: &[u8]) -> Option<u64> {
    match head[1] & 0x7f {
        126 => Some(u64::from(u16::from_be_bytes([head[2], head[3]]))),
        127 => {
            let mut be = [0u8; 8];
            be.copy_from_slice(&head[2..10]);
            let len = u64::from_be_bytes(be);
            (len >> 63 == 0).then_some(len)
        }
        short => Some(u64::from(short)),
    }
}

/// Opcode of the frame whose first byte is `first`.
pub(crate) fn opcode(first: u8) -> u8 {
    first & 0x0f
}

/// A Close frame with status 1001 and baton's reason. Frames to the client are sent
/// unmasked; frames to the backend (the proxy plays the client there) must be masked.
pub(crate) fn going_away(masked: bool) -> Vec<u8> {
    let mut payload = Vec::with_capacity(2 + CLOSE_REASON.len());
    payload.extend_from_slice(&GOING_AWAY.to_be_bytes());
    payload.extend_from_slice(CLOSE_REASON);
    // A control frame payload is at most 125 bytes; the reason is a short constant.
    let len = payload.len() as u8;
    let mut frame = Vec::with_capacity(6 + payload.len());
    frame.push(0x80 | OPCODE_CLOSE);
    if masked {
        let key = fastrand::u32(..).to_be_bytes();
        frame.push(0x80 | len);
        frame.extend_from_slice(&key);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        frame.push(len);
        frame.extend_from_slice(&payload);
    }
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encode one frame header (+ payload of `len` bytes of filler).
    fn frame(fin: bool, opcode: u8, masked: bool, len: usize) -> Vec<u8> {
        let mut f = vec![(if fin { 0x80 } else { 0 }) | opcode];
        let mask_bit = if masked { 0x80 } else { 0 };
        if len < 126 {
            f.push(mask_bit | len as u8);
        } else if len <= usize::from(u16::MAX) {
            f.push(mask_bit | 126);
            f.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            f.push(mask_bit | 127);
            f.extend_from_slice(&(len as u64).to_be_bytes());
        }
        if masked {
            f.extend_from_slice(&[0x81, 0x82, 0x83, 0x84]);
        }
        // Filler that looks like headers, to catch payload bytes parsed as headers.
        f.extend(std::iter::repeat_n(0xff, len));
        f
    }

    /// Feed `stream` in chunks of `chunk` bytes, stopping at every frame end, and
    /// return the offsets of all boundaries seen.
    fn boundaries(stream: &[u8], chunk: usize) -> Vec<usize> {
        let mut t = FrameTracker::default();
        let mut seen = Vec::new();
        let mut pos = 0;
        while pos < stream.len() {
            let end = (pos + chunk).min(stream.len());
            let mut at = pos;
            while at < end {
                let k = t.advance(&stream[at..end], true);
                at += k;
                if t.at_boundary() {
                    seen.push(at);
                }
            }
            pos = end;
        }
        seen
    }

    fn offsets(frames: &[Vec<u8>]) -> Vec<usize> {
        frames
            .iter()
            .scan(0, |acc, f| {
                *acc += f.len();
                Some(*acc)
            })
            .collect()
    }

    #[test]
    fn finds_every_boundary_whatever_the_read_sizes() {
        let frames = vec![
            frame(true, 0x1, true, 5),
            frame(true, 0x2, false, 0),
            frame(false, 0x2, true, 300), // 16-bit length, first fragment
            frame(true, 0x9, true, 4),    // ping between fragments
            frame(true, OPCODE_CLOSE, false, 2),
            frame(false, 0x0, false, 70_000), // 64-bit length, continuation
            frame(true, 0x0, true, 125),
            frame(true, 0x1, false, 126),
            frame(true, 0xA, false, 0),
        ];
        let stream: Vec<u8> = frames.concat();
        let expected = offsets(&frames);
        for chunk in [1, 2, 3, 7, 13, 14, 100, 4096, stream.len()] {
            assert_eq!(boundaries(&stream, chunk), expected, "chunk {chunk}");
        }
    }

    #[test]
    fn without_stop_everything_is_consumed_and_the_state_carries_over() {
        let frames = [frame(true, 0x2, true, 65_536), frame(true, 0x1, false, 3)];
        let stream = frames.concat();
        let mut t = FrameTracker::default();
        // Split inside the extended length of the first header.
        assert_eq!(t.advance(&stream[..3], false), 3);
        assert!(!t.at_boundary());
        assert_eq!(t.advance(&stream[3..60_000], false), 60_000 - 3);
        assert!(!t.at_boundary());
        let rest = &stream[60_000..];
        assert_eq!(t.advance(rest, false), rest.len());
        assert!(t.at_boundary());
    }

    #[test]
    fn stop_at_end_leaves_the_next_frame_unconsumed() {
        let first = frame(true, 0x2, false, 1000);
        let second = frame(true, OPCODE_CLOSE, true, 2);
        let stream = [first.clone(), second.clone()].concat();
        let mut t = FrameTracker::default();
        assert_eq!(t.advance(&stream[..10], false), 10);
        let k = t.advance(&stream[10..], true);
        assert_eq!(10 + k, first.len());
        assert!(t.at_boundary());
        assert_eq!(opcode(stream[first.len()]), OPCODE_CLOSE);
        assert_eq!(t.advance(&stream[first.len()..], true), second.len());
        assert!(t.at_boundary());
    }

    #[test]
    fn a_forbidden_64_bit_length_means_no_boundary_is_trusted_again() {
        let mut bad = vec![0x82, 127];
        bad.extend_from_slice(&u64::MAX.to_be_bytes());
        let mut t = FrameTracker::default();
        assert_eq!(t.advance(&bad, true), bad.len());
        assert!(!t.at_boundary());
        let good = frame(true, 0x1, false, 1);
        assert_eq!(t.advance(&good, true), good.len());
        assert!(!t.at_boundary());
    }

    #[test]
    fn going_away_frames_parse_as_one_close_frame() {
        for masked in [false, true] {
            let f = going_away(masked);
            assert_eq!(opcode(f[0]), OPCODE_CLOSE);
            assert_eq!(f[0] & 0x80, 0x80, "FIN");
            assert_eq!(f[1] & 0x80 != 0, masked);
            let mut t = FrameTracker::default();
            assert_eq!(t.advance(&f, true), f.len());
            assert!(t.at_boundary());
            let body = if masked {
                let key = [f[2], f[3], f[4], f[5]];
                f[6..]
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ key[i % 4])
                    .collect::<Vec<_>>()
            } else {
                f[2..].to_vec()
            };
            assert_eq!(u16::from_be_bytes([body[0], body[1]]), 1001);
            assert_eq!(&body[2..], CLOSE_REASON);
        }
    }
}
