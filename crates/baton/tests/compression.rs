//! Response compression through a real `baton serve`, checked with `curl --compressed`
//! (a client that decodes what it gets) over HTTP/1.1 and h2c, and turned off by
//! `baton reload` without a restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::Value;
use std::process::Command;

/// The sample app's `/bytes` is `application/octet-stream`, so the test lists that type.
const COMPRESSION: &str = "\n[proxy.compression]\ntypes = [\"application/octet-stream\"]\n";

const BODY_LEN: usize = 200_000;

/// `curl` with `args` on `/bytes?n=BODY_LEN`: (response headers, body, bytes on the wire).
fn curl(b: &Baton, args: &[&str]) -> (String, Vec<u8>, u64) {
    let dir = b.dir.path();
    let (head, body) = (dir.join("curl.head"), dir.join("curl.body"));
    let url = format!("http://{}/bytes?n={BODY_LEN}", b.proxy);
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-D"])
        .arg(&head)
        .arg("-o")
        .arg(&body)
        .args(["-w", "%{size_download}"])
        .args(args)
        .arg(&url)
        .output()
        .expect("curl is installed");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wire = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let head = std::fs::read_to_string(head).unwrap().to_ascii_lowercase();
    (head, std::fs::read(body).unwrap(), wire)
}

#[test]
fn curl_compressed_gets_brotli_that_decodes_to_the_instances_bytes_until_a_reload_turns_it_off() {
    let b = Baton::start(&format!("{}{COMPRESSION}", app_config("rolling", 1, "")));
    b.cli_ok(&["deploy", "web", "v1"], 0);
    let expected = vec![b'x'; BODY_LEN];

    for version in [
        &["--compressed"][..],
        &["--compressed", "--http2-prior-knowledge"],
    ] {
        let (head, body, wire) = curl(&b, version);
        assert!(head.contains("content-encoding: br"), "{version:?}: {head}");
        assert!(head.contains("vary: accept-encoding"), "{head}");
        assert!(!head.contains("content-length"), "{head}");
        assert!(
            body == expected,
            "{version:?}: {} bytes decoded",
            body.len()
        );
        assert!(wire < 2_000, "{version:?}: {wire} bytes on the wire");
    }
    // curl still decodes what it asked for with its own header.
    let (head, body, _) = curl(&b, &["--compressed", "-H", "Accept-Encoding: gzip"]);
    assert!(head.contains("content-encoding: gzip"), "{head}");
    assert!(body == expected);
    // A client that asks for nothing gets the bytes as the instance sent them.
    let (head, body, wire) = curl(&b, &[]);
    assert!(!head.contains("content-encoding"), "{head}");
    assert_eq!(wire, BODY_LEN as u64);
    assert!(body == expected);

    // Off again by a reload, at once.
    let text = std::fs::read_to_string(&b.config).unwrap();
    std::fs::write(&b.config, text.replace(COMPRESSION, "\n")).unwrap();
    let report: Value = serde_json::from_str(&b.cli_ok(&["reload", "--json"], 0)).unwrap();
    let proxy = report.to_string();
    assert!(proxy.contains("compression"), "{proxy}");
    let (head, body, _) = curl(&b, &["--compressed"]);
    assert!(!head.contains("content-encoding"), "{head}");
    assert!(body == expected);
}
