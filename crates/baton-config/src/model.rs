//! The typed configuration: every section of `baton.toml` with its defaults. Paths in a
//! loaded `Config` are already resolved against the directory of the file.

use crate::hooks::HooksConfig;
use crate::kinds::{AdminListen, RuntimeKind, StrategyKind};
use crate::strategy;
use baton_analysis::AnalysisSpec;
use baton_core::{HealthSpec, HumanDuration, PortRange, UnderscoreHeaders};
use baton_rollout::spec::{AbTestSpec, BlueGreenSpec, CanarySpec, RecreateSpec, RollingSpec};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// How an app's hosts get their certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppTls {
    /// From the ACME CA of `[proxy.tls.acme]`.
    Acme,
}

/// A loaded and validated `baton.toml`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// The file it was read from, as given.
    pub path: PathBuf,
    /// The directory of the file (absolute); relative paths in the file resolve against it.
    pub base_dir: PathBuf,
    pub proxy: ProxySection,
    pub admin: AdminSection,
    /// The web dashboard, when the file has a `[dashboard]` section.
    pub dashboard: Option<DashboardSection>,
    /// baton on several nodes, when the file has a `[cluster]` section.
    pub cluster: Option<ClusterSection>,
    pub store: StoreSection,
    /// Apps by name (names are checked with `baton_core::validate_app_name`).
    pub apps: BTreeMap<String, AppConfig>,
    /// Where each key is written, for problems found after loading (certificate files).
    #[serde(skip)]
    pub places: crate::locate::Places,
}

/// `[proxy]`: the data plane's listeners and limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxySection {
    /// Addresses clients connect to. Default `["127.0.0.1:8080"]`.
    pub listen: Vec<SocketAddr>,
    /// Peers whose `X-Forwarded-For` is extended rather than replaced.
    pub trusted_proxies: Vec<IpAddr>,
    /// TCP connect to an instance. Default 3s.
    pub connect_timeout: HumanDuration,
    /// From forwarding a request to the instance's response head. Default 60s.
    pub upstream_header_timeout: HumanDuration,
    /// A client's request head must arrive within this. Default 10s.
    pub client_header_timeout: HumanDuration,
    /// An idle client connection is closed after this. Default 60s.
    pub client_idle_timeout: HumanDuration,
    /// Largest request head accepted (431 beyond). Default 64 KiB.
    pub max_header_bytes: usize,
    /// Largest request body accepted (413 beyond), e.g. `"10MiB"`. Default: no limit,
    /// as HAProxy and kamal-proxy (nginx's `client_max_body_size` defaults to 1m).
    pub max_request_body: Option<String>,
    /// How much of a request body is read before an instance is chosen, so a slow
    /// client holds no instance connection while sending it, e.g. `"1MiB"` (the
    /// default), or `"off"` to stream every body at once (docs/SECURITY.md).
    pub request_buffering: String,
    /// The longest a client may pause while sending a request body (408 beyond; a
    /// body already streaming to the instance is aborted). Default 60s, as nginx's
    /// `client_body_timeout`.
    pub body_read_timeout: HumanDuration,
    /// Threads serving traffic. Default 0 = one per CPU core; `1` makes baton a single
    /// event loop (traffic and control plane), like one nginx or HAProxy worker. With
    /// more than one, each worker is a thread with an event loop of its own that
    /// accepts on every listener, keeps each connection it accepted, and keeps its own
    /// idle upstream connections, like nginx's worker processes; the control plane
    /// has a thread of its own.
    pub workers: usize,
    /// `[proxy.access_log]`: one line per request. Absent = no access log.
    pub access_log: Option<AccessLogSection>,
    /// `[proxy.compression]`: gzip / brotli for text responses. Absent = off.
    pub compression: Option<CompressionSection>,
    /// HTTPS addresses: TLS (1.2, 1.3), then HTTP/1.1 or h2 as ALPN chose. Default none.
    pub tls_listen: Vec<SocketAddr>,
    /// `[proxy.tls]`: certificates, the redirect from HTTP, HSTS.
    pub tls: TlsSection,
}

