//! The admin API's JSON request bodies (deploy, promote): decoded and checked exactly
//! as the endpoints do, on arbitrary bytes. First byte: which endpoint.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&endpoint, body)) = data.split_first() else {
        return;
    };
    if let Err(message) = baton_api::fuzz_body(endpoint % 2, body) {
        assert!(!message.is_empty());
    }
});
