//! Choosing where a request goes inside an app: match rules first, then stickiness, then
//! weights; and inside a version's pool, least outstanding requests by power of two
//! choices. The weighted and hashed draws are pure functions so tests can drive them
//! with a seeded RNG.

use crate::backend::Backend;
use crate::snapshot::{CompiledApp, CompiledSticky, Matcher, ValueMatcher};
use http::request::Parts;
use http::HeaderMap;
use std::sync::Arc;

/// Integer weights as cumulative bounds: pool `i` owns the points `[cum[i-1], cum[i])`,
/// so pools keep the order they were given in and a weight of 0 owns nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Weights {
    cumulative: Vec<u64>,
}

impl Weights {
    pub fn new(weights: &[u32]) -> Weights {
        let mut sum = 0u64;
        let cumulative = weights
            .iter()
            .map(|w| {
                sum += u64::from(*w);
                sum
            })
            .collect();
        Weights { cumulative }
    }

    /// Sum of all weights; 0 means no pool takes weighted traffic.
    pub fn total(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    /// The pool owning `point`, which must be below `total()`.
    pub fn pick(&self, point: u64) -> Option<usize> {
        let i = self.cumulative.partition_point(|c| *c <= point);
        (i < self.cumulative.len()).then_some(i)
    }

    /// A weighted random draw.
    pub fn pick_random(&self, rng: &mut fastrand::Rng) -> Option<usize> {
        match self.total() {
            0 => None,
            total => self.pick(rng.u64(..total)),
        }
    }

    /// The weight of pool `i` (0 past the end).
    pub fn weight(&self, i: usize) -> u64 {
        let below = i.checked_sub(1).map_or(0, |j| self.cumulative[j]);
        self.cumulative.get(i).map_or(0, |c| c - below)
    }

    /// A weighted random draw from the thread-local generator (request path).
    pub(crate) fn pick_random_local(&self) -> Option<usize> {
        match self.total() {
            0 => None,
            total => self.pick(fastrand::u64(..total)),
        }
    }

    /// The pool a sticky key belongs to. The key's hash is a fixed fraction of the whole
    /// range, so at fixed weights a key always lands on the same pool, and a key in the
    /// first pool stays there as long as that pool's share does not shrink.
    pub fn pick_hash(&self, key: &[u8]) -> Option<usize> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let point = (u64::from(key_hash(key)) * total) >> 32;
        self.pick(point)
    }
}