/// `[proxy.tls]`: what the `tls_listen` listeners serve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    /// `[[proxy.tls.certificates]]`: PEM files, chosen by SNI.
    pub certificates: Vec<CertificateSection>,
    /// The host whose certificate answers a client that sends no SNI or an unknown
    /// name. Absent: such handshakes fail (`unrecognized_name`), as a clean refusal.
    pub default_host: Option<String>,
    /// Requests on the `listen` (HTTP) listeners get `308` to `https://` (ACME
    /// HTTP-01 challenges excepted). Default true when there is a `tls_listen`.
    pub redirect_http: bool,
    /// `Strict-Transport-Security: max-age=…` on every HTTPS response, e.g. `"365d"`.
    /// Absent: no HSTS header (browsers remember it; turn it on once HTTPS works).
    pub hsts: Option<HumanDuration>,
    /// Adds `includeSubDomains` to the HSTS header.
    pub hsts_include_subdomains: bool,
    /// `[proxy.tls.acme]`: automatic certificates for apps with `tls = "acme"`.
    pub acme: Option<AcmeSection>,
}

/// `[proxy.tls.acme]`: the ACME CA (Let's Encrypt by default) and how certificates are
/// obtained and renewed. The account and the certificates are kept in baton's store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AcmeSection {
    /// The CA's directory URL. Default Let's Encrypt's production directory.
    pub directory: String,
    /// Where the CA writes about the account (expiry notices): `"ops@example.com"` or
    /// `"mailto:ops@example.com"`.
    pub email: Option<String>,
    /// `"http-01"` (the default: the CA fetches a file over port 80 of each name, so a
    /// `listen` on port 80 must reach baton) or `"tls-alpn-01"` (the CA connects to
    /// port 443; no port 80 needed).
    pub challenge: String,
    /// Extra PEM roots to trust for the directory's own HTTPS (a private or test CA).
    pub ca_roots: Option<PathBuf>,
    /// Renew when less than this remains. Default 30 days (short-lived certificates are
    /// renewed when a third of their life remains).
    pub renew_before: HumanDuration,
    /// First wait after a failed order; doubles up to `retry_max`. Default 1 minute.
    pub retry_min: HumanDuration,
    /// Longest wait between failed orders. Default 6 hours.
    pub retry_max: HumanDuration,
    /// `[proxy.tls.acme.on_demand]`: certificates for hosts that are not in the config,
    /// issued at their first handshake when the allow rule says yes. Absent: never.
    pub on_demand: Option<OnDemandSection>,
}

impl Default for AcmeSection {
    fn default() -> Self {
        AcmeSection {
            directory: LETS_ENCRYPT.into(),
            email: None,
            challenge: "http-01".into(),
            ca_roots: None,
            renew_before: HumanDuration::from_secs(30 * 24 * 3600),
            retry_min: HumanDuration::from_secs(60),
            retry_max: HumanDuration::from_secs(6 * 3600),
            on_demand: None,
        }
    }
}

/// Let's Encrypt's production directory.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// `[proxy.tls.acme.on_demand]`: which unknown hosts may get a certificate. At least one
/// of the two is required: issuance is never open-ended.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OnDemandSection {
    /// Host names (`"shop.example.com"`, `"*.customers.example.com"`).
    pub allow: Vec<String>,
    /// A URL asked `GET URL?domain=NAME`; 200 means yes, anything else no.
    pub ask: Option<String>,
}

impl Default for TlsSection {
    fn default() -> Self {
        TlsSection {
            certificates: Vec::new(),
            default_host: None,
            redirect_http: true,
            hsts: None,
            hsts_include_subdomains: false,
            acme: None,
        }
    }
}

impl TlsSection {
    /// The `Strict-Transport-Security` value, if HSTS is on.
    pub fn hsts_header(&self) -> Option<String> {
        let age = self.hsts?.get().as_secs();
        let sub = if self.hsts_include_subdomains {
            "; includeSubDomains"
        } else {
            ""
        };
        Some(format!("max-age={age}{sub}"))
    }
}

