//! Version selection: weighted draws match the weights (chi-square), hashed keys are
//! sticky and a canary keeps its users as it grows; cookie stickiness and match rules
//! end to end.

use crate::common::*;
use baton_core::{HumanDuration, MatchSpec, RuleSpec, StickySpec, ValueMatch};
use baton_proxy::select::Weights;
use baton_proxy::ProxyConfig;

/// Chi-square critical values at p = 0.001 by degrees of freedom (1..=4).
const CRITICAL: [f64; 5] = [0.0, 10.828, 13.816, 16.266, 18.467];

fn chi_square(weights: &[u32], counts: &[u64]) -> (f64, usize) {
    let n: u64 = counts.iter().sum();
    let total: u32 = weights.iter().sum();
    let mut chi = 0.0;
    let mut categories = 0;
    for (w, c) in weights.iter().zip(counts) {
        if *w == 0 {
            assert_eq!(*c, 0, "a pool with weight 0 was drawn");
            continue;
        }
        let expected = n as f64 * f64::from(*w) / f64::from(total);
        chi += (*c as f64 - expected).powi(2) / expected;
        categories += 1;
    }
    (chi, categories - 1)
}

#[test]
fn weighted_draws_match_the_weights() {
    for (seed, weights) in [
        (1, vec![10, 30, 0, 60]),
        (2, vec![1, 99]),
        (3, vec![5, 5, 5, 5, 80]),
        (4, vec![0, 7, 3]),
    ] {
        let table = Weights::new(&weights);
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut counts = vec![0u64; weights.len()];
        for _ in 0..200_000 {
            counts[table.pick_random(&mut rng).unwrap()] += 1;
        }
        let (chi, df) = chi_square(&weights, &counts);
        assert!(
            chi < CRITICAL[df],
            "weights {weights:?}: chi² {chi:.2} with {df} df, counts {counts:?}"
        );
    }
    assert_eq!(
        Weights::new(&[0, 0]).pick_random(&mut fastrand::Rng::new()),
        None
    );
}

#[test]
fn hashed_keys_split_like_the_weights() {
    for weights in [vec![10, 90], vec![25, 25, 50]] {
        let table = Weights::new(&weights);
        let mut counts = vec![0u64; weights.len()];
        for i in 0..100_000 {
            counts[table.pick_hash(format!("user-{i}").as_bytes()).unwrap()] += 1;
        }
        let (chi, df) = chi_square(&weights, &counts);
        assert!(
            chi < CRITICAL[df],
            "weights {weights:?}: chi² {chi:.2}, counts {counts:?}"
        );
    }
}

#[test]
fn a_key_keeps_its_version_and_canary_keys_stay_as_the_canary_grows() {
    let keys: Vec<String> = (0..20_000).map(|i| format!("session-{i:x}")).collect();
    let start = Weights::new(&[10, 90]);
    let on_canary: Vec<&String> = keys
        .iter()
        .filter(|k| start.pick_hash(k.as_bytes()) == Some(0))
        .collect();
    assert!(
        on_canary.len() > 1500,
        "{} keys on the canary",
        on_canary.len()
    );
    for k in &keys {
        let first = start.pick_hash(k.as_bytes());
        assert_eq!(
            start.pick_hash(k.as_bytes()),
            first,
            "{k} moved at fixed weights"
        );
    }
    for grown in [[20, 80], [50, 50], [90, 10], [20, 100], [95, 5]] {
        let table = Weights::new(&grown);
        for k in &on_canary {
            assert_eq!(
                table.pick_hash(k.as_bytes()),
                Some(0),
                "{k} left the canary at {grown:?}"
            );
        }
    }
    let three = Weights::new(&[10, 45, 45]);
    let grown = Weights::new(&[40, 30, 30]);
    for k in &keys {
        if three.pick_hash(k.as_bytes()) == Some(0) {
            assert_eq!(grown.pick_hash(k.as_bytes()), Some(0));
        }
    }
}

