//! A real pebble for the tests: pebble itself (its own TLS certificate from a CA made
//! here, its own ports), pebble-challtestsrv as the DNS server that answers 127.0.0.1 for
//! every name, and the test's challenge servers (HTTP-01 from `Challenges::http01`,
//! TLS-ALPN-01 from `Challenges::tls_alpn01`) on the ports pebble validates against.
//! Everything is stopped when the value is dropped, also when a test fails.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod servers;

use baton_acme::{AcmeSettings, CertSink, ChallengeKind, Challenges};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a test waits for something pebble does (validation, issuance): a bound that
/// fails with a message, not a measurement.
pub const WAIT: Duration = Duration::from_secs(90);

pub struct Pebble {
    pub dir: tempfile::TempDir,
    pebble: Option<Child>,
    dns: Child,
    pub directory: String,
    pub management: String,
    /// The CA that signed pebble's own TLS certificate (for `AcmeSettings::ca_roots`).
    pub tls_ca: PathBuf,
    dns_port: u16,
    listen: u16,
    mgmt: u16,
}

/// What a test can change in pebble's config.
#[derive(Default)]
pub struct PebbleOptions {
    /// `certificateValidityPeriod` in seconds (pebble's default when `None`).
    pub validity_secs: Option<u64>,
}

pub fn free_port() -> u16 {
    let [port] = free_ports();
    port
}

/// `N` distinct free ports: every listener is held until all are bound (one released
/// before the next bind may be handed out again, and two of pebble's servers then clash).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: [std::net::TcpListener; N] =
        std::array::from_fn(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    listeners.map(|l| l.local_addr().unwrap().port())
}

