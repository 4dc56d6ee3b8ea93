//! Route tables built from structured arbitrary input (hosts, wildcards, prefixes,
//! pools, weights, header/cookie/query rules, stickiness), published in sequence
//! through the real proxy, then one arbitrary request routed. Never a panic, and a
//! request is only ever sent to a pool that has backends.
#![no_main]

use arbitrary::Arbitrary;
use baton_core::{
    AppRouteSpec, BackendSpec, HoldSpec, HumanDuration, MatchSpec, PoolSpec, RouteSpec,
    RouteTableSpec, RuleSpec, StickySpec, ValueMatch,
};
use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;

const APPS: [&str; 3] = ["web", "api", "a-b"];
const HOSTS: [&str; 5] = [
    "example.com",
    "*.example.com",
    "a.b.example.com",
    "[::1]",
    "Ex.Org",
];
const VERSIONS: [&str; 3] = ["v1", "v2", "canary"];
const NAMES: [&str; 4] = ["x-user", "cookie", "baton-version", "q"];

/// A name from a small vocabulary (so tables cross-reference), or anything at all.
#[derive(Arbitrary, Debug)]
enum Pick {
    Known(u8),
    Any(String),
}

impl Pick {
    fn get(&self, vocab: &[&str]) -> String {
        match self {
            Pick::Known(i) => vocab[usize::from(*i) % vocab.len()].to_string(),
            Pick::Any(s) => s.clone(),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    tables: Vec<Table>,
    host: Option<Pick>,
    port: Option<u16>,
    path: String,
    query: Option<String>,
    headers: Vec<(Pick, String)>,
}

#[derive(Arbitrary, Debug)]
struct Table {
    routes: Vec<(Option<Pick>, Pick, Pick)>,
    apps: Vec<(Pick, App)>,
}

#[derive(Arbitrary, Debug)]
struct App {
    pools: Vec<(Pick, u32, Vec<(u8, u16)>)>,
    rules: Vec<(u8, Pick, Value, Pick)>,
    sticky: Option<(u8, Pick)>,
    hold: bool,
}

#[derive(Arbitrary, Debug)]
enum Value {
    Exact(String),
    Regex(String),
    Present,
}

fn prefix(p: &Pick) -> String {
    match p {
        Pick::Known(i) => ["/", "/api", "/api/", "/a/b"][usize::from(*i) % 4].to_string(),
        Pick::Any(s) => s.clone(),
    }
}

fn table(t: &Table) -> RouteTableSpec {
    let mut spec = RouteTableSpec::default();
    for (host, path, app) in t.routes.iter().take(16) {
        spec.routes.push(RouteSpec {
            host: host.as_ref().map(|h| h.get(&HOSTS)),
            path_prefix: prefix(path),
            app: app.get(&APPS),
        });
    }
    for (name, app) in t.apps.iter().take(4) {
        spec.apps.insert(name.get(&APPS), app_spec(app));
    }
    spec
}

fn app_spec(a: &App) -> AppRouteSpec {
    let pools = a
        .pools
        .iter()
        .take(4)
        .map(|(version, weight, backends)| PoolSpec {
            version: version.get(&VERSIONS),
            weight: *weight,
            backends: backends
                .iter()
                .take(4)
                .map(|(id, port)| BackendSpec {
                    id: format!("b{id}"),
                    addr: SocketAddr::from(([127, 0, 0, 1], *port)),
                })
                .collect(),
        })
        .collect();
    let rules = a
        .rules
        .iter()
        .take(4)
        .map(|(kind, name, value, version)| {
            let name = name.get(&NAMES);
            let value = match value {
                Value::Exact(s) => ValueMatch::Exact(s.clone()),
                // Keep regexes small: compiling huge ones only measures the regex crate.
                Value::Regex(s) => ValueMatch::Regex(s.chars().take(32).collect()),
                Value::Present => ValueMatch::Present,
            };
            let matcher = match kind % 3 {
                0 => MatchSpec::Header { name, value },
                1 => MatchSpec::Cookie { name, value },
                _ => MatchSpec::Query { name, value },
            };
            RuleSpec {
                matcher,
                version: version.get(&VERSIONS),
            }
        })
        .collect();
    let sticky = a.sticky.as_ref().map(|(kind, name)| {
        let name = name.get(&NAMES);
        match kind % 3 {
            0 => StickySpec::Cookie {
                name,
                max_age: HumanDuration::from_secs(60),
            },
            1 => StickySpec::Header { name },
            _ => StickySpec::HashCookie { name },
        }
    });
    AppRouteSpec {
        pools,
        rules,
        sticky,
        hold: a.hold.then(HoldSpec::default),
        ..AppRouteSpec::default()
    }
}

fn request(input: &Input) -> Option<http::request::Parts> {
    let mut uri = input.path.clone();
    if let Some(q) = &input.query {
        uri.push('?');
        uri.push_str(q);
    }
    let mut b = http::Request::builder().uri(uri.parse::<http::Uri>().ok()?);
    if let Some(host) = &input.host {
        let mut host = host.get(&HOSTS).replace("*.", "x.");
        if let Some(port) = input.port {
            host.push_str(&format!(":{port}"));
        }
        b = b.header(http::header::HOST, host);
    }
    for (name, value) in input.headers.iter().take(8) {
        b = b.header(name.get(&NAMES), value.as_str());
    }
    Some(b.body(()).ok()?.into_parts().0)
}

fuzz_target!(|input: Input| {
    let Some(parts) = request(&input) else {
        return;
    };
    let tables: Vec<RouteTableSpec> = input.tables.iter().take(3).map(table).collect();
    if let Some((app, _version)) = baton_proxy::fuzzing::fuzz_route(&tables, &parts) {
        assert!(
            tables.iter().any(|t| t.apps.contains_key(&app)),
            "routed to unknown app {app:?}"
        );
    }
});
