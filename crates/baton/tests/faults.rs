//! Faults against the real `baton serve`: backends SIGKILLed mid-request, hung,
//! or cutting a response; `kill -9` of baton at random points of every strategy's
//! deployment; a truncated or corrupted store; a full disk; two servers on one store.
//!
//! `kill -9` points are drawn from a fixed seed (printed; `BATON_FAULT_SEED` replays
//! another) and repeated `BATON_FAULT_KILLS` times per strategy (default 2; the long form
//! uses 20). Each kill test writes its outcome to `target/reliability/kill9-<strategy>.json`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/prerequisite.rs"]
mod prerequisite;

use baton_loadgen::{Load, LoadSpec, Profile};
use common::*;
use prerequisite::{run, tests, Test, TMPFS_MOUNT};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

// --- helpers ---

/// A small deterministic generator (splitmix64), so kill points replay from a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn main() {
    run(tests![
        backend_killed_mid_request_retries_only_bodyless_gets,
        hung_backend_leaves_routing_and_returns_when_it_answers,
        backend_cutting_a_response_is_seen_as_cut_and_the_app_keeps_serving,
        kill9_during_recreate,
        kill9_during_blue_green,
        kill9_during_rolling,
        kill9_during_canary,
        kill9_during_ab_test,
        truncated_or_corrupted_store_is_refused_and_left_untouched,
        full_disk_refuses_to_start_clearly_and_works_once_space_is_freed[&TMPFS_MOUNT],
        second_server_on_one_store_is_refused_and_the_first_keeps_serving,
    ]);
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn reliability_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("reliability");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Sends a raw HTTP/1.1 request and reads until the server closes (bounded).
struct Raw {
    stream: TcpStream,
}

impl Raw {
    fn send(addr: SocketAddr, head: &str) -> Raw {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream.write_all(head.as_bytes()).unwrap();
        Raw { stream }
    }

    fn write(&mut self, more: &str) {
        // The peer may be gone already: that is what some tests check.
        let _ = self.stream.write_all(more.as_bytes());
    }

    /// Everything the server sent until it closed (or an error/timeout ended reading).
    fn read_all(mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) | Err(_) => return out,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    }
}

