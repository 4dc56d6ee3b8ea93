//! The route table as data: what the controller asks the data plane to do. The proxy
//! validates and compiles a `RouteTableSpec` into its own lock-free snapshot; a spec that
//! does not compile is rejected whole and the previous snapshot keeps serving.

use crate::HumanDuration;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// Everything the proxy routes, published as one unit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RouteTableSpec {
    /// Host + path-prefix routes to apps. Matching: exact host beats `*.suffix` wildcard,
    /// which beats a route with no host; within those, the longest path prefix wins.
    pub routes: Vec<RouteSpec>,
    /// Per-app traffic split, keyed by app name.
    pub apps: BTreeMap<String, AppRouteSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteSpec {
    /// `None` matches any host; `"example.com"` exactly; `"*.example.com"` any subdomain.
    pub host: Option<String>,
    /// Path prefix, e.g. `"/"` or `"/api"`. A prefix matches at segment boundaries
    /// (`/api` matches `/api` and `/api/x`, not `/apix`).
    pub path_prefix: String,
    pub app: String,
}

/// How one app's traffic is split between its versions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AppRouteSpec {
    /// Version pools. Order matters for hash stickiness: the first pool owns the lowest
    /// hash range, so a canary listed first keeps its users as its weight grows.
    pub pools: Vec<PoolSpec>,
    /// Evaluated in order before weights; the first match picks its version.
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
    #[serde(default)]
    pub sticky: Option<StickySpec>,
    /// When set and no pool has a ready backend, requests wait (bounded) instead of
    /// failing: the recreate strategy's restart gap.
    #[serde(default)]
    pub hold: Option<HoldSpec>,
    /// `Upgrade` protocols forwarded besides WebSocket (names compared without case;
    /// `h2c` is never forwarded, whatever this says).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upgrade_protocols: Vec<String>,
    /// What the proxy does with request header names containing `_`.
    #[serde(default)]
    pub underscores_in_headers: UnderscoreHeaders,
}

/// `underscores_in_headers`: request header names with `_` are dropped (the default,
/// like nginx) or forwarded. Forwarded ones never include a name that, with `_` read
/// as `-`, is a header the proxy sets or a framing header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnderscoreHeaders {
    #[default]
    Drop,
    Forward,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolSpec {
    pub version: String,
    /// Relative integer weight; 0 means "reachable only by rule or sticky cookie".
    pub weight: u32,
    pub backends: Vec<BackendSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BackendSpec {
    /// Stable identity of the instance (the controller's instance id). The proxy keys
    /// its per-backend state (pool, in-flight count, drain) by it.
    pub id: String,
    pub addr: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleSpec {
    #[serde(rename = "match")]
    pub matcher: MatchSpec,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum MatchSpec {
    Header { name: String, value: ValueMatch },
    Cookie { name: String, value: ValueMatch },
    Query { name: String, value: ValueMatch },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueMatch {
    Exact(String),
    Regex(String),
    /// The header / cookie / parameter is present with any value.
    Present,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum StickySpec {
    /// The proxy sets a cookie naming the version that served the client.
    Cookie {
        name: String,
        max_age: HumanDuration,
    },
    /// A hash of this header's value picks the version (e.g. a user id header).
    Header { name: String },
    /// A hash of this cookie's value picks the version (e.g. a session cookie).
    HashCookie { name: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HoldSpec {
    pub timeout: HumanDuration,
    /// At most this many requests wait at once; more get 503 at once.
    pub max_requests: usize,
}

impl Default for HoldSpec {
    fn default() -> Self {
        HoldSpec {
            timeout: HumanDuration::from_secs(30),
            max_requests: 10_000,
        }
    }
}

impl AppRouteSpec {
    /// One version taking all traffic.
    pub fn single(version: &str, backends: Vec<BackendSpec>) -> Self {
        AppRouteSpec {
            pools: vec![PoolSpec {
                version: version.to_string(),
                weight: 100,
                backends,
            }],
            ..Default::default()
        }
    }
}
