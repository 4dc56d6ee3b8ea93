//! HTTPS end to end with real clients: `baton serve` with `tls_listen` and PEM files,
//! then curl (HTTP/2 and HTTP/1.1 by ALPN, the redirect from HTTP, HSTS), `openssl
//! s_client` (TLS 1.2 and 1.3 accepted, TLS 1.1 refused, ALPN, SNI, an unknown name
//! refused) and Python's `ssl` (a keep-alive connection across a certificate change, an
//! expired certificate refused by the client). A certificate file replaced on disk is
//! served from the next handshake on without closing open connections; a reload with a
//! key that does not match its certificate is refused naming both files and changes
//! nothing; `validate` finds it, and `serve` starts nothing with it. A certificate file
//! changed right after a reload is picked up too.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn tls_section(dir: &Path, tls_port: u16, certs: &[(&str, &str)]) -> String {
    let mut s =
        format!("tls_listen = [\"127.0.0.1:{tls_port}\"]\n\n[proxy.tls]\nhsts = \"365d\"\n");
    for (cert, key) in certs {
        s.push_str(&format!(
            "\n[[proxy.tls.certificates]]\ncert = \"{}\"\nkey = \"{}\"\n",
            dir.join(cert).display(),
            dir.join(key).display()
        ));
    }
    s
}

/// Runs `program args`; (success, stdout + stderr).
fn run(program: &str, args: &[&str], stdin: &str) -> (bool, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} cannot be started ({e}); .ci/run installs it"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn curl(dir: &Path, tls_port: u16, args: &[&str]) -> String {
    let resolve = format!("app.test:{tls_port}:127.0.0.1");
    let ca = dir.join("ca.pem");
    let mut all = vec![
        "-sS",
        "--max-time",
        "20",
        "--cacert",
        ca.to_str().unwrap(),
        "--resolve",
        &resolve,
    ];
    all.extend_from_slice(args);
    let (ok, out) = run("curl", &all, "");
    assert!(ok, "curl {args:?}: {out}");
    out
}

fn s_client(tls_port: u16, dir: &Path, extra: &[&str]) -> (bool, String) {
    let connect = format!("127.0.0.1:{tls_port}");
    let ca = dir.join("ca.pem");
    let mut args = vec![
        "s_client",
        "-connect",
        &connect,
        "-CAfile",
        ca.to_str().unwrap(),
        "-verify_return_error",
    ];
    args.extend_from_slice(extra);
    run("openssl", &args, "")
}

const PYTHON_CLIENT: &str = r#"
import http.client, ssl, sys
ca, port, host = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=20)
# One connection, opened here with SNI `host`; http.client reuses it (keep-alive) and
# never reconnects by itself while it is set.
import socket
sock = socket.create_connection(("127.0.0.1", port), timeout=20)
conn.sock = ctx.wrap_socket(sock, server_hostname=host)
print("version", conn.sock.version(), flush=True)
def get():
    conn.request("GET", "/", headers={"Host": host})
    r = conn.getresponse()
    body = r.read()
    return r.status
print("first", get(), flush=True)
for line in sys.stdin:
    if line.strip() == "again":
        print("again", get(), flush=True)
        break
"#;

const PYTHON_EXPIRED: &str = r#"
import ssl, socket, sys
ca, port, host = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
try:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        with ctx.wrap_socket(s, server_hostname=host) as t:
            print("accepted", t.version())
except ssl.SSLCertVerificationError as e:
    print("refused", e.verify_message)
"#;