/// `[[proxy.tls.certificates]]`: a certificate chain and its key, PEM files (reloaded
/// when they change). Relative paths are relative to the config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateSection {
    /// The chain, leaf first (e.g. certbot's `fullchain.pem`).
    pub cert: PathBuf,
    /// Its private key (e.g. certbot's `privkey.pem`).
    pub key: PathBuf,
    /// Hosts it serves (`*.example.com` for a wildcard). Default: every DNS name the
    /// certificate lists.
    #[serde(default)]
    pub hosts: Vec<String>,
}

/// `[proxy.access_log]`: where and how requests are logged. Lines are written by a
/// thread of their own; when it cannot keep up (a slow or full disk) lines are dropped
/// and counted (`baton_access_log_dropped_total`), requests are never slowed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLogSection {
    /// `"-"` (the default) for standard output, or a file, appended to and reopened
    /// on SIGUSR1 (logrotate). A relative path is relative to the config file.
    pub path: PathBuf,
    /// `combined` (nginx's layout, then baton's fields; the default) or `json`.
    pub format: AccessLogFormatKind,
    /// Finished requests that may wait for the writer before lines are dropped.
    /// Default 8192.
    pub queue: usize,
}

impl AccessLogSection {
    /// Whether lines go to standard output.
    pub fn is_stdout(&self) -> bool {
        self.path.as_os_str() == "-"
    }
}

impl Default for AccessLogSection {
    fn default() -> Self {
        AccessLogSection {
            path: PathBuf::from("-"),
            format: AccessLogFormatKind::Combined,
            queue: 8192,
        }
    }
}

/// The access log's line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessLogFormatKind {
    #[default]
    Combined,
    Json,
}

/// `[proxy.compression]`: gzip / brotli for text responses, like nginx's `gzip on;`.
/// Absent = off. docs/compression.md says which responses are never compressed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompressionSection {
    /// Encodings in order of preference: `"br"` and/or `"gzip"`. The first the client
    /// accepts with its highest weight is used. Default `["br", "gzip"]`.
    pub algorithms: Vec<String>,
    /// A response whose `Content-Length` is smaller is sent as it is: bytes (`1024`) or
    /// a size (`"1KiB"`). Default 1024 (nginx's `gzip_min_length` is 20).
    #[serde(deserialize_with = "size_or_bytes")]
    pub min_size: String,
    /// Media types to compress, without parameters (`"text/html"`), or `"text/*"` for a
    /// whole type. Absent = baton's list of text types (docs/compression.md).
    pub types: Option<Vec<String>>,
    /// 1 (fastest) to 9 (smallest): gzip's level and brotli's quality. Default 5.
    pub level: u32,
}

impl CompressionSection {
    /// `min_size` in bytes (validation has refused one that does not parse; that one
    /// counts as the default).
    pub fn min_size_bytes(&self) -> u64 {
        parse_size("min_size", &self.min_size).unwrap_or(1024)
    }
}

impl Default for CompressionSection {
    fn default() -> Self {
        CompressionSection {
            algorithms: vec!["br".into(), "gzip".into()],
            min_size: "1024".into(),
            types: None,
            level: 5,
        }
    }
}

/// A size written as a number of bytes (`1024`) or with a unit (`"1KiB"`), kept as text
/// for [`parse_size`].
fn size_or_bytes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match Size::deserialize(d) {
        Ok(Size::Bytes(n)) => Ok(n.to_string()),
        Ok(Size::Text(t)) => Ok(t),
        Err(_) => Err(serde::de::Error::custom(
            "expected a number of bytes (1024) or a size such as \"1KiB\"",
        )),
    }
}

impl ProxySection {
    /// `max_request_body` in bytes; `None` when unset (validation has refused a value
    /// that does not parse, so one that does not is treated as unset).
    pub fn max_request_body_bytes(&self) -> Option<u64> {
        let text = self.max_request_body.as_deref()?;
        parse_size("max_request_body", text).ok()
    }

    /// `request_buffering` in bytes; `None` when `"off"` (validation has refused a
    /// value that does not parse, so one that does not is treated as off).
    pub fn request_buffering_bytes(&self) -> Option<u64> {
        let text = self.request_buffering.trim();
        if text.eq_ignore_ascii_case("off") {
            return None;
        }
        parse_size("request_buffering", text).ok()
    }
}

