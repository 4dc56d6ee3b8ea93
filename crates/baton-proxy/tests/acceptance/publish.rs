//! Publishing: bad tables are refused whole while the previous snapshot keeps serving;
//! hold mode keeps requests waiting for a ready backend, bounded in time and count.

use crate::common::*;
use baton_core::{HoldSpec, HumanDuration, MatchSpec, RuleSpec, ValueMatch};
use baton_proxy::{ProxyConfig, RouteError};
use http::StatusCode;

#[tokio::test]
async fn bad_tables_are_rejected_and_the_previous_snapshot_keeps_serving() {
    let v1 = sample("a1", "v1", None).await;
    let p = start_proxy(ProxyConfig::default()).await;
    let good = table(pools(vec![
        pool("v1", 100, vec![v1.spec()]),
        pool("v2", 0, vec![]),
    ]));
    p.proxy.publish(&good).unwrap();

    let mut all_zero = good.clone();
    all_zero.apps.get_mut(APP).unwrap().pools[0].weight = 0;
    let mut unknown = good.clone();
    unknown.apps.get_mut(APP).unwrap().rules.push(RuleSpec {
        matcher: MatchSpec::Header {
            name: "x-beta".into(),
            value: ValueMatch::Present,
        },
        version: "v9".into(),
    });
    let mut bad_regex = good.clone();
    bad_regex.apps.get_mut(APP).unwrap().rules.push(RuleSpec {
        matcher: MatchSpec::Cookie {
            name: "user".into(),
            value: ValueMatch::Regex("(unclosed".into()),
        },
        version: "v2".into(),
    });
    let mut dup = good.clone();
    dup.apps.get_mut(APP).unwrap().pools[1].version = "v1".into();

    type Expect = fn(&RouteError) -> bool;
    let cases: [(_, Expect, &str); 4] = [
        (
            all_zero,
            |e| matches!(e, RouteError::NoTraffic { .. }),
            "weight",
        ),
        (
            unknown,
            |e| matches!(e, RouteError::UnknownVersion { .. }),
            "\"v9\"",
        ),
        (
            bad_regex,
            |e| matches!(e, RouteError::InvalidRegex { .. }),
            "(unclosed",
        ),
        (
            dup,
            |e| matches!(e, RouteError::DuplicateVersion { .. }),
            "v1",
        ),
    ];
    for (spec, is_expected, mentions) in cases {
        let err = p.proxy.publish(&spec).unwrap_err();
        let msg = err.to_string();
        assert!(is_expected(&err), "unexpected error: {msg}");
        assert!(
            msg.contains("web") && msg.contains(mentions),
            "unclear message: {msg}"
        );
        assert_eq!(*p.proxy.current_spec(), good);
        let answer = get_once(p.addr, "/", &[]).await;
        assert_eq!(answer.0, StatusCode::OK);
        assert_eq!(version_of(&answer), "v1");
    }
}

#[tokio::test]
async fn in_flight_accounting_survives_publishes() {
    let v1 = sample("a1", "v1", None).await;
    let p = start_proxy(ProxyConfig::default()).await;
    let spec = table(pools(vec![pool("v1", 100, vec![v1.spec()])]));
    p.proxy.publish(&spec).unwrap();
    let addr = p.addr;
    let slow = tokio::spawn(async move { get_once(addr, "/slow?ms=1500", &[]).await });
    assert!(eventually(300, || p.proxy.in_flight("a1") == 1).await);
    for weight in [50, 100, 70] {
        let mut s = spec.clone();
        s.apps.get_mut(APP).unwrap().pools[0].weight = weight;
        p.proxy.publish(&s).unwrap();
        assert_eq!(p.proxy.in_flight("a1"), 1);
    }
    assert_eq!(slow.await.unwrap().0, StatusCode::OK);
    assert!(eventually(300, || p.proxy.in_flight("a1") == 0).await);
}

fn held(timeout_ms: u64, max_requests: usize) -> baton_core::RouteTableSpec {
    let mut app = pools(vec![pool("v1", 100, vec![])]);
    app.hold = Some(HoldSpec {
        timeout: HumanDuration::from_millis(timeout_ms),
        max_requests,
    });
    table(app)
}

#[tokio::test]
async fn held_requests_complete_once_a_backend_is_published() {
    let p = start_proxy(ProxyConfig::default()).await;
    p.proxy.publish(&held(20_000, 100)).unwrap();
    let addr = p.addr;
    let waiting: Vec<_> = (0..5)
        .map(|_| tokio::spawn(async move { get_once(addr, "/", &[]).await }))
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        waiting.iter().all(|t| !t.is_finished()),
        "requests were not held"
    );

    let v1 = sample("a1", "v1", None).await;
    let mut ready = held(20_000, 100);
    ready.apps.get_mut(APP).unwrap().pools[0]
        .backends
        .push(v1.spec());
    p.proxy.publish(&ready).unwrap();
    for t in waiting {
        let answer = t.await.unwrap();
        assert_eq!(answer.0, StatusCode::OK);
        assert_eq!(version_of(&answer), "v1");
    }
}

#[tokio::test]
async fn hold_timeout_answers_503() {
    let p = start_proxy(ProxyConfig::default()).await;
    p.proxy.publish(&held(300, 100)).unwrap();
    let answer = get_once(p.addr, "/", &[]).await;
    assert_eq!(answer.0, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.1["x-baton-error"], "hold_timeout");
    assert!(String::from_utf8_lossy(&answer.2).contains("app web"));
}

#[tokio::test]
async fn a_full_hold_queue_answers_503_at_once() {
    let p = start_proxy(ProxyConfig::default()).await;
    p.proxy.publish(&held(20_000, 2)).unwrap();
    let addr = p.addr;
    let waiting: Vec<_> = (0..2)
        .map(|_| tokio::spawn(async move { get_once(addr, "/", &[]).await }))
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let third = get_once(p.addr, "/", &[]).await;
    assert_eq!(third.0, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(third.1["x-baton-error"], "hold_full");
    assert!(
        waiting.iter().all(|t| !t.is_finished()),
        "the first two were not held"
    );

    let v1 = sample("a1", "v1", None).await;
    let mut ready = held(20_000, 2);
    ready.apps.get_mut(APP).unwrap().pools[0]
        .backends
        .push(v1.spec());
    p.proxy.publish(&ready).unwrap();
    for t in waiting {
        assert_eq!(t.await.unwrap().0, StatusCode::OK);
    }
}

#[tokio::test]
async fn without_hold_an_app_with_no_backend_answers_503_and_unknown_hosts_404() {
    let p = start_proxy(ProxyConfig::default()).await;
    let mut spec = table(pools(vec![pool("v1", 100, vec![])]));
    spec.routes[0].host = Some("*.example.com".into());
    p.proxy.publish(&spec).unwrap();
    let answer = get_once(p.addr, "/", &[("host", "A.Example.com:8080")]).await;
    assert_eq!(answer.0, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.1["x-baton-error"], "no_backend");
    assert_eq!(answer.2, "baton: no healthy instance of app web\n");
    let answer = get_once(p.addr, "/", &[("host", "example.org")]).await;
    assert_eq!(answer.0, StatusCode::NOT_FOUND);
    assert_eq!(answer.1["x-baton-error"], "no_route");
}
