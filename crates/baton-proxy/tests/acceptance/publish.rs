//! Publishing: bad tables are refused whole while the previous snapshot keeps serving;
//! hold mode keeps requests waiting for a ready backend, bounded in time and count.

use crate::common::*;
use baton_core::{
    HoldSpec, HumanDuration, MatchSpec, RouteSpec, RouteTableSpec, RuleSpec, ValueMatch,
};
use baton_proxy::{ProxyConfig, RouteError};
use http::StatusCode;
use std::time::Duration;

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

/// `web` on host web.test, `api` on api.test.
fn two_apps(web: baton_core::AppRouteSpec, api: baton_core::AppRouteSpec) -> RouteTableSpec {
    let mut t = RouteTableSpec::default();
    for (name, app) in [("web", web), ("api", api)] {
        t.routes.push(RouteSpec {
            host: Some(format!("{name}.test")),
            path_prefix: "/".into(),
            app: name.into(),
        });
        t.apps.insert(name.into(), app);
    }
    t
}

#[tokio::test]
async fn publish_app_changes_one_app_and_refuses_a_bad_change_whole() {
    let (w1, w2, a1) = (
        sample("w1", "v1", None).await,
        sample("w2", "v2", None).await,
        sample("a1", "v1", None).await,
    );
    let p = start_proxy(ProxyConfig::default()).await;
    let first = two_apps(
        pools(vec![pool("v1", 100, vec![w1.spec()])]),
        pools(vec![pool("v1", 100, vec![a1.spec()])]),
    );
    p.proxy.publish(&first).unwrap();
    let version_at = |host: &'static str| {
        let addr = p.addr;
        async move { version_of(&get_once(addr, "/", &[("host", host)]).await) }
    };
    assert_eq!(version_at("web.test").await, "v1");

    // One app changes; the other app and the routes stay as published.
    let web_v2 = pools(vec![
        pool("v1", 0, vec![w1.spec()]),
        pool("v2", 100, vec![w2.spec()]),
    ]);
    p.proxy.publish_app("web", Some(&web_v2)).unwrap();
    assert_eq!(version_at("web.test").await, "v2");
    assert_eq!(version_at("api.test").await, "v1");
    let mut expected = first.clone();
    expected.apps.insert("web".into(), web_v2.clone());
    assert_eq!(*p.proxy.current_spec(), expected);

    // A bad change is refused with the same errors as a full publish; nothing changes.
    let err = p
        .proxy
        .publish_app("web", Some(&pools(vec![pool("v1", 0, vec![w1.spec()])])))
        .unwrap_err();
    assert!(matches!(err, RouteError::NoTraffic { .. }), "{err}");
    let err = p
        .proxy
        .publish_app("web", Some(&pools(vec![pool("v1", 100, vec![a1.spec()])])))
        .unwrap_err();
    assert!(matches!(err, RouteError::DuplicateBackend { .. }), "{err}");
    let err = p.proxy.publish_app("api", None).unwrap_err();
    assert!(
        matches!(err, RouteError::UnknownApp { .. }) && err.to_string().contains("api"),
        "removing a routed app must be refused: {err}"
    );
    assert_eq!(*p.proxy.current_spec(), expected);
    assert_eq!(version_at("web.test").await, "v2");
    assert_eq!(version_at("api.test").await, "v1");

    // An app without a route can be added and removed again.
    let extra = pools(vec![pool("v1", 100, vec![])]);
    p.proxy.publish_app("extra", Some(&extra)).unwrap();
    expected.apps.insert("extra".into(), extra);
    assert_eq!(*p.proxy.current_spec(), expected);
    // "extra" sorts between "api" and "web": the rebuilt router still finds web.
    assert_eq!(version_at("web.test").await, "v2");
    p.proxy.publish_app("extra", None).unwrap();
    expected.apps.remove("extra");
    assert_eq!(*p.proxy.current_spec(), expected);
    assert_eq!(version_at("api.test").await, "v1");

    // Back to v1 only: w2 is dropped from routing and drains at once (nothing in flight).
    let web_v1 = pools(vec![pool("v1", 100, vec![w1.spec()])]);
    p.proxy.publish_app("web", Some(&web_v1)).unwrap();
    assert_eq!(version_at("web.test").await, "v1");
    let report = p.proxy.drain("w2", std::time::Duration::from_secs(5)).await;
    assert!(report.completed);
    assert_eq!(p.proxy.in_flight("w2"), 0);
}

/// Each deployment of a new version registers its metrics; once the table has not
/// routed a version for the time kept, its metrics go (they would otherwise stay for
/// the life of the process, one set per version ever deployed). A version still
/// routed keeps its counts, and one routed again starts from zero.
#[tokio::test]
async fn metrics_of_versions_no_longer_routed_are_forgotten_after_the_time_kept() {
    let v1 = sample("a1", "v1", None).await;
    let v2 = sample("a2", "v2", None).await;
    let p = start_proxy(ProxyConfig::default()).await;
    p.proxy
        .publish(&table(pools(vec![pool("v1", 100, vec![v1.spec()])])))
        .unwrap();
    assert_eq!(version_of(&get_once(p.addr, "/", &[]).await), "v1");
    p.proxy
        .publish(&table(pools(vec![pool("v2", 100, vec![v2.spec()])])))
        .unwrap();
    assert_eq!(version_of(&get_once(p.addr, "/", &[]).await), "v2");
    let versions = |p: &TestProxy| p.metrics.versions();
    let both = vec![
        (APP.to_string(), "v1".to_string()),
        (APP.to_string(), "v2".to_string()),
    ];
    assert_eq!(versions(&p), both);
    // Kept while the time has not passed (the first call starts v1's clock).
    assert!(p.proxy.retire_metrics(Duration::from_secs(600)).is_empty());
    assert!(p.proxy.retire_metrics(Duration::from_secs(600)).is_empty());
    assert_eq!(versions(&p), both);
    let counted = |p: &TestProxy, v: &str| p.metrics.snapshot(APP, v).map(|s| s.requests);
    assert!(eventually(200, || counted(&p, "v1") == Some(1)).await);
    // Past it: v1 goes, the routed v2 stays with its count.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        p.proxy.retire_metrics(Duration::from_millis(50)),
        vec![(APP.to_string(), "v1".to_string())]
    );
    assert_eq!(versions(&p), vec![(APP.to_string(), "v2".to_string())]);
    assert!(eventually(200, || counted(&p, "v2") == Some(1)).await);
    assert!(p.proxy.retire_metrics(Duration::ZERO).is_empty());
    // Routed again: counted from zero.
    p.proxy
        .publish(&table(pools(vec![pool("v1", 100, vec![v1.spec()])])))
        .unwrap();
    assert_eq!(counted(&p, "v1"), Some(0));
    assert_eq!(version_of(&get_once(p.addr, "/", &[]).await), "v1");
    assert!(eventually(200, || counted(&p, "v1") == Some(1)).await);
}
