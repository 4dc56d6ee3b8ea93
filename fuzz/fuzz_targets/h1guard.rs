//! The HTTP/1 framing tracker on arbitrary bytes. Besides not panicking, its verdict
//! must not depend on how the bytes were split into reads: the first byte picks a read
//! size, and the stream fed whole, in reads of that size, and byte by byte must agree
//! on the framing verdict, on poisoning (a chunked trailer hyper would hang on), and on
//! the bytes handed to hyper (request-line minor versions rewritten). A poisoned
//! stream stops at the read that poisoned it, so only the common prefix must match.
#![no_main]

use baton_proxy::fuzzing::{fuzz_sniff, SniffVerdict};
use libfuzzer_sys::fuzz_target;

fn agree(a: &SniffVerdict, b: &SniffVerdict, how: &str) {
    let n = a.passed.len().min(b.passed.len());
    assert_eq!(a.passed[..n], b.passed[..n], "{how}: bytes handed on");
    if !a.poisoned {
        assert_eq!(a.passed.len(), b.passed.len(), "{how}: bytes handed on");
    }
    let strip = |v: &SniffVerdict| SniffVerdict {
        passed: Vec::new(),
        ..v.clone()
    };
    assert_eq!(strip(a), strip(b), "{how}");
}

fuzz_target!(|data: &[u8]| {
    let Some((&size, stream)) = data.split_first() else {
        return;
    };
    let whole = fuzz_sniff([stream]);
    // The rewrite keeps lengths: every byte read is handed on, one for one.
    assert!(whole.poisoned || whole.passed.len() == stream.len());
    let sized = fuzz_sniff(stream.chunks(usize::from(size.max(1))));
    let bytes = fuzz_sniff(stream.chunks(1));
    agree(&whole, &sized, &format!("read size {size}"));
    agree(&whole, &bytes, "byte by byte");
});