#[tokio::test]
async fn the_sticky_cookie_keeps_a_client_on_its_version() {
    let (a, b) = (
        sample("a1", "v1", None).await,
        sample("b1", "v2", None).await,
    );
    let p = start_proxy(ProxyConfig::default()).await;
    let mut app = pools(vec![
        pool("v2", 50, vec![b.spec()]),
        pool("v1", 50, vec![a.spec()]),
    ]);
    app.sticky = Some(StickySpec::Cookie {
        name: "bv".into(),
        max_age: HumanDuration::from_secs(3600),
    });
    p.proxy.publish(&table(app.clone())).unwrap();

    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let first = get_once(p.addr, "/", &[]).await;
        let version = version_of(&first);
        let cookie = first.1["set-cookie"].to_str().unwrap().to_string();
        assert_eq!(
            cookie,
            format!("bv={version}; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax")
        );
        let mut c = h1(p.addr).await;
        for _ in 0..10 {
            let req = request("GET", "/", &[("cookie", &format!("a=1; bv={version}"))], "");
            let again = try_send(&mut c, req).await.unwrap();
            assert_eq!(version_of(&again), version);
            assert!(!again.1.contains_key("set-cookie"));
        }
        seen.insert(version);
    }
    assert_eq!(
        seen.len(),
        2,
        "20 new clients all got the same version of a 50/50 split"
    );

    let unknown = get_once(p.addr, "/", &[("cookie", "bv=v9")]).await;
    assert!(unknown.1["set-cookie"]
        .to_str()
        .unwrap()
        .starts_with("bv=v"));
    // A version that lost all its weight no longer keeps its clients.
    app.pools[0].weight = 0;
    p.proxy.publish(&table(app)).unwrap();
    let moved = get_once(p.addr, "/", &[("cookie", "bv=v2")]).await;
    assert_eq!(version_of(&moved), "v1");
    assert!(moved.1["set-cookie"]
        .to_str()
        .unwrap()
        .starts_with("bv=v1;"));
}

#[tokio::test]
async fn a_hashed_header_keeps_users_on_their_version_as_the_canary_grows() {
    let (a, b) = (
        sample("a1", "v1", None).await,
        sample("b1", "v2", None).await,
    );
    let p = start_proxy(ProxyConfig::default()).await;
    let app = |canary| {
        let mut app = pools(vec![
            pool("v2", canary, vec![b.spec()]),
            pool("v1", 100 - canary, vec![a.spec()]),
        ]);
        app.sticky = Some(StickySpec::Header {
            name: "x-user".into(),
        });
        table(app)
    };
    p.proxy.publish(&app(30)).unwrap();
    let mut c = h1(p.addr).await;
    let mut canary_users = Vec::new();
    for user in 0..60 {
        let id = format!("user-{user}");
        let mut versions = std::collections::BTreeSet::new();
        for _ in 0..5 {
            let answer = try_send(&mut c, request("GET", "/", &[("x-user", &id)], ""))
                .await
                .unwrap();
            versions.insert(version_of(&answer));
        }
        assert_eq!(versions.len(), 1, "{id} flipped between {versions:?}");
        if versions.contains("v2") {
            canary_users.push(id);
        }
    }
    assert!(!canary_users.is_empty());
    p.proxy.publish(&app(60)).unwrap();
    for id in &canary_users {
        let answer = try_send(&mut c, request("GET", "/", &[("x-user", id)], ""))
            .await
            .unwrap();
        assert_eq!(
            version_of(&answer),
            "v2",
            "{id} left the canary when it grew"
        );
    }
}

