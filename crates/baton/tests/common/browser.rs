//! A real headless Chromium driven over the Chrome DevTools Protocol: start it, open a
//! page, evaluate JavaScript in it, click with the mouse, press keys, take screenshots,
//! and record every request the page makes. Five protocol methods are all the tests
//! need, so this speaks them over the WebSocket directly (tokio-tungstenite) rather than
//! pulling a generated client of the whole protocol into the build.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The Chromium binary: `chromium` (Debian's package) or `BATON_TEST_CHROMIUM`.
pub fn chromium_binary() -> String {
    std::env::var("BATON_TEST_CHROMIUM").unwrap_or_else(|_| "chromium".into())
}

pub struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    ws: Ws,
    next_id: u64,
    /// Every URL the page requested (Network.requestWillBeSent), in order.
    pub requests: Vec<String>,
    /// Console messages, browser log entries (`log LEVEL: ...`, e.g. a Content Security
    /// Policy violation) and uncaught exceptions of the page.
    pub console: Vec<String>,
}

impl Drop for Browser {
    /// Kills the whole process group: `chromium` is a wrapper script on Debian, and the
    /// browser, its zygote and renderers would outlive a kill of the script alone.
    fn drop(&mut self) {
        let pgid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Browser {
    /// Starts Chromium headless with a fresh profile and attaches to its first page.
    pub async fn launch() -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(chromium_binary())
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--metrics-recording-only",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} ({e})", chromium_binary()));
        // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID" on stderr.
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent {
                    if let Some(url) = line.split("DevTools listening on ").nth(1) {
                        let _ = tx.send(url.trim().to_string());
                        sent = true;
                    }
                }
            }
        });
        let browser_url = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("chromium did not print its DevTools address within 60 s");
        let port: u16 = browser_url
            .trim_start_matches("ws://127.0.0.1:")
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let page_ws = page_target(port);
        let (ws, _) = tokio_tungstenite::connect_async(page_ws.as_str())
            .await
            .unwrap();
        let mut b = Browser {
            child,
            _profile: profile,
            ws,
            next_id: 0,
            requests: Vec::new(),
            console: Vec::new(),
        };
        b.call("Page.enable", json!({})).await;
        b.call("Network.enable", json!({})).await;
        b.call("Runtime.enable", json!({})).await;
        b.call("Log.enable", json!({})).await;
        b
    }

    /// Sends one command and waits for its answer, recording the events met meanwhile.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({ "id": id, "method": method, "params": params });
        self.ws.send(Message::text(msg.to_string())).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("no answer to {method} within 60 s"));
            let Some(Ok(Message::Text(text))) = next else {
                if next.is_none() {
                    panic!("chromium closed the DevTools connection during {method}");
                }
                continue;
            };
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["id"].as_u64() == Some(id) {
                if let Some(err) = v.get("error") {
                    panic!("{method} failed: {err}");
                }
                return v["result"].clone();
            }
            self.record(&v);
        }
    }

    fn record(&mut self, v: &Value) {
        match v["method"].as_str() {
            Some("Network.requestWillBeSent") => {
                if let Some(url) = v["params"]["request"]["url"].as_str() {
                    self.requests.push(url.to_string());
                }
            }
            Some("Runtime.consoleAPICalled") => {
                let args: Vec<String> = v["params"]["args"]
                    .as_array()
                    .map(|a| a.iter().map(|x| x["value"].to_string()).collect())
                    .unwrap_or_default();
                self.console.push(args.join(" "));
            }
            Some("Log.entryAdded") => {
                let e = &v["params"]["entry"];
                self.console.push(format!(
                    "log {}: {}",
                    e["level"].as_str().unwrap_or("?"),
                    e["text"].as_str().unwrap_or("")
                ));
            }
            Some("Runtime.exceptionThrown") => {
                self.console
                    .push(format!("exception: {}", v["params"]["exceptionDetails"]));
            }
            _ => {}
        }
    }

    /// Opens `url` and waits until a new document has loaded (a mark left in the old
    /// one tells them apart; so `url` must not differ from the current one only in its
    /// `#fragment`, which keeps the document).
    pub async fn goto(&mut self, url: &str) {
        self.eval("window.__batonTestOldPage = true").await;
        self.call("Page.navigate", json!({ "url": url })).await;
        self.wait_for(
            "!window.__batonTestOldPage && document.readyState === 'complete'",
            "the new page to load",
        )
        .await;
    }

    /// The value of `expr` in the page (promises awaited).
    pub async fn eval(&mut self, expr: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expr, "returnByValue": true, "awaitPromise": true }),
            )
            .await;
        if let Some(ex) = r.get("exceptionDetails") {
            panic!("{expr} threw: {ex}");
        }
        r["result"]["value"].clone()
    }

    /// Waits (up to 90 s) until `expr` is truthy in the page, and returns its value.
    pub async fn wait_for(&mut self, expr: &str, what: &str) -> Value {
        let start = Instant::now();
        loop {
            let v = self
                .call(
                    "Runtime.evaluate",
                    json!({ "expression": expr, "returnByValue": true, "awaitPromise": true }),
                )
                .await;
            let value = v["result"]["value"].clone();
            let truthy = match &value {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy && v.get("exceptionDetails").is_none() {
                return value;
            }
            if start.elapsed() > Duration::from_secs(90) {
                let text = self
                    .eval("document.body ? document.body.innerText : ''")
                    .await;
                panic!(
                    "gave up waiting for {what} ({expr}) after 90 s; the page says:\n{}\nconsole: {:?}",
                    text.as_str().unwrap_or(""),
                    self.console
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A real mouse click in the middle of the element `selector` names.
    pub async fn click(&mut self, selector: &str) {
        let sel = serde_json::to_string(selector).unwrap();
        let r = self
            .eval(&format!(
                "(() => {{ const e = document.querySelector({sel}); if (!e) return null; \
                 e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect(); \
                 return [r.x + r.width / 2, r.y + r.height / 2]; }})()"
            ))
            .await;
        let (x, y) = match r.as_array() {
            Some(a) if a.len() == 2 => (a[0].as_f64().unwrap(), a[1].as_f64().unwrap()),
            _ => panic!("nothing to click: no element {selector}"),
        };
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({ "type": kind, "x": x, "y": y, "button": "left", "clickCount": 1 }),
            )
            .await;
        }
    }

    /// Presses a key (e.g. "Enter", "Tab") on whatever has the focus.
    pub async fn press(&mut self, key: &str) {
        let (code, vk, text) = match key {
            "Enter" => ("Enter", 13, "\r"),
            "Tab" => ("Tab", 9, ""),
            "Escape" => ("Escape", 27, ""),
            " " => ("Space", 32, " "),
            other => panic!("no key table entry for {other:?}"),
        };
        let mut down =
            json!({ "type": "keyDown", "key": key, "code": code, "windowsVirtualKeyCode": vk });
        if !text.is_empty() {
            down["text"] = json!(text);
        }
        self.call("Input.dispatchKeyEvent", down).await;
        self.call(
            "Input.dispatchKeyEvent",
            json!({ "type": "keyUp", "key": key, "code": code, "windowsVirtualKeyCode": vk }),
        )
        .await;
    }

    /// Types `text` into the focused field.
    pub async fn type_text(&mut self, text: &str) {
        self.call("Input.insertText", json!({ "text": text })).await;
    }

    /// The viewport: `width` × `height` CSS pixels, as a phone when `mobile`.
    pub async fn viewport(&mut self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile }),
        )
        .await;
    }

    /// A PNG of the whole page (not only the viewport) at `path`.
    pub async fn screenshot(&mut self, path: &Path) {
        let r = self
            .call(
                "Page.captureScreenshot",
                json!({ "format": "png", "captureBeyondViewport": true }),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, png).unwrap();
    }
}

/// The WebSocket address of the browser's first page, from its `/json/list`.
fn page_target(port: u16) -> String {
    let start = Instant::now();
    loop {
        // HTTP/1.1 with the port in Host (the DevTools server answers nothing else); it
        // keeps the connection open, so the body is read by its Content-Length.
        let body = (|| -> std::io::Result<String> {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            write!(
                s,
                "GET /json/list HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
            )?;
            let mut out = Vec::new();
            let mut buf = [0u8; 8192];
            loop {
                let n = s.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&out);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(usize::MAX);
                    if body.len() >= len {
                        break;
                    }
                }
            }
            Ok(String::from_utf8_lossy(&out).into_owned())
        })();
        if let Ok(body) = body {
            if let Some((_, json)) = body.split_once("\r\n\r\n") {
                if let Ok(Value::Array(targets)) = serde_json::from_str::<Value>(json) {
                    if let Some(url) = targets
                        .iter()
                        .find(|t| t["type"] == "page")
                        .and_then(|t| t["webSocketDebuggerUrl"].as_str())
                    {
                        return url.to_string();
                    }
                }
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "chromium on port {port} listed no page target"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
