//! The HTTP/1 framing tracker on arbitrary bytes. Besides not panicking, its verdict
//! must not depend on how the bytes were split into reads: the first byte picks a read
//! size, and the stream fed whole, in reads of that size, and byte by byte must agree
//! on the framing verdict, on poisoning (a chunked trailer hyper would hang on), and on
//! the bytes handed to hyper (request-line minor versions rewritten, nothing after a
//! poisoning byte).
#![no_main]

use baton_proxy::fuzzing::fuzz_sniff;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&size, stream)) = data.split_first() else {
        return;
    };
    let whole = fuzz_sniff([stream]);
    // The rewrite keeps lengths: every byte is handed on, one for one, up to the end
    // or the LF that poisoned the connection.
    if whole.poisoned {
        assert_eq!(whole.passed.last(), Some(&b'\n'));
    } else {
        assert_eq!(whole.passed.len(), stream.len());
    }
    let sized = fuzz_sniff(stream.chunks(usize::from(size.max(1))));
    let bytes = fuzz_sniff(stream.chunks(1));
    assert_eq!(whole, sized, "read size {size}");
    assert_eq!(whole, bytes, "byte by byte");
});