fn status_code(resp: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(resp);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn body_of(resp: &[u8]) -> &[u8] {
    resp.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(&[][..], |i| &resp[i + 4..])
}

/// The pid of the instance listening on `port` (from its command line).
fn pid_of_port(b: &Baton, port: u16) -> i32 {
    for pid in b.instance_pids() {
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmd.split(|c| *c == 0).collect();
        if args
            .windows(2)
            .any(|w| w[0] == b"--port" && w[1] == port.to_string().as_bytes())
        {
            return pid;
        }
    }
    panic!("no instance process listens on port {port}");
}

fn instances(st: &Value) -> Vec<Value> {
    st["instances"].as_array().cloned().unwrap_or_default()
}

fn port_of(inst: &Value) -> u16 {
    inst["address"]
        .as_str()
        .unwrap()
        .parse::<SocketAddr>()
        .unwrap()
        .port()
}

fn sigkill(pid: i32) {
    let ok = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -KILL {pid} failed");
}

/// Waits until `replicas` healthy instances of `version` serve and no other process
/// started for this baton is alive (no orphans).
fn settled(b: &Baton, version: &str, replicas: usize) -> Value {
    let st = b.wait_status("healthy instances settled", |st| {
        let inst = instances(st);
        inst.len() == replicas
            && inst
                .iter()
                .all(|i| i["version"] == version && i["healthy"] == true)
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let pids = b.instance_pids();
        if pids.len() == replicas {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "orphans: {} processes for {replicas} instances: {pids:?}\n{}",
            pids.len(),
            tail(&b.serve_log(), 40)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A short load must see no failure: the app is served by healthy instances.
fn served_cleanly(b: &Baton) {
    let rt = rt();
    let load = rt.block_on(async {
        Load::start(LoadSpec {
            clients: 2,
            ..LoadSpec::new(b.proxy)
        })
    });
    std::thread::sleep(Duration::from_millis(700));
    let r = rt.block_on(load.stop());
    assert!(
        r.ok > 0 && r.failed == 0,
        "{r:?}\n{}",
        tail(&b.serve_log(), 40)
    );
}

// --- backends failing under requests ---

/// A backend SIGKILLed with requests in flight: GETs without a body are resent to the
/// surviving backend (they got no response byte); POSTs whose body the dead backend
/// may have read are never resent — the client gets a 5xx, and the survivor saw each
/// POST it answered exactly once. The app ends served by two healthy instances.
fn backend_killed_mid_request_retries_only_bodyless_gets() {
    // Bodies streamed as they arrive (`request_buffering = "off"`), so a POST is on the
    // backend while its body is still coming. (With the default read-ahead, these POSTs
    // would reach no backend before their bodies were complete.)
    let mut b = Baton::start(&app_config("rolling", 2, ""));
    b.kill9();
    let text = std::fs::read_to_string(&b.config).unwrap().replacen(
        "[admin]",
        "request_buffering = \"off\"\n\n[admin]",
        1,
    );
    std::fs::write(&b.config, text).unwrap();
    b.serve();
    b.cli_ok(&["deploy", "web", "v1"], 0);
    let st = settled(&b, "v1", 2);
    let inst = instances(&st);
    let (victim, survivor) = (port_of(&inst[0]), port_of(&inst[1]));
    let survivor_addr: SocketAddr = inst[1]["address"].as_str().unwrap().parse().unwrap();
    let victim_pid = pid_of_port(&b, victim);

    // Least-outstanding balancing over two backends alternates in-flight requests, so
    // half of each kind is on the victim when it dies.
    let mut gets = Vec::new();
    for _ in 0..4 {
        gets.push(Raw::send(
            b.proxy,
            "GET /slow?ms=1500 HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n",
        ));
        std::thread::sleep(Duration::from_millis(60));
    }
    let mut posts = Vec::new();
    for _ in 0..4 {
        // Half of the body now, the rest after the kill: the backend has read part of it.
        posts.push(Raw::send(
            b.proxy,
            "POST /write HTTP/1.1\r\nHost: web\r\nConnection: close\r\nContent-Length: 10\r\n\r\n12345",
        ));
        std::thread::sleep(Duration::from_millis(60));
    }
    std::thread::sleep(Duration::from_millis(300));
    sigkill(victim_pid);
    std::thread::sleep(Duration::from_millis(200));
    for p in &mut posts {
        p.write("67890");
    }
    let get_codes: Vec<u16> = gets
        .into_iter()
        .map(|g| status_code(&g.read_all()))
        .collect();
    let post_codes: Vec<u16> = posts
        .into_iter()
        .map(|p| status_code(&p.read_all()))
        .collect();
    eprintln!("GETs: {get_codes:?}, POSTs: {post_codes:?}");
    assert_eq!(
        get_codes, [200; 4],
        "bodyless GETs are resent to the survivor"
    );
    let ok_posts = post_codes.iter().filter(|c| **c == 200).count();
    let failed_posts = post_codes.iter().filter(|c| **c >= 500).count();
    assert_eq!(ok_posts + failed_posts, 4, "{post_codes:?}");
    assert!(
        failed_posts >= 1,
        "no POST was on the killed backend: {post_codes:?}"
    );
    // The survivor processed exactly the POSTs answered 200: none was resent to it.
    let writes = Raw::send(
        survivor_addr,
        "GET /writes HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n",
    )
    .read_all();
    let n: usize = String::from_utf8_lossy(body_of(&writes))
        .trim()
        .parse()
        .unwrap();
    assert_eq!(n, ok_posts, "survivor {survivor} processed {n} POSTs");

    // The dead instance is replaced; no orphan; the app serves cleanly.
    b.wait_status("killed instance replaced", |st| {
        let inst = instances(st);
        inst.len() == 2
            && inst.iter().all(|i| i["healthy"] == true)
            && inst.iter().all(|i| port_of(i) != victim)
    });
    settled(&b, "v1", 2);
    served_cleanly(&b);
}

/// A backend that accepts requests and never answers: active health checks time out and
/// it leaves routing, so requests sent after that all succeed on the other instance.
/// Requests already waiting on it are GETs, which the proxy sends to the other instance
/// as soon as the health check finds it dead (`Proxy::abandon`): none fails. baton does not
/// replace an unhealthy instance outside a deployment (by design: it is taken out of routing and routed again once healthy); it keeps
/// probing, and the instance is routed again once it answers.
fn hung_backend_leaves_routing_and_returns_when_it_answers() {
    let b = Baton::start(&app_config("rolling", 2, ""));
    b.cli_ok(&["deploy", "web", "v1"], 0);
    let st = settled(&b, "v1", 2);
    let hung = instances(&st)[0].clone();
    let hung_addr: SocketAddr = hung["address"].as_str().unwrap().parse().unwrap();
    let hang = |on: u8| {
        let resp = Raw::send(
            hung_addr,
            &format!("POST /admin/hang?on={on} HTTP/1.1\r\nHost: web\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"),
        )
        .read_all();
        assert_eq!(status_code(&resp), 200);
    };
    let rt = rt();
    let during = rt.block_on(async {
        Load::start(LoadSpec {
            clients: 2,
            timeout: Duration::from_secs(8),
            ..LoadSpec::new(b.proxy)
        })
    });
    hang(1);
    b.wait_status("hung instance out of routing", |st| {
        instances(st)
            .iter()
            .any(|i| i["id"] == hung["id"] && i["healthy"] == false)
    });
    served_cleanly(&b);
    let during = rt.block_on(during.stop());
    eprintln!("load while the backend hung: {during:?}");
    assert_eq!(
        during.failed, 0,
        "requests waiting on the hung backend go to the other one: {during:?}"
    );
    hang(0);
    b.wait_status("instance routed again", |st| {
        instances(st).iter().all(|i| i["healthy"] == true)
    });
    settled(&b, "v1", 2);
    served_cleanly(&b);
}

/// A backend that cuts its response mid-body: the proxy must pass the cut on (the client
/// sees a body shorter than its `Content-Length` and a closed connection), never a
/// response that looks complete; the app keeps serving.
fn backend_cutting_a_response_is_seen_as_cut_and_the_app_keeps_serving() {
    let b = Baton::start(&app_config("rolling", 2, ""));
    b.cli_ok(&["deploy", "web", "v1"], 0);
    settled(&b, "v1", 2);
    for _ in 0..3 {
        let resp = Raw::send(b.proxy, "GET /abort?n=5000 HTTP/1.1\r\nHost: web\r\n\r\n").read_all();
        let head = String::from_utf8_lossy(&resp[..resp.len().min(400)]).to_lowercase();
        assert_eq!(status_code(&resp), 200, "{head}");
        let body = body_of(&resp);
        if head.contains("content-length: 10000") {
            assert!(body.len() < 10_000, "a cut body was completed");
        } else {
            // Chunked: the terminating zero-size chunk must be missing.
            assert!(
                !body.ends_with(b"0\r\n\r\n"),
                "a cut body was terminated: {head}"
            );
        }
    }
    served_cleanly(&b);
}

// --- kill -9 of baton during deployments ---

fn kill9_during_deployments(strategy: &str, replicas: usize, salt: u64) {
    let kills = env_u64("BATON_FAULT_KILLS", 2);
    let seed = env_u64("BATON_FAULT_SEED", 7) ^ salt;
    eprintln!("{strategy}: {kills} kills, seed {seed} (BATON_FAULT_SEED replays)");
    let mut rng = Rng(seed);
    let mut b = Baton::start(&app_config(strategy, replicas as u32, ""));
    b.cli_ok(&["deploy", "web", "v1"], 0);
    let mut stable = "v1".to_string();
    let mut outcomes: Vec<Value> = Vec::new();
    for k in 0..kills {
        let version = format!("v{}", k + 2);
        // Deployments of these configs take ~1-4 s; kill anywhere in 0..3.5 s.
        let delay = Duration::from_millis(rng.below(3500));
        b.cli_ok(&["deploy", "web", &version, "--detach"], 0);
        if strategy == "ab_test" {
            let t = Instant::now();
            // Promote part-way, so kills land before and after the promotion.
            while t.elapsed() < delay / 2 {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = b.cli(&["promote", "web", "--to", &version]);
            std::thread::sleep(delay / 2);
        } else {
            std::thread::sleep(delay);
        }
        b.kill9();
        b.serve();
        let mut promoted_again = false;
        let st = loop {
            let st = b.wait_status("deployment finished or waiting after restart", |st| {
                finished(st)
                    || (strategy == "ab_test" && st["weights"][&version].as_u64().unwrap_or(0) > 0)
            });
            if finished(&st) {
                break st;
            }
            if !promoted_again {
                let _ = b.cli(&["promote", "web", "--to", &version]);
                promoted_again = true;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let end_state = state(&st).to_string();
        let now_stable = st["stable_version"].as_str().unwrap().to_string();
        assert!(
            now_stable == version || now_stable == stable,
            "stable version {now_stable} is neither {stable} nor {version}"
        );
        let outcome = if now_stable == version && end_state == "succeeded" {
            "resumed"
        } else {
            "rolled back"
        };
        settled(&b, &now_stable, replicas);
        served_cleanly(&b);
        let ids: Vec<String> = b
            .history()
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect();
        assert!(
            ids.iter().any(|id| id.ends_with(&format!("-{}", k + 2))),
            "history misses deployment {version}: {ids:?}"
        );
        eprintln!(
            "{strategy} kill {k}: after {} ms -> {outcome} ({end_state}, stable {now_stable})",
            delay.as_millis()
        );
        outcomes.push(json!({"delay_ms": delay.as_millis() as u64, "outcome": outcome, "state": end_state, "stable": now_stable}));
        stable = now_stable;
    }
    // The store is valid: it opens offline with the whole history.
    b.kill9();
    let store = baton_store::Store::open(Path::new(&b.store_path())).unwrap();
    let history: Vec<Value> = store.history("web", 1000).unwrap();
    assert!(history.len() > kills as usize, "{history:?}");
    let record: Option<Value> = store.get_app("web").unwrap();
    assert!(record.is_some());
    drop(store);
    let resumed = outcomes
        .iter()
        .filter(|o| o["outcome"] == "resumed")
        .count();
    let doc = json!({
        "strategy": strategy,
        "seed": seed,
        "kills": kills,
        "resumed": resumed,
        "rolled_back": outcomes.len() - resumed,
        "orphans": 0,
        "store_valid": true,
        "runs": outcomes,
    });
    std::fs::write(
        reliability_dir().join(format!("kill9-{strategy}.json")),
        serde_json::to_string_pretty(&doc).unwrap(),
    )
    .unwrap();
}

fn kill9_during_recreate() {
    kill9_during_deployments("recreate", 2, 1);
}

fn kill9_during_blue_green() {
    kill9_during_deployments("blue_green", 2, 2);
}

fn kill9_during_rolling() {
    kill9_during_deployments("rolling", 3, 3);
}

fn kill9_during_canary() {
    kill9_during_deployments("canary", 2, 4);
}

fn kill9_during_ab_test() {
    kill9_during_deployments("ab_test", 2, 5);
}

// --- the store file ---

/// Stops the server and every instance, leaving the store closed.
fn stop_everything(b: &mut Baton) {
    b.kill9();
    for pid in b.instance_pids() {
        sigkill(pid);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !b.instance_pids().is_empty() {
        assert!(Instant::now() < deadline, "instances did not die");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `baton serve` on a damaged store: exits non-zero with an error naming the file and
/// the fix, and leaves the file byte for byte as it was.
fn refuses_damaged_store(b: &Baton, what: &str) -> String {
    let path = b.store_path();
    let before = std::fs::read(&path).unwrap();
    let (status, err) = serve_that_exits(&b.config);
    eprintln!("{what}: exit {status}: {err}");
    assert!(!status.success(), "{what}: {err}");
    assert!(
        err.contains(&path),
        "{what}: error does not name the file: {err}"
    );
    assert!(
        err.contains("damaged") && err.contains("move it aside"),
        "{what}: error does not say what to do: {err}"
    );
    // Only our error: not the storage library's internal panic text before it.
    assert!(
        !err.contains("panicked"),
        "{what}: a caught panic was printed: {err}"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "{what}: the store file was changed"
    );
    err
}

fn truncated_or_corrupted_store_is_refused_and_left_untouched() {
    let mut b = Baton::start(&app_config("rolling", 1, ""));
    b.cli_ok(&["deploy", "web", "v1"], 0);
    b.cli_ok(&["deploy", "web", "v2"], 0);
    stop_everything(&mut b);
    let path = b.store_path();
    let good = std::fs::read(&path).unwrap();
    eprintln!("store is {} bytes", good.len());

    std::fs::write(&path, &good[..good.len() / 2]).unwrap();
    refuses_damaged_store(&b, "truncated");

    // Flip every byte of the region redb's header and first pages live in, past the magic
    // number, so the damage is in data the store must read.
    let mut bad = good.clone();
    for byte in &mut bad[64..4096] {
        *byte ^= 0xA5;
    }
    std::fs::write(&path, &bad).unwrap();
    refuses_damaged_store(&b, "corrupted");

    // Put the good file back: it serves the same app.
    std::fs::write(&path, &good).unwrap();
    b.serve();
    let st = b.wait_status("app restored from the intact store", |st| {
        st["stable_version"] == "v2"
    });
    assert_eq!(st["app"], "web");
}

/// `baton serve` that must exit on its own (bounded): its status and stderr.
fn serve_that_exits(config: &Path) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(BATON)
        .args(["serve", "--stop-instances", "-c"])
        .arg(config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("baton serve kept running");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status, err)
}

/// A full disk where the store must be written: `baton serve` refuses to start with an
/// error naming the file and the fix; once space is freed it starts and the store works.
///
/// (A store that already exists has slack of its own: 78 deploys in a row on a full
/// tmpfs all succeeded while this test was written, so the refusal is provoked where a
/// write must allocate: creating the store.)
fn full_disk_refuses_to_start_clearly_and_works_once_space_is_freed() {
    let fs = Tmpfs::mount("4m");
    let mut b = Baton::start(&app_config("rolling", 1, ""));
    b.kill9();
    let store = fs.0.join("state");
    let text = std::fs::read_to_string(&b.config)
        .unwrap()
        .replace(&b.store_path(), store.to_str().unwrap());
    std::fs::write(&b.config, text).unwrap();
    let filler = fill(&fs.0);
    let (status, err) = serve_that_exits(&b.config);
    eprintln!("serve on a full disk: {status}: {err}");
    assert!(!status.success(), "{err}");
    // It names the store path the operator configured (not the temporary file the store
    // is built in), the cause, and the fix: the file system to free, or another path.
    assert!(
        err.contains(&format!(
            "no space left to create the store at {}",
            store.display()
        )),
        "{err}"
    );
    let mount = std::fs::canonicalize(&fs.0).unwrap();
    assert!(
        err.contains(&format!("free space on {}", mount.display())),
        "{err}"
    );
    assert!(err.contains("set [store] path elsewhere"), "{err}");
    assert!(!err.contains(".init-"), "{err}");
    // The failed creation removed its temporary file: nothing but the filler is there.
    let left: Vec<_> = std::fs::read_dir(&fs.0)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n != "filler")
        .collect();
    assert!(left.is_empty(), "left behind by the failed start: {left:?}");
    std::fs::remove_file(&filler).unwrap();
    // Space freed: the server starts on that store, takes a deploy, and the store opens
    // offline afterwards with the app in it.
    b.serve();
    b.cli_ok(&["deploy", "web", "v1"], 0);
    let pids = owned_pids(store.to_str().unwrap());
    assert_eq!(pids.len(), 1, "{pids:?}");
    b.kill9();
    let opened = baton_store::Store::open(&store).unwrap();
    let record: Option<Value> = opened.get_app("web").unwrap();
    assert!(record.is_some(), "the app record was lost");
    drop(opened);
    for pid in pids {
        sigkill(pid);
    }
    drop(b);
    drop(fs);
}

/// The pid of the `baton serve` running with `config` (from its command line).
fn serve_pid(config: &Path) -> u32 {
    let config = config.to_str().unwrap();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
        if args.contains(&b"serve".as_slice()) && args.contains(&config.as_bytes()) {
            found.push(pid);
        }
    }
    assert_eq!(
        found.len(),
        1,
        "baton serve processes for {config}: {found:?}"
    );
    found[0]
}

/// A second `baton serve` on the same store refuses with a clear error, while the first
/// keeps serving traffic without a failed request.
fn second_server_on_one_store_is_refused_and_the_first_keeps_serving() {
    let b = Baton::start(&app_config("rolling", 1, ""));
    b.cli_ok(&["deploy", "web", "v1"], 0);
    let rt = rt();
    let load =
        rt.block_on(async { Load::start(LoadSpec::with_profile(b.proxy, Profile::KeepAlive)) });
    // Same store, but its own proxy/admin addresses, so only the store can clash.
    let other = b.dir.path().join("other.toml");
    let text = std::fs::read_to_string(&b.config).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = text
        .replacen(&b.proxy.to_string(), &format!("127.0.0.1:{port}"), 1)
        .replace("baton.sock", "other.sock");
    std::fs::write(&other, text).unwrap();
    let out = Command::new(BATON)
        .args(["serve", "-c"])
        .arg(&other)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("second server: exit {:?}: {err}", out.status.code());
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&b.store_path()), "{err}");
    // It names the running server, so the operator knows which process to stop.
    let first = serve_pid(&b.config);
    assert!(
        err.contains(&format!(
            "in use by another baton (baton pid {first}, started "
        )),
        "{err}"
    );
    assert!(
        err.contains("stop it or set [store] path elsewhere"),
        "{err}"
    );
    std::thread::sleep(Duration::from_millis(300));
    let r = rt.block_on(load.stop());
    assert!(r.ok > 0 && r.failed == 0, "{r:?}");
    b.cli_ok(&["deploy", "web", "v2"], 0);
}
