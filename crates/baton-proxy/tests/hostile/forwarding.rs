//! `Connection` abuse (Traefik CVE-2024-45410 class) and spoofed `X-Forwarded-For`:
//! whatever a client names in `Connection` is removed, but the proxy's own
//! `X-Forwarded-*` and `X-Request-Id` are set after that, so the backend always sees
//! them; `X-Forwarded-For` is replaced unless the TCP peer is a trusted proxy.

use crate::common::*;
use crate::setup;
use baton_proxy::ProxyConfig;
use http::StatusCode;

#[tokio::test]
async fn connection_cannot_remove_the_forwarding_headers() {
    let (p, backend) = setup(ProxyConfig::default()).await;
    let abuses: [&[(&str, &str)]; 6] = [
        &[("connection", "close, X-Forwarded-For")],
        &[("connection", "X-Real-IP"), ("x-real-ip", "6.6.6.6")],
        &[("connection", "X-Forwarded-Proto, X-Forwarded-Host")],
        &[("connection", "x-request-id")],
        &[
            ("connection", "keep-alive"),
            ("connection", "X-FORWARDED-FOR,x-forwarded-host"),
        ],
        &[("connection", " , ,X-Forwarded-For , ")],
    ];
    for (i, extra) in abuses.iter().enumerate() {
        let mut headers = vec![
            ("host", "site.test"),
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
        ];
        headers.extend_from_slice(extra);
        let answer = get_once(p.addr, "/", &headers).await;
        assert_eq!(answer.0, StatusCode::OK, "abuse {i}");
        let seen = backend.headers();
        assert_eq!(seen["x-forwarded-for"], "127.0.0.1", "abuse {i}: {seen:?}");
        assert_eq!(seen["x-forwarded-proto"], "http", "abuse {i}");
        assert_eq!(seen["x-forwarded-host"], "site.test", "abuse {i}");
        assert!(seen.contains_key("x-request-id"), "abuse {i}");
        assert!(
            !seen.contains_key("connection") || seen["connection"] != "X-Real-IP",
            "abuse {i}"
        );
        assert!(
            !seen.contains_key("x-real-ip"),
            "abuse {i}: a header named in Connection was forwarded"
        );
    }
}

#[tokio::test]
async fn spoofed_x_forwarded_for_is_replaced_unless_the_peer_is_trusted() {
    let backend = counting("c1", "v1", 200).await;
    let spoof: &[(&str, &str)] = &[
        ("x-forwarded-for", "1.2.3.4"),
        ("x-forwarded-for", "5.6.7.8, 9.9.9.9"),
    ];
    let cases = [
        (vec![], "127.0.0.1"),
        (
            vec!["10.0.0.1".parse().unwrap(), "::1".parse().unwrap()],
            "127.0.0.1",
        ),
        (
            vec!["127.0.0.1".parse().unwrap()],
            "1.2.3.4, 5.6.7.8, 9.9.9.9, 127.0.0.1",
        ),
    ];
    for (trusted, want) in cases {
        let p = start_proxy(ProxyConfig {
            trusted_proxies: trusted.clone(),
            ..ProxyConfig::default()
        })
        .await;
        p.proxy
            .publish(&table(pools(vec![pool("v1", 100, vec![backend.spec()])])))
            .unwrap();
        get_once(p.addr, "/", spoof).await;
        assert_eq!(
            backend.headers()["x-forwarded-for"],
            want,
            "trusted {trusted:?}, HTTP/1.1"
        );
        let mut c = h2(p.addr).await;
        try_send_h2(&mut c, request("GET", "/", spoof, ""), p.addr)
            .await
            .unwrap();
        assert_eq!(
            backend.headers()["x-forwarded-for"],
            want,
            "trusted {trusted:?}, HTTP/2"
        );
    }
}