impl Pebble {
    /// Starts challtestsrv and pebble; pebble validates HTTP-01 on `http_port` and
    /// TLS-ALPN-01 on `tls_port` of 127.0.0.1.
    pub async fn start(http_port: u16, tls_port: u16, opts: PebbleOptions) -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        let tls_ca = write_tls_files(dir.path());
        let [listen, mgmt, dns_port, dns_mgmt] = free_ports();
        let mut config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{listen}"),
            "managementListenAddress": format!("127.0.0.1:{mgmt}"),
            "certificate": dir.path().join("pebble.pem"),
            "privateKey": dir.path().join("pebble.key"),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        if let Some(v) = opts.validity_secs {
            config["pebble"]["certificateValidityPeriod"] = v.into();
        }
        let config_path = dir.path().join("pebble.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        // Every name resolves to 127.0.0.1 and to no IPv6 address.
        let dns = spawn(
            Command::new("pebble-challtestsrv")
                .args(["-management", &format!("127.0.0.1:{dns_mgmt}")])
                .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
                .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
                .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""]),
            &dir.path().join("challtestsrv.log"),
        );
        let mut env = Pebble {
            directory: format!("https://127.0.0.1:{listen}/dir"),
            management: format!("https://127.0.0.1:{mgmt}"),
            tls_ca,
            pebble: None,
            dns,
            dir,
            dns_port,
            listen,
            mgmt,
        };
        env.wait_listening(dns_mgmt, "pebble-challtestsrv").await;
        env.start_ca().await;
        env
    }

    /// Starts pebble (again: a restarted pebble has forgotten every account and order).
    pub async fn start_ca(&mut self) {
        self.kill_ca();
        let config_path = self.dir.path().join("pebble.json");
        let pebble = spawn(
            Command::new("pebble")
                .arg("-config")
                .arg(&config_path)
                .args(["-dnsserver", &format!("127.0.0.1:{}", self.dns_port)])
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                // Every order is validated again: a renewal proves the challenge works.
                .env("PEBBLE_AUTHZREUSE", "0"),
            &self.dir.path().join("pebble.log"),
        );
        self.pebble = Some(pebble);
        self.wait_listening(self.listen, "pebble").await;
        self.wait_listening(self.mgmt, "pebble's management interface")
            .await;
    }

    async fn wait_listening(&self, port: u16, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "{what} does not listen on 127.0.0.1:{port} after 30 s\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Settings for this pebble, with the given challenge.
    pub fn settings(&self, challenge: ChallengeKind) -> AcmeSettings {
        let mut s = AcmeSettings::new(&self.directory);
        s.contact = vec!["mailto:ops@baton.test".into()];
        s.challenge = challenge;
        s.ca_roots = Some(self.tls_ca.clone());
        s.retry_min = Duration::from_secs(1);
        s.retry_max = Duration::from_secs(5);
        s
    }

    /// Stops pebble (the CA goes down); the DNS server stays.
    pub fn kill_ca(&mut self) {
        if let Some(mut child) = self.pebble.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The PEM of pebble's issuing root, from its management interface.
    pub async fn root_pem(&self) -> String {
        servers::https_get(&format!("{}/roots/0", self.management), &self.tls_ca).await
    }

    /// pebble's and challtestsrv's output, for failure messages.
    pub fn logs(&self) -> String {
        let read =
            |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!(
            "--- pebble.log ---\n{}\n--- challtestsrv.log ---\n{}",
            read("pebble.log"),
            read("challtestsrv.log")
        )
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.kill_ca();
        let _ = self.dns.kill();
        let _ = self.dns.wait();
    }
}

fn spawn(cmd: &mut Command, log: &Path) -> Child {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let err = out.try_clone().unwrap();
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"))
}

/// A CA and pebble's server certificate for 127.0.0.1 signed by it; returns the CA's path.
fn write_tls_files(dir: &Path) -> PathBuf {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "baton test CA for pebble");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    std::fs::write(dir.join("pebble.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("pebble.key"), key.serialize_pem()).unwrap();
    let ca_path = dir.join("tls-ca.pem");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    ca_path
}

/// A `CertSink` that records every installation.
#[derive(Default)]
pub struct Sink {
    installed: Mutex<Vec<(Vec<String>, Arc<CertifiedKey>)>>,
}

impl CertSink for Sink {
    fn install(&self, names: &[String], cert: Arc<CertifiedKey>) {
        self.installed.lock().unwrap().push((names.to_vec(), cert));
    }
}

impl Sink {
    pub fn installed(&self) -> Vec<(Vec<String>, Arc<CertifiedKey>)> {
        self.installed.lock().unwrap().clone()
    }

    /// Waits until at least `n` installations happened; fails naming `what` otherwise.
    pub async fn wait_for(
        &self,
        n: usize,
        what: &str,
        pebble: &Pebble,
        status: impl Fn() -> String,
    ) -> Vec<(Vec<String>, Arc<CertifiedKey>)> {
        let deadline = Instant::now() + WAIT;
        loop {
            let got = self.installed();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: {} of {n} certificates installed after {} s\nstatus: {}\n{}",
                got.len(),
                WAIT.as_secs(),
                status(),
                pebble.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The leaf certificate's DER.
pub fn leaf(cert: &CertifiedKey) -> Vec<u8> {
    cert.cert[0].to_vec()
}

/// Challenge servers on their own ports (known before pebble starts), answering from the
/// `Challenges` of the `Acme` plugged in with `serve`.
pub struct ChallengeServers {
    pub http_port: u16,
    pub tls_port: u16,
    slot: servers::Slot,
    _tasks: tokio::task::JoinSet<()>,
}

impl ChallengeServers {
    pub async fn start() -> ChallengeServers {
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tls = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http_port = http.local_addr().unwrap().port();
        let tls_port = tls.local_addr().unwrap().port();
        let slot = servers::Slot::default();
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(servers::http01(http, slot.clone()));
        tasks.spawn(servers::tls_alpn01(tls, slot.clone()));
        ChallengeServers {
            http_port,
            tls_port,
            slot,
            _tasks: tasks,
        }
    }

    /// Answers from `challenges` from now on.
    pub fn serve(&self, challenges: Challenges) {
        *self.slot.lock().unwrap() = Some(challenges);
    }
}
