//! Atomic switching under load: HTTP/1.1 and HTTP/2 keep-alive clients (some idling
//! between requests) while 200 full switches A→B→A and weight changes are published.
//! Not one request may fail, and every request that started after a publish completed
//! is answered by a version that snapshot (or a later one) allows.

use crate::common::*;
use baton_core::RouteTableSpec;
use baton_proxy::ProxyConfig;
use http::StatusCode;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SWITCHES: usize = 200;

/// Published tables in order, with the versions each one lets through.
struct History {
    allowed: Mutex<Vec<BTreeSet<String>>>,
    /// Index of the last table whose `publish` returned.
    completed: AtomicUsize,
    done: AtomicBool,
}

impl History {
    /// Versions a request may get if it started after table `from` was published
    /// and finished before table `to + 2` was (`to + 1` may have been mid-publish).
    fn allowed(&self, from: usize, to: usize) -> BTreeSet<String> {
        let all = self.allowed.lock().unwrap();
        all[from..all.len().min(to + 2)]
            .iter()
            .flatten()
            .cloned()
            .collect()
    }
}

fn versions(spec: &RouteTableSpec) -> BTreeSet<String> {
    spec.apps[APP]
        .pools
        .iter()
        .filter(|p| p.weight > 0)
        .map(|p| p.version.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_switches_under_keep_alive_load_fail_no_request() {
    two_hundred_switches_under_keep_alive_load_fail_no_request_scenario().await;
}

/// The same with two proxy workers (`baton_proxy::start_workers`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_switches_under_keep_alive_load_fail_no_request_with_two_workers() {
    baton_proxy::start_workers(2).unwrap();
    two_hundred_switches_under_keep_alive_load_fail_no_request_scenario().await;
}

async fn two_hundred_switches_under_keep_alive_load_fail_no_request_scenario() {
    let a = [
        sample("a1", "v1", None).await,
        sample("a2", "v1", None).await,
    ];
    let b = [
        sample("b1", "v2", None).await,
        sample("b2", "v2", None).await,
    ];
    let p = start_proxy(ProxyConfig::default()).await;
    let only_a = table(pools(vec![pool(
        "v1",
        100,
        a.iter().map(Sample::spec).collect(),
    )]));
    let only_b = table(pools(vec![pool(
        "v2",
        100,
        b.iter().map(Sample::spec).collect(),
    )]));
    let split = |wa, wb| {
        table(pools(vec![
            pool("v2", wb, b.iter().map(Sample::spec).collect()),
            pool("v1", wa, a.iter().map(Sample::spec).collect()),
        ]))
    };
    p.proxy.publish(&only_a).unwrap();
    let history = Arc::new(History {
        allowed: Mutex::new(vec![versions(&only_a)]),
        completed: AtomicUsize::new(0),
        done: AtomicBool::new(false),
    });

    let mut clients = Vec::new();
    for i in 0..6 {
        let (h, addr) = (history.clone(), p.addr);
        clients.push(tokio::spawn(async move { client(i, addr, h).await }));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    for i in 1..=SWITCHES {
        let next = match i % 10 {
            3 => split(70, 30),
            7 => split(10, 90),
            _ if i % 2 == 0 => only_a.clone(),
            _ => only_b.clone(),
        };
        history.allowed.lock().unwrap().push(versions(&next));
        p.proxy.publish(&next).unwrap();
        history.completed.store(i, SeqCst);
        tokio::time::sleep(Duration::from_millis(8)).await;
    }
    history.done.store(true, SeqCst);
    let mut total = 0;
    for c in clients {
        total += c.await.unwrap();
    }
    assert!(
        total >= 300,
        "only {total} requests ran; the load did not overlap the switches"
    );
    let served = p.metrics.snapshot(APP, "v1").unwrap().requests
        + p.metrics.snapshot(APP, "v2").unwrap().requests;
    assert_eq!(served, total as u64, "per-version metrics missed requests");
}

/// Runs requests until the publisher is done; returns how many succeeded (all must).
async fn client(i: usize, addr: std::net::SocketAddr, history: Arc<History>) -> usize {
    let http2 = i >= 4;
    let idles = i % 2 == 1;
    let mut c1 = if http2 { None } else { Some(h1(addr).await) };
    let mut c2 = if http2 { Some(h2(addr).await) } else { None };
    let mut count = 0;
    while !history.done.load(SeqCst) {
        let from = history.completed.load(SeqCst);
        let req = request("GET", "/", &[], "");
        let answer = match (&mut c1, &mut c2) {
            (Some(c), _) => try_send(c, req).await,
            (_, Some(c)) => try_send_h2(c, req, addr).await,
            _ => unreachable!(),
        };
        let to = history.completed.load(SeqCst);
        let answer = answer.unwrap_or_else(|e| panic!("client {i} request {count} failed: {e}"));
        assert_eq!(answer.0, StatusCode::OK, "client {i}: {:?}", answer.2);
        let got = version_of(&answer);
        let allowed = history.allowed(from, to);
        assert!(
            allowed.contains(&got),
            "client {i}: got {got} after publish {from} (allowed {allowed:?})"
        );
        count += 1;
        if idles {
            tokio::time::sleep(Duration::from_millis(fastrand::u64(50..200))).await;
        }
    }
    count
}
