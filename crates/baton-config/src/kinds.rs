//! Small enumerations written as strings in `baton.toml`: the runtime, the strategy and
//! the admin listener.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

/// Which driver runs an app's instances (`runtime = "process"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeKind {
    /// baton starts `command` itself (the default).
    #[default]
    Process,
    /// Instances run elsewhere; `baton deploy --target HOST:PORT` names them.
    Static,
    /// Docker containers on one engine.
    Docker,
    /// Docker Swarm services: parsed so that the error can name it, and refused by
    /// validation (so by `baton validate` and `baton serve`) until a driver exists.
    Swarm,
}

/// How a deployment moves traffic (`strategy = "canary"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StrategyKind {
    Recreate,
    BlueGreen,
    /// The default.
    #[default]
    Rolling,
    Canary,
    AbTest,
}

// === impl RuntimeKind ===

impl RuntimeKind {
    pub const ALL: [RuntimeKind; 4] = [
        RuntimeKind::Process,
        RuntimeKind::Static,
        RuntimeKind::Docker,
        RuntimeKind::Swarm,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeKind::Process => "process",
            RuntimeKind::Static => "static",
            RuntimeKind::Docker => "docker",
            RuntimeKind::Swarm => "swarm",
        }
    }
}

impl fmt::Display for RuntimeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RuntimeKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RuntimeKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown runtime {s:?}: use process, static or docker"))
    }
}

// === impl StrategyKind ===

impl StrategyKind {
    pub const ALL: [StrategyKind; 5] = [
        StrategyKind::Recreate,
        StrategyKind::BlueGreen,
        StrategyKind::Rolling,
        StrategyKind::Canary,
        StrategyKind::AbTest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StrategyKind::Recreate => "recreate",
            StrategyKind::BlueGreen => "blue_green",
            StrategyKind::Rolling => "rolling",
            StrategyKind::Canary => "canary",
            StrategyKind::AbTest => "ab_test",
        }
    }
}

impl fmt::Display for StrategyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StrategyKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StrategyKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown strategy {s:?}: use recreate, blue_green, rolling, canary or ab_test"
                )
            })
    }
}

/// Where the admin API listens: `"unix:PATH"` (the default, `unix:.baton/baton.sock`) or
/// `"HOST:PORT"` with an IP address (TCP, which requires `token_file`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AdminListen {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

// === impl AdminListen ===

impl Default for AdminListen {
    fn default() -> Self {
        AdminListen::Unix(PathBuf::from(".baton/baton.sock"))
    }
}

impl fmt::Display for AdminListen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminListen::Unix(path) => write!(f, "unix:{}", path.display()),
            AdminListen::Tcp(addr) => write!(f, "{addr}"),
        }
    }
}

impl FromStr for AdminListen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("`unix:` needs a socket path, e.g. \"unix:.baton/baton.sock\"".into());
            }
            return Ok(AdminListen::Unix(PathBuf::from(path)));
        }
        s.parse().map(AdminListen::Tcp).map_err(|_| {
            format!(
                "invalid admin listen address {s:?}: write \"unix:PATH\" or \"IP:PORT\" \
                 (e.g. \"unix:.baton/baton.sock\" or \"127.0.0.1:9901\")"
            )
        })
    }
}

impl Serialize for AdminListen {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AdminListen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_names() {
        for k in StrategyKind::ALL {
            assert_eq!(k.as_str().parse::<StrategyKind>(), Ok(k));
        }
        for k in RuntimeKind::ALL {
            assert_eq!(k.to_string().parse::<RuntimeKind>(), Ok(k));
        }
        assert!("canery".parse::<StrategyKind>().is_err());
    }

    #[test]
    fn admin_listen_parses_unix_and_tcp() {
        assert_eq!(
            "unix:/run/b.sock".parse::<AdminListen>(),
            Ok(AdminListen::Unix("/run/b.sock".into()))
        );
        let tcp: AdminListen = "127.0.0.1:9901".parse().unwrap();
        assert_eq!(tcp.to_string(), "127.0.0.1:9901");
        assert!("localhost:9901".parse::<AdminListen>().is_err());
        assert!("unix:".parse::<AdminListen>().is_err());
    }
}