#[tokio::test]
async fn match_rules_pick_their_version_before_weights() {
    let (a, b) = (
        sample("a1", "v1", None).await,
        sample("b1", "v2", None).await,
    );
    let p = start_proxy(ProxyConfig::default()).await;
    let mut app = pools(vec![
        pool("v1", 100, vec![a.spec()]),
        pool("v2", 0, vec![b.spec()]),
    ]);
    let rule = |matcher| RuleSpec {
        matcher,
        version: "v2".into(),
    };
    app.rules = vec![
        rule(MatchSpec::Header {
            name: "X-Role".into(),
            value: ValueMatch::Exact("admin".into()),
        }),
        rule(MatchSpec::Cookie {
            name: "beta".into(),
            value: ValueMatch::Regex("^(yes|true)$".into()),
        }),
        rule(MatchSpec::Query {
            name: "canary".into(),
            value: ValueMatch::Present,
        }),
    ];
    p.proxy.publish(&table(app)).unwrap();
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 7] = [
        ("/", &[("x-role", "admin")], "v2"),
        ("/", &[("x-role", "user")], "v1"),
        ("/", &[("cookie", "x=1; beta=true")], "v2"),
        ("/", &[("cookie", "beta=truely")], "v1"),
        ("/?a=1&canary", &[], "v2"),
        ("/?canaryx=1", &[], "v1"),
        ("/", &[], "v1"),
    ];
    let mut c1 = h1(p.addr).await;
    let mut c2 = h2(p.addr).await;
    for (path, headers, want) in cases {
        let answer = try_send(&mut c1, request("GET", path, headers, ""))
            .await
            .unwrap();
        assert_eq!(version_of(&answer), want, "HTTP/1.1 {path} {headers:?}");
        let answer = try_send_h2(&mut c2, request("GET", path, headers, ""), p.addr)
            .await
            .unwrap();
        assert_eq!(version_of(&answer), want, "HTTP/2 {path} {headers:?}");
    }
}

#[tokio::test]
async fn a_pool_sends_new_requests_to_the_least_busy_backend() {
    let (a, b) = (
        sample("a1", "v1", None).await,
        sample("a2", "v1", None).await,
    );
    let p = start_proxy(ProxyConfig::default()).await;
    p.proxy
        .publish(&table(pools(vec![pool(
            "v1",
            100,
            vec![a.spec(), b.spec()],
        )])))
        .unwrap();
    let addr = p.addr;
    let mut slow = Vec::new();
    for started in 1..=6u64 {
        slow.push(tokio::spawn(async move {
            get_once(addr, "/slow?ms=1000", &[]).await
        }));
        let total = || p.proxy.in_flight("a1") + p.proxy.in_flight("a2");
        assert!(eventually(300, || total() == started).await);
        let (x, y) = (p.proxy.in_flight("a1"), p.proxy.in_flight("a2"));
        assert!(x.abs_diff(y) <= 1, "unbalanced: a1 {x}, a2 {y}");
    }
    for t in slow {
        assert_eq!(t.await.unwrap().0, http::StatusCode::OK);
    }
    let v1 = p.metrics.snapshot(APP, "v1").unwrap();
    assert_eq!((v1.requests, v1.in_flight), (6, 0));
}

#[tokio::test]
async fn per_version_metrics_count_statuses_and_body_bytes() {
    let a = sample("a1", "v1", None).await;
    let p = start_proxy(ProxyConfig::default()).await;
    p.proxy
        .publish(&table(pools(vec![pool("v1", 100, vec![a.spec()])])))
        .unwrap();
    let mut c = h1(p.addr).await;
    let ok = try_send(&mut c, request("POST", "/write", &[], "0123456789"))
        .await
        .unwrap();
    let root = try_send(&mut c, request("GET", "/", &[], ""))
        .await
        .unwrap();
    let missing = try_send(&mut c, request("GET", "/nope", &[], ""))
        .await
        .unwrap();
    let m = p.metrics.snapshot(APP, "v1").unwrap();
    assert_eq!(m.requests, 3);
    assert_eq!(m.by_class[2], 2);
    assert_eq!(m.by_class[4], 1, "{:?}", missing.0);
    assert_eq!(m.bytes_in, 10);
    let out = ok.2.len() + root.2.len() + missing.2.len();
    assert_eq!(m.bytes_out, out as u64);
}