#[test]
fn real_tls_clients_get_h2_or_http11_the_right_certificate_and_certificate_changes_live() {
    let tls_port = free_port();
    let mut ca_holder = None;
    let b = Baton::start_with(
        |dir| {
            let ca = TestCa::new(dir);
            ca.leaf(dir, "app", &["app.test", "www.app.test"], false);
            ca.leaf(dir, "old", &["old.test"], true);
            ca_holder = Some(ca);
            tls_section(
                dir,
                tls_port,
                &[("app.pem", "app.key"), ("old.pem", "old.key")],
            )
        },
        &app_config("rolling", 1, ""),
    );
    let ca = ca_holder.unwrap();
    let dir = b.dir.path().to_path_buf();
    b.cli_ok(&["deploy", "web", "v1"], 0);
    let url = format!("https://app.test:{tls_port}/");

    // curl: h2 and HTTP/1.1 by ALPN, the app's answer, HSTS.
    let out = curl(
        &dir,
        tls_port,
        &[
            "--http2",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{http_version}",
            &url,
        ],
    );
    assert_eq!(out, "200 2");
    let out = curl(
        &dir,
        tls_port,
        &[
            "--http1.1",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{http_version}",
            &url,
        ],
    );
    assert_eq!(out, "200 1.1");
    let out = curl(&dir, tls_port, &["-D", "-", "-o", "/dev/null", &url]);
    assert!(
        out.to_ascii_lowercase()
            .contains("strict-transport-security: max-age=31536000"),
        "{out}"
    );
    // The app sees the scheme the client used (the sample app's /headers echoes it),
    // never the one a client claims.
    let headers_url = format!("https://app.test:{tls_port}/headers");
    let out = curl(
        &dir,
        tls_port,
        &["-H", "X-Forwarded-Proto: gopher", &headers_url],
    );
    assert!(out.contains("\nx-forwarded-proto: https\n"), "{out}");
    assert!(!out.contains("gopher"), "{out}");
    // The HTTP listener sends everything to HTTPS, keeping the path and query.
    let plain = format!("http://{}/some/path?q=1", b.proxy);
    let out = curl(
        &dir,
        tls_port,
        &[
            "-H",
            "Host: app.test",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{redirect_url}",
            &plain,
        ],
    );
    assert_eq!(
        out,
        format!("308 https://app.test:{tls_port}/some/path?q=1")
    );

    // openssl: 1.2 and 1.3 with ALPN; 1.1 refused; an unknown name refused.
    for (version, alpn) in [("-tls1_2", "h2"), ("-tls1_3", "http/1.1")] {
        let (ok, out) = s_client(
            tls_port,
            &dir,
            &[version, "-servername", "app.test", "-alpn", alpn],
        );
        assert!(ok, "{version}: {out}");
        assert!(
            out.contains(&format!("ALPN protocol: {alpn}")),
            "{version}: {out}"
        );
        assert!(
            out.contains("Verify return code: 0 (ok)"),
            "{version}: {out}"
        );
        let proto = if version == "-tls1_2" {
            "TLSv1.2"
        } else {
            "TLSv1.3"
        };
        assert!(
            out.contains(&format!("New, {proto}, Cipher is")),
            "{version}: {out}"
        );
    }
    // The client allows TLS 1.1 here (security level 0); baton must refuse it.
    let (ok, out) = s_client(
        tls_port,
        &dir,
        &[
            "-tls1_1",
            "-cipher",
            "DEFAULT@SECLEVEL=0",
            "-servername",
            "app.test",
        ],
    );
    assert!(!ok, "TLS 1.1 was accepted: {out}");
    assert!(!out.contains("New, TLSv1.1, Cipher is"), "{out}");
    let (ok, out) = s_client(tls_port, &dir, &["-servername", "unknown.test"]);
    assert!(!ok, "an unknown name was served: {out}");
    assert!(out.contains("no peer certificate available"), "{out}");
    // As nginx's `ssl_reject_handshake`: the alert is unrecognized_name (112).
    assert!(out.contains("alert number 112"), "{out}");

    // Python: an expired certificate is served (baton warns in its log) and refused by
    // the client.
    let ca_file = dir.join("ca.pem");
    let (ok, out) = run(
        "python3",
        &[
            "-c",
            PYTHON_EXPIRED,
            ca_file.to_str().unwrap(),
            &tls_port.to_string(),
            "old.test",
        ],
        "",
    );
    assert!(ok, "{out}");
    assert!(out.contains("refused certificate has expired"), "{out}");
    assert!(
        b.serve_log().contains("EXPIRED"),
        "{}",
        tail(&b.serve_log(), 20)
    );

    // A keep-alive connection opened before the certificate file changes keeps
    // working after it; new handshakes get the new certificate.
    let mut py = Command::new("python3")
        .args([
            "-c",
            PYTHON_CLIENT,
            ca_file.to_str().unwrap(),
            &tls_port.to_string(),
            "app.test",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(py.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "version TLSv1.3");
    assert_eq!(lines.next().unwrap().unwrap(), "first 200");
    let before = served_serial(tls_port, "app.test");
    ca.leaf(&dir, "app", &["app.test", "www.app.test"], false);
    let deadline = Instant::now() + Duration::from_secs(60);
    let after = loop {
        let now = served_serial(tls_port, "www.app.test");
        if now != before {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate file was not picked up: {}",
            tail(&b.serve_log(), 20)
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    writeln!(py.stdin.as_mut().unwrap(), "again").unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "again 200");
    py.wait().unwrap();

    // A reload with a key that does not belong to its certificate is refused, naming
    // both files, and the certificate served stays.
    ca.leaf(&dir, "other", &["other.test"], false);
    let text = std::fs::read_to_string(&b.config).unwrap();
    std::fs::write(&b.config, text.replace("old.key", "other.key")).unwrap();
    let out = b.cli(&["reload"]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("does not match the certificate")
            && err.contains("other.key")
            && err.contains("old.pem"),
        "{err}"
    );
    // Where: the `key` of the second [[proxy.tls.certificates]] entry.
    let text = std::fs::read_to_string(&b.config).unwrap();
    let line = text
        .lines()
        .position(|l| l.starts_with("key = ") && l.contains("other.key"))
        .unwrap()
        + 1;
    assert!(
        err.contains(&format!(
            "baton.toml:{line}:1: [[proxy.tls.certificates]] #2: the key in"
        )),
        "{err}"
    );
    assert!(err.contains("nothing was changed"), "{err}");
    assert_eq!(served_serial(tls_port, "app.test"), after);
    let out = curl(
        &dir,
        tls_port,
        &["-o", "/dev/null", "-w", "%{http_code}", &url],
    );
    assert_eq!(out, "200");
}

#[test]
fn serve_refuses_certificate_files_it_cannot_use_naming_the_file_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = TestCa::new(d);
    ca.leaf(d, "a", &["a.test"], false);
    ca.leaf(d, "b", &["b.test"], false);
    // Each error is placed like the config's own problems: at the entry's `cert`
    // (line 9 of the file below) or `key` (line 10).
    let cases: [(&str, &str, &[&str]); 3] = [
        (
            "a.pem",
            "b.key",
            &[
                "baton.toml:10:1: [[proxy.tls.certificates]] #1: the key in",
                "does not match the certificate",
                "b.key",
                "a.pem",
            ],
        ),
        (
            "missing.pem",
            "a.key",
            &[
                "baton.toml:9:1: [[proxy.tls.certificates]] #1: cannot read cert file",
                "missing.pem",
            ],
        ),
        (
            "a.key",
            "a.key",
            &["baton.toml:9:1: ", "holds no PEM certificate", "a.key"],
        ),
    ];
    for (cert, key, wants) in cases {
        let config = d.join("baton.toml");
        let text = format!(
            "[proxy]\nlisten = [\"127.0.0.1:{}\"]\n{}\n[admin]\nlisten = \"unix:{d}/baton.sock\"\n\n[store]\npath = \"{d}/state\"\n\n{}",
            free_port(),
            tls_section(d, free_port(), &[(cert, key)]),
            app_config("rolling", 1, ""),
            d = d.display(),
        );
        std::fs::write(&config, text).unwrap();
        // `validate` reads the files as `serve` does, and `serve` starts nothing.
        for command in ["validate", "serve"] {
            let out = Command::new(BATON)
                .args([command, "-c"])
                .arg(&config)
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{command} {cert}/{key}: {err}");
            for w in wants {
                assert!(
                    err.contains(w),
                    "{command} {cert}/{key}: wanted {w:?} in {err}"
                );
            }
        }
        assert!(!d.join("baton.sock").exists(), "nothing may be served");
    }
}

/// The serial of the certificate in `path`, as `served_serial` prints it.
fn file_serial(path: &Path) -> String {
    let (ok, out) = run(
        "openssl",
        &["x509", "-noout", "-serial", "-in", path.to_str().unwrap()],
        "",
    );
    assert!(ok, "{out}");
    out.trim().to_string()
}

/// Regression: a reload hands the watcher a new file set; the watcher used to take the
/// files' fingerprint at its next look (up to 2 s later), so a file changed in between
/// was taken as the state of the set and never loaded. The fingerprint now comes from
/// the reload's own read. Three rounds, each changing the file at once after `baton
/// reload` returns: with the old watcher nearly every round missed the change.
#[test]
fn a_certificate_file_changed_right_after_a_reload_is_served() {
    let tls_port = free_port();
    let mut ca_holder = None;
    let b = Baton::start_with(
        |dir| {
            let ca = TestCa::new(dir);
            ca.leaf(dir, "app", &["app.test"], false);
            ca_holder = Some(ca);
            tls_section(dir, tls_port, &[("app.pem", "app.key")])
        },
        &app_config("rolling", 1, ""),
    );
    let ca = ca_holder.unwrap();
    let dir = b.dir.path().to_path_buf();
    let cert = dir.join("app.pem");
    assert_eq!(served_serial(tls_port, "app.test"), file_serial(&cert));
    for round in 1..=3 {
        b.cli_ok(&["reload"], 0);
        ca.leaf(&dir, "app", &["app.test"], false);
        let want = file_serial(&cert);
        // The watcher looks every 2 s; 30 s is many looks, not a timing assertion.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let served = served_serial(tls_port, "app.test");
            if served == want {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: the certificate file changed right after `baton reload` \
                 was never served (still {served}, the file has {want}): {}",
                tail(&b.serve_log(), 20)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