impl Default for ProxySection {
    fn default() -> Self {
        ProxySection {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 8080))],
            trusted_proxies: Vec::new(),
            connect_timeout: HumanDuration::from_secs(3),
            upstream_header_timeout: HumanDuration::from_secs(60),
            client_header_timeout: HumanDuration::from_secs(10),
            client_idle_timeout: HumanDuration::from_secs(60),
            max_header_bytes: 64 * 1024,
            max_request_body: None,
            request_buffering: "1MiB".into(),
            body_read_timeout: HumanDuration::from_secs(60),
            workers: 0,
            access_log: None,
            compression: None,
            tls_listen: Vec::new(),
            tls: TlsSection::default(),
        }
    }
}

/// `[admin]`: where the admin API (CLI, dashboard) listens.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSection {
    /// Default `unix:.baton/baton.sock` (mode 0600). TCP requires `token_file`.
    pub listen: AdminListen,
    /// A file holding the bearer token that TCP clients must send.
    pub token_file: Option<PathBuf>,
}

/// `[cluster]`: baton on several nodes. The controller (`baton serve`) serves its route
/// table and takes the proxies' reports on `listen`; each proxy (`baton proxy`, the data
/// plane alone) follows the first of `controllers` that answers, keeps serving its last
/// table while none does, and reports its per-version metrics and drains back. Both
/// sides prove themselves with the token in `token_file`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSection {
    /// The controller's address for proxies, e.g. `"0.0.0.0:9400"` (`baton serve`).
    pub listen: Option<SocketAddr>,
    /// Where a proxy finds the controller: `"HOST:PORT"` each, resolved at every
    /// connection (a Swarm service name follows its task), tried in order.
    pub controllers: Vec<String>,
    /// A file holding the secret shared by the controller and its proxies. Required.
    pub token_file: Option<PathBuf>,
    /// A proxy's name in the controller's list (default: the host name and the pid).
    pub name: Option<String>,
    /// Where a proxy keeps the last table it received, so that after a restart it serves
    /// it while no controller answers.
    pub routes_cache: Option<PathBuf>,
    /// Where the controller keeps its records: `"local"` (default: the store file alone)
    /// or `"swarm"` (also in Swarm's replicated store, with a lease, so that a controller
    /// on another manager takes over when this one or its node is lost).
    pub state: ClusterState,
    /// With `state = "swarm"`: names the lease and record services (`NAME-lease`,
    /// `NAME-state-APP`) and marks the instances, the same for every controller that may
    /// take over. Default `"baton"`.
    pub state_name: Option<String>,
    /// With `state = "swarm"`: how long a controller that stopped renewing the lease
    /// keeps it before a standby takes over. Default 10s.
    pub lease_ttl: Option<HumanDuration>,
}

/// `[cluster] state`: where the controller's records live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterState {
    #[default]
    Local,
    Swarm,
}

impl ClusterSection {
    /// The default lease time to live.
    pub const LEASE_TTL: std::time::Duration = std::time::Duration::from_secs(10);

    /// `state_name`, or its default.
    pub fn state_name(&self) -> &str {
        self.state_name.as_deref().unwrap_or("baton")
    }

    /// `lease_ttl`, or its default.
    pub fn lease_ttl(&self) -> std::time::Duration {
        self.lease_ttl.map_or(Self::LEASE_TTL, |d| d.get())
    }
}

/// `[dashboard]`: the web dashboard, served by baton itself. Its login is the admin
/// token (`[admin] token_file`); a login makes a browser session (an HttpOnly cookie,
/// and a CSRF token every action must carry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardSection {
    /// Its own TCP address (with the admin API beside it, for the browser). Without it,
    /// the dashboard is served on the admin listener, which must then be TCP.
    pub listen: Option<SocketAddr>,
    /// Browser sessions may look but not act (deploy, promote, pause, resume, abort,
    /// rollback are refused and not offered). Default false.
    pub read_only: bool,
    /// How long a login lasts. Default 12h.
    pub session_lifetime: HumanDuration,
}

