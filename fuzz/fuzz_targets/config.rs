//! `baton.toml` parsing and validation on arbitrary text: never a panic, and every
//! error renders (its file:line and suggestions slice the input by offsets).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match baton_config::parse(text, Path::new("baton.toml")) {
        Ok(config) => {
            let _ = format!("{config:?}");
        }
        Err(e) => {
            let _ = e.to_string();
            let _ = format!("{e:?}");
        }
    }
});