/// FNV-1a 32 followed by the murmur3 finaliser, so that short keys that differ in one
/// character still spread over the whole 32-bit range.
pub fn key_hash(key: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in key {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// The version chosen for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Choice {
    pub pool: usize,
    /// Sticky-cookie mode: the client has no valid cookie, so the response sets one.
    pub set_cookie: bool,
}

/// Rules, then stickiness, then weights. `None`: no pool with a ready backend takes
/// this request (the caller holds it or answers 503).
pub(crate) fn choose_pool(app: &CompiledApp, req: &Parts) -> Option<Choice> {
    for rule in &app.rules {
        if rule.matcher.matches(req) && app.pools[rule.pool].has_backends() {
            return Some(Choice {
                pool: rule.pool,
                set_cookie: false,
            });
        }
    }
    match &app.sticky {
        None => weighted(app, false),
        Some(CompiledSticky::Cookie { name }) => {
            let kept = cookie(&req.headers, name).and_then(|v| {
                app.pools
                    .iter()
                    .position(|p| p.version.as_bytes() == v && p.sticky_ok && p.has_backends())
            });
            match kept {
                Some(pool) => Some(Choice {
                    pool,
                    set_cookie: false,
                }),
                None => weighted(app, true),
            }
        }
        Some(CompiledSticky::Header(name)) => match req.headers.get(name) {
            Some(v) => hashed(app, v.as_bytes()),
            None => weighted(app, false),
        },
        Some(CompiledSticky::HashCookie(name)) => match cookie(&req.headers, name) {
            Some(v) => hashed(app, v),
            None => weighted(app, false),
        },
    }
}

/// Another version for a request that no backend of version `not` accepted (their
/// connects failed, so nothing reached them): a weighted draw among the app's other
/// versions that have backends, else the first of them (all at weight 0: the old
/// version of a switch, still serving while it drains). None when there is no other.
pub(crate) fn other_pool(app: &CompiledApp, not: &str, rng: &mut fastrand::Rng) -> Option<Choice> {
    let others = || {
        app.pools
            .iter()
            .enumerate()
            .filter(|(_, p)| p.version.as_ref() != not && p.has_backends())
            .map(|(i, _)| i)
    };
    let total: u64 = others().map(|i| app.weights.weight(i)).sum();
    let pool = if total > 0 {
        let mut point = rng.u64(..total);
        others().find(|&i| {
            let w = app.weights.weight(i);
            let here = point < w;
            point = point.saturating_sub(w);
            here
        })
    } else {
        others().next()
    }?;
    Some(Choice {
        pool,
        set_cookie: false,
    })
}

fn weighted(app: &CompiledApp, set_cookie: bool) -> Option<Choice> {
    let pool = app.weights.pick_random_local()?;
    Some(Choice { pool, set_cookie })
}

fn hashed(app: &CompiledApp, key: &[u8]) -> Option<Choice> {
    let pool = app.weights.pick_hash(key)?;
    Some(Choice {
        pool,
        set_cookie: false,
    })
}

impl Matcher {
    pub(crate) fn matches(&self, req: &Parts) -> bool {
        match self {
            Matcher::Header(name, value) => req
                .headers
                .get_all(name)
                .iter()
                .any(|v| value.matches(v.as_bytes())),
            Matcher::Cookie(name, value) => {
                cookie(&req.headers, name).is_some_and(|v| value.matches(v))
            }
            Matcher::Query(name, value) => query_param(req.uri.query(), name, value),
        }
    }
}

impl ValueMatcher {
    fn matches(&self, value: &[u8]) -> bool {
        match self {
            ValueMatcher::Exact(want) => want.as_bytes() == value,
            ValueMatcher::Regex(re) => re.is_match(value),
            ValueMatcher::Present => true,
        }
    }
}

/// The value of the first cookie called `name` in any `Cookie` header.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|h| h.as_bytes().split(|b| *b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|b| *b == b'=')?;
            (pair[..eq].trim_ascii() == name.as_bytes()).then(|| {
                let v = pair[eq + 1..].trim_ascii();
                v.strip_prefix(b"\"")
                    .and_then(|v| v.strip_suffix(b"\""))
                    .unwrap_or(v)
            })
        })
}

fn query_param(query: Option<&str>, name: &str, value: &ValueMatcher) -> bool {
    let Some(query) = query else { return false };
    query.split('&').any(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k != name {
            return false;
        }
        if v.contains(['%', '+']) {
            value.matches(&percent_decode(v.as_bytes()))
        } else {
            value.matches(v.as_bytes())
        }
    })
}

fn percent_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        let hex = |c: u8| (c as char).to_digit(16);
        match b {
            b'+' => out.push(b' '),
            b'%' if i + 2 < input.len() => match (hex(input[i + 1]), hex(input[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b),
            },
            _ => out.push(b),
        }
        i += 1;
    }
    out
}

/// Least outstanding requests by power of two choices over the backends that are
/// neither ejected nor removed, skipping `exclude`. Falls back to ejected backends only
/// when nothing else is left.
pub(crate) fn pick_backend<'a>(
    backends: &'a [Arc<Backend>],
    exclude: Option<&Arc<Backend>>,
) -> Option<&'a Arc<Backend>> {
    let usable = |b: &Arc<Backend>| !b.is_removed() && exclude.is_none_or(|e| !Arc::ptr_eq(e, b));
    let eligible = |b: &Arc<Backend>| usable(b) && !b.is_ejected();
    let n = backends.len();
    match n {
        0 => return None,
        1 => return backends.first().filter(|b| usable(b)),
        _ => {}
    }
    let i = fastrand::usize(..n);
    let mut j = fastrand::usize(..n - 1);
    if j >= i {
        j += 1;
    }
    let (a, b) = (&backends[i], &backends[j]);
    match (eligible(a), eligible(b)) {
        (true, true) if b.in_flight() < a.in_flight() => Some(b),
        (true, _) => Some(a),
        (false, true) => Some(b),
        (false, false) => {
            let start = fastrand::usize(..n);
            let ring = || (0..n).map(|k| &backends[(start + k) % n]);
            ring()
                .find(|b| eligible(b))
                .or_else(|| ring().find(|b| usable(b)))
        }
    }
}