impl Default for DashboardSection {
    fn default() -> Self {
        DashboardSection {
            listen: None,
            read_only: false,
            session_lifetime: HumanDuration::from_secs(12 * 60 * 60),
        }
    }
}

/// `[store]`: the embedded store file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    /// Default `.baton/state`.
    pub path: PathBuf,
}

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection {
            path: PathBuf::from(".baton/state"),
        }
    }
}

/// `[apps.NAME]`: one app, how to run it, route to it, check it and deploy it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppConfig {
    /// Default `process`.
    pub runtime: RuntimeKind,
    /// Process runtime: the command line, with `{port}` and `{version}` substituted.
    pub command: Option<String>,
    /// Process runtime: working directory (relative to the config file's directory).
    pub cwd: Option<PathBuf>,
    /// Process runtime: extra environment (besides `PORT`, `BATON_VERSION`, `BATON_APP`).
    pub env: BTreeMap<String, String>,
    /// Process runtime: where instance ports are picked. Default `20000-29999`.
    pub ports: PortRange,
    /// Instances of the serving version. Default 1; at least 1.
    pub replicas: u32,
    /// Default strategy of `baton deploy`. Default `rolling`.
    pub strategy: StrategyKind,
    /// Hosts routed to this app (`"example.com"`, `"*.example.com"`); empty = any host.
    pub hosts: Vec<String>,
    /// `"acme"`: one certificate for all of `hosts` from `[proxy.tls.acme]`, issued and
    /// renewed automatically. Absent: the app's hosts are served by certificate files.
    pub tls: Option<AppTls>,
    /// Path prefix routed to this app. Default `"/"`.
    pub path: String,
    pub health: HealthSpec,
    /// How long in-flight requests of a removed instance may take. Default 30s.
    pub drain_timeout: HumanDuration,
    /// SIGTERM to SIGKILL. Default 10s.
    pub stop_timeout: HumanDuration,
    /// Recreate: how long requests wait while no instance is ready. Default 30s.
    pub hold_timeout: HumanDuration,
    /// `Upgrade` protocols the proxy forwards to this app besides `websocket`, by name
    /// (an RFC 9110 token, e.g. `["myproto"]`); `h2c` is refused. Default none.
    pub upgrade_protocols: Vec<String>,
    /// `"drop"` (default) or `"forward"`: request header names containing `_`.
    pub underscores_in_headers: UnderscoreHeaders,
    /// `[apps.NAME.analysis]`: judging canary and ab_test rollouts from the proxy's own
    /// per-version metrics, plus webhook and Prometheus gates. Absent = disabled.
    #[serde(default)]
    pub analysis: AnalysisSpec,
    pub recreate: RecreateSpec,
    pub blue_green: BlueGreenSpec,
    pub rolling: RollingSpec,
    #[serde(deserialize_with = "strategy::canary")]
    pub canary: CanarySpec,
    #[serde(deserialize_with = "strategy::ab_test")]
    pub ab_test: AbTestSpec,
    /// Docker runtime: the image, with `{version}` substituted (`"myorg/app:{version}"`).
    pub image: Option<String>,
    /// Docker runtime: the port the container listens on.
    pub container_port: Option<u16>,
    /// Docker runtime: `"host_path:container_path[:ro]"` or `"volume_name:container_path[:ro]"`.
    pub volumes: Vec<String>,
    /// Docker runtime: a network to attach containers to; they are then reached at their
    /// address on it instead of at a port published on 127.0.0.1.
    pub network: Option<String>,
    /// Docker runtime: memory limit, e.g. `"512MiB"` (checked with [`parse_memory`]).
    pub memory: Option<String>,
    /// Docker runtime: CPU limit in CPUs, e.g. `1.5`.
    pub cpus: Option<f64>,
    /// Docker runtime: whether baton pulls the image. Default `never`.
    pub pull: PullPolicy,
    /// Docker runtime: also wait for the image's own HEALTHCHECK to report healthy.
    pub wait_healthcheck: bool,
    /// `[apps.NAME.hooks]`: release / post_switch / pre_stop commands and the operator's
    /// `on_event` notification command.
    pub hooks: HooksConfig,
    /// `[apps.NAME.swarm]`: placement and references that only the swarm runtime has.
    pub swarm: SwarmConfig,
}

