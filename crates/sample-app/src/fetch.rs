//! `sample-app fetch URL...`: a tiny HTTP/1.1 GET client, so the `FROM scratch` test
//! image (which holds nothing but this binary) can be its own client from inside a
//! container network — e.g. the swarm lab's overlay, reaching tasks by their IPs.
//!
//! For each `http://HOST:PORT/PATH` it prints `== URL` and then the whole response (head
//! and body) as received. A URL that cannot be reached is tried again every 500 ms up to
//! `--attempts` times (each connect and read bounded), so a network that is still
//! converging is waited for, for a bounded time. Exit status 0 when every URL answered a
//! status line, 1 when one never did, 2 on bad arguments.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

/// Flags of `sample-app fetch`.
#[derive(Debug, clap::Parser)]
#[command(
    name = "sample-app fetch",
    about = "GET each URL and print the responses"
)]
struct FetchOptions {
    /// Tries per URL before giving up on it.
    #[arg(long, default_value_t = 20)]
    attempts: u32,
    /// `http://HOST:PORT/PATH` (plain HTTP only).
    #[arg(required = true)]
    urls: Vec<String>,
}

/// Runs `sample-app fetch` with `args` (the first item is the program name).
pub fn fetch_main(args: Vec<String>) -> ExitCode {
    let opts = match FetchOptions::try_parse_from(args) {
        Ok(o) => o,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let mut ok = true;
    let mut stdout = std::io::stdout().lock();
    for url in &opts.urls {
        let _ = writeln!(stdout, "== {url}");
        match fetch_with_attempts(url, opts.attempts.max(1)) {
            Ok(response) => {
                let _ = stdout.write_all(&response);
                let _ = writeln!(stdout);
            }
            Err(error) => {
                let _ = writeln!(stdout, "!! {error}");
                ok = false;
            }
        }
    }
    let _ = stdout.flush();
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn fetch_with_attempts(url: &str, attempts: u32) -> Result<Vec<u8>, String> {
    let (addr, host, path) = parse(url)?;
    let mut last = String::new();
    for attempt in 1..=attempts {
        match get(addr, &host, &path) {
            Ok(response) if response.starts_with(b"HTTP/1.") => return Ok(response),
            Ok(response) => last = format!("not an HTTP response: {} bytes", response.len()),
            Err(e) => last = e.to_string(),
        }
        if attempt < attempts {
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    Err(format!(
        "{url}: no answer after {attempts} attempts: {last}"
    ))
}

/// `http://HOST:PORT/PATH` into the address, the Host header and the path.
fn parse(url: &str) -> Result<(SocketAddr, String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let with_port = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:80")
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| format!("{url}: {e}"))?
        .next()
        .ok_or_else(|| format!("{url}: {host} has no address"))?;
    Ok((addr, host.to_string(), path.to_string()))
}

fn get(addr: SocketAddr, host: &str, path: &str) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nUser-Agent: sample-app-fetch\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    Ok(response)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::parse;

    #[test]
    fn urls_parse_into_address_host_and_path() {
        let (addr, host, path) = parse("http://10.1.2.3:8080/health").unwrap();
        assert_eq!(addr.to_string(), "10.1.2.3:8080");
        assert_eq!((host.as_str(), path.as_str()), ("10.1.2.3:8080", "/health"));
        let (addr, _, path) = parse("http://127.0.0.1").unwrap();
        assert_eq!((addr.port(), path.as_str()), (80, "/"));
        assert!(parse("https://x/").unwrap_err().contains("only http://"));
    }
}
