//! The request-target and Host rules on raw bytes: the Host / authority check and the
//! dot-segment resolution never panic; a resolved path starts with `/`, holds no
//! dot-segment (also none written `%2e`), and resolving it again changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (_, resolved) = baton_proxy::fuzzing::fuzz_target(data);
    if let Some(path) = resolved {
        let (_, again) = baton_proxy::fuzzing::fuzz_target(path.as_bytes());
        assert_eq!(again.as_deref(), Some(path.as_str()), "not idempotent");
    }
});