/// `[apps.NAME.swarm]`: what a Swarm service has beyond a container's settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SwarmConfig {
    /// Placement constraints in Swarm's syntax (`"node.labels.zone==a"`,
    /// `"node.role==worker"`).
    pub constraints: Vec<String>,
    /// Spread tasks over the values of this node attribute (`"node.labels.zone"`).
    pub spread: Option<String>,
    /// Swarm secrets by name, mounted at `/run/secrets/NAME`.
    pub secrets: Vec<String>,
    /// Swarm configs by name, mounted at `/NAME`.
    pub configs: Vec<String>,
}

impl SwarmConfig {
    pub fn is_empty(&self) -> bool {
        *self == SwarmConfig::default()
    }
}

/// `pull = "never" | "missing" | "always"`: whether the docker runtime pulls the image
/// before a deployment. baton never pulls unless told to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PullPolicy {
    /// The image must already be on the engine (the default).
    #[default]
    Never,
    /// Pull only when the engine does not have the image.
    Missing,
    /// Pull before every deployment.
    Always,
}

/// Parses a size such as `"512MiB"`, `"1GiB"`, `"256m"`, `"1g"` or `"1048576"` (bytes)
/// into bytes. Binary (`KiB`, `MiB`, `GiB`, and Docker's `k`, `m`, `g`) and decimal
/// (`KB`, `MB`, `GB`) units are accepted. `what` names the setting in errors.
pub fn parse_size(what: &str, text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let unit = unit.trim();
    let fix = "write a size such as \"512MiB\" or \"2GiB\"";
    let Ok(n) = digits.parse::<u64>() else {
        return Err(format!("{what} {text:?} is not a size: {fix}"));
    };
    let factor: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => {
            return Err(format!(
                "{what} {text:?} has an unknown unit {unit:?}: {fix} (units: KiB, MiB, GiB, TiB, KB, MB, GB, TB)"
            ))
        }
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("{what} {text:?} is too large: {fix}"))
}

/// Parses a Docker memory limit ([`parse_size`]); it must be at least 6 MiB, the
/// smallest limit Docker accepts.
pub fn parse_memory(text: &str) -> Result<u64, String> {
    const MIN: u64 = 6 << 20;
    let bytes = parse_size("memory", text)?;
    if bytes < MIN {
        return Err(format!(
            "memory {text:?} is below 6MiB, the smallest limit Docker accepts: write a size such as \"512MiB\" or \"2GiB\""
        ));
    }
    Ok(bytes)
}

impl Default for AppConfig {
    fn default() -> Self {
        AppConfig {
            runtime: RuntimeKind::Process,
            command: None,
            cwd: None,
            env: BTreeMap::new(),
            ports: PortRange::default(),
            replicas: 1,
            strategy: StrategyKind::Rolling,
            hosts: Vec::new(),
            tls: None,
            path: "/".into(),
            health: HealthSpec::default(),
            drain_timeout: HumanDuration::from_secs(30),
            stop_timeout: HumanDuration::from_secs(10),
            hold_timeout: HumanDuration::from_secs(30),
            upgrade_protocols: Vec::new(),
            underscores_in_headers: UnderscoreHeaders::Drop,
            analysis: AnalysisSpec::default(),
            recreate: RecreateSpec::default(),
            blue_green: BlueGreenSpec::default(),
            rolling: RollingSpec::default(),
            canary: CanarySpec::default(),
            ab_test: AbTestSpec::default(),
            image: None,
            container_port: None,
            volumes: Vec::new(),
            network: None,
            memory: None,
            cpus: None,
            pull: PullPolicy::Never,
            wait_healthcheck: false,
            hooks: HooksConfig::default(),
            swarm: SwarmConfig::default(),
        }
    }
}

/// The file as written, before paths are resolved and the whole is validated.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawConfig {
    pub proxy: ProxySection,
    pub admin: AdminSection,
    pub dashboard: Option<DashboardSection>,
    pub cluster: Option<ClusterSection>,
    pub store: StoreSection,
    pub apps: BTreeMap<String, AppConfig>,
}
