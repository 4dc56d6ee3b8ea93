//! baton-acme against a real pebble CA over real sockets: HTTP-01 and TLS-ALPN-01
//! issuance (the chain verified with pebble's root), renewal, a restart with the CA
//! down, on-demand issuance behind the allow list and the ask URL, bad input.
//!
//! pebble validates for real (no PEBBLE_VA_ALWAYS_VALID): it resolves every name through
//! pebble-challtestsrv to 127.0.0.1 and connects to the test's challenge servers. Without
//! pebble these tests are skipped locally and fail with CI=true (`prerequisite.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../baton/tests/common/prerequisite.rs"]
mod prerequisite;

mod env;

use baton_acme::{Acme, AcmeError, AcmeSettings, ChallengeKind, OnDemand};
use baton_store::Store;
use env::{leaf, ChallengeServers, Pebble, PebbleOptions, Sink};
use prerequisite::{run, tests, Test, PEBBLE};
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

fn main() {
    run(tests![
        http01_issues_a_certificate_that_verifies_with_pebbles_root[&PEBBLE],
        tls_alpn01_issues_a_certificate[&PEBBLE],
        a_due_certificate_is_renewed_and_the_new_one_installed[&PEBBLE],
        a_restart_with_the_ca_down_installs_the_stored_certificate[&PEBBLE],
        a_ca_that_forgot_the_account_gets_a_new_one[&PEBBLE],
        a_failed_validation_says_what_the_ca_saw_and_the_fix[&PEBBLE],
        on_demand_issues_for_allowed_names_only[&PEBBLE],
        on_demand_asks_the_ask_url[&PEBBLE],
        bad_input_is_refused_with_clear_errors,
    ]);
}

fn block_on(f: impl Future<Output = ()>) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "baton_acme=debug".into()),
        )
        .with_test_writer()
        .try_init();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f);
}

/// A started test setup: challenge servers, pebble, a store in pebble's temp dir.
struct Setup {
    servers: ChallengeServers,
    pebble: Pebble,
    store: Arc<Store>,
}

impl Setup {
    async fn new(opts: PebbleOptions) -> Setup {
        let servers = ChallengeServers::start().await;
        let pebble = Pebble::start(servers.http_port, servers.tls_port, opts).await;
        let store = Arc::new(Store::open(&pebble.dir.path().join("store")).unwrap());
        Setup {
            servers,
            pebble,
            store,
        }
    }

    fn start(
        &self,
        settings: AcmeSettings,
        sets: &[&[&str]],
    ) -> (Acme, Arc<Sink>, CancellationToken) {
        let sink = Arc::new(Sink::default());
        let shutdown = CancellationToken::new();
        let sets = sets
            .iter()
            .map(|s| s.iter().map(|n| n.to_string()).collect())
            .collect();
        let (acme, challenges) = Acme::start(
            settings,
            self.store.clone(),
            sink.clone(),
            sets,
            shutdown.clone(),
        )
        .unwrap();
        self.servers.serve(challenges);
        (acme, sink, shutdown)
    }
}

fn status(acme: &Acme) -> String {
    serde_json::to_string_pretty(&acme.status()).unwrap()
}

/// Verifies `cert`'s chain up to pebble's root for `name`.
async fn verify(pebble: &Pebble, cert: &rustls::sign::CertifiedKey, name: &str) {
    let root_pem = pebble.root_pem().await;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .unwrap();
    verifier
        .verify_server_cert(
            &cert.cert[0],
            &cert.cert[1..],
            &ServerName::try_from(name.to_string()).unwrap(),
            &[],
            UnixTime::now(),
        )
        .unwrap_or_else(|e| {
            panic!("the issued chain does not verify for {name} with pebble's root: {e}")
        });
}

fn http01_issues_a_certificate_that_verifies_with_pebbles_root() {
    block_on(async {
        let s = Setup::new(PebbleOptions::default()).await;
        let settings = s.pebble.settings(ChallengeKind::Http01);
        let (acme, sink, _shutdown) = s.start(settings, &[&["www.baton.test", "baton.test"]]);
        let got = sink
            .wait_for(1, "HTTP-01 issuance", &s.pebble, || status(&acme))
            .await;
        let (names, cert) = &got[0];
        assert_eq!(
            names,
            &["baton.test".to_string(), "www.baton.test".to_string()]
        );
        verify(&s.pebble, cert, "www.baton.test").await;
        verify(&s.pebble, cert, "baton.test").await;
        let st = acme.status();
        assert_eq!(st.len(), 1);
        assert!(
            st[0].not_after.is_some() && st[0].last_error.is_none(),
            "{}",
            status(&acme)
        );
    });
}

fn tls_alpn01_issues_a_certificate() {
    block_on(async {
        let s = Setup::new(PebbleOptions::default()).await;
        let settings = s.pebble.settings(ChallengeKind::TlsAlpn01);
        let (acme, sink, _shutdown) = s.start(settings, &[&["alpn.baton.test"]]);
        let got = sink
            .wait_for(1, "TLS-ALPN-01 issuance", &s.pebble, || status(&acme))
            .await;
        verify(&s.pebble, &got[0].1, "alpn.baton.test").await;
    });
}

fn a_due_certificate_is_renewed_and_the_new_one_installed() {
    block_on(async {
        // One-hour certificates (pebble makes them 3599 s: notAfter is inclusive),
        // renewed when less than 3595 s remain: due seconds after issuance.
        let s = Setup::new(PebbleOptions {
            validity_secs: Some(3600),
        })
        .await;
        let mut settings = s.pebble.settings(ChallengeKind::Http01);
        settings.renew_before = Duration::from_secs(3595);
        let (acme, sink, _shutdown) = s.start(settings, &[&["renew.baton.test"]]);
        let got = sink
            .wait_for(2, "renewal", &s.pebble, || status(&acme))
            .await;
        assert_ne!(
            leaf(&got[0].1),
            leaf(&got[1].1),
            "the renewal installed the same certificate"
        );
        verify(&s.pebble, &got[1].1, "renew.baton.test").await;
    });
}

fn a_restart_with_the_ca_down_installs_the_stored_certificate() {
    block_on(async {
        let mut s = Setup::new(PebbleOptions::default()).await;
        let settings = s.pebble.settings(ChallengeKind::Http01);
        let (acme, sink, shutdown) = s.start(settings.clone(), &[&["stored.baton.test"]]);
        let issued = sink
            .wait_for(1, "first issuance", &s.pebble, || status(&acme))
            .await;
        let issued = leaf(&issued[0].1);

        // Stop baton's ACME side and the CA; reopen the store from disk.
        shutdown.cancel();
        drop(acme);
        s.pebble.kill_ca();
        let path = s.store.path().to_path_buf();
        let deadline = Instant::now() + Duration::from_secs(30);
        s.store = loop {
            let old = std::mem::replace(
                &mut s.store,
                Arc::new(Store::open(&s.pebble.dir.path().join("scratch")).unwrap()),
            );
            drop(old);
            match Store::open(&path) {
                Ok(store) => break Arc::new(store),
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "the store stays locked after shutdown: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };

        let (acme, sink, _shutdown) = s.start(
            settings.clone(),
            &[&["stored.baton.test"], &["new.baton.test"]],
        );
        // Installed by start itself, before any network.
        let now = sink.installed();
        assert_eq!(now.len(), 1, "start did not install the stored certificate");
        assert_eq!(now[0].0, vec!["stored.baton.test".to_string()]);
        assert_eq!(leaf(&now[0].1), issued);

        // The new name cannot be issued: status names the directory, the host and the fix.
        let deadline = Instant::now() + Duration::from_secs(60);
        let error = loop {
            let st = acme.status();
            if let Some(e) = st
                .iter()
                .find(|c| c.names == ["new.baton.test"])
                .and_then(|c| c.last_error.clone())
            {
                break e;
            }
            assert!(
                Instant::now() < deadline,
                "no error in status with the CA down: {}",
                status(&acme)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(error.contains(&settings.directory), "{error}");
        assert!(error.contains("new.baton.test"), "{error}");
        assert!(error.contains("Fix:"), "{error}");
        assert!(
            error.contains("stored certificates keep being served"),
            "{error}"
        );
        let stored = acme
            .status()
            .into_iter()
            .find(|c| c.names == ["stored.baton.test"])
            .unwrap();
        assert!(
            stored.not_after.is_some() && stored.last_error.is_none(),
            "{}",
            status(&acme)
        );
        assert_eq!(sink.installed().len(), 1);
    });
}

fn a_ca_that_forgot_the_account_gets_a_new_one() {
    block_on(async {
        let mut s = Setup::new(PebbleOptions::default()).await;
        let settings = s.pebble.settings(ChallengeKind::Http01);
        let (acme, sink, _shutdown) = s.start(settings, &[&["first.baton.test"]]);
        sink.wait_for(1, "first issuance", &s.pebble, || status(&acme))
            .await;
        // Same directory URL, but a CA without our account.
        s.pebble.start_ca().await;
        acme.set_name_sets(vec![
            vec!["first.baton.test".into()],
            vec!["second.baton.test".into()],
        ])
        .unwrap();
        let got = sink
            .wait_for(
                2,
                "issuance after the CA forgot the account",
                &s.pebble,
                || status(&acme),
            )
            .await;
        assert_eq!(got[1].0, vec!["second.baton.test".to_string()]);
        verify(&s.pebble, &got[1].1, "second.baton.test").await;
    });
}

fn a_failed_validation_says_what_the_ca_saw_and_the_fix() {
    block_on(async {
        let s = Setup::new(PebbleOptions::default()).await;
        let settings = s.pebble.settings(ChallengeKind::Http01);
        let (acme, sink, _shutdown) = s.start(settings, &[&["unanswered.baton.test"]]);
        // The challenge server answers from answers no order ever publishes: 404.
        s.servers.serve(baton_acme::Challenges::default());
        let deadline = Instant::now() + env::WAIT;
        let failed = loop {
            let st = acme.status();
            if let Some(c) = st.into_iter().find(|c| c.last_error.is_some()) {
                break c;
            }
            assert!(
                Instant::now() < deadline,
                "no failure in status: {}\n{}",
                status(&acme),
                s.pebble.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let error = failed.last_error.unwrap();
        assert!(error.contains("unanswered.baton.test"), "{error}");
        assert!(
            error.contains("404"),
            "the CA's own words are missing: {error}"
        );
        assert!(error.contains("is port 80"), "the fix is missing: {error}");
        assert!(failed.next_attempt.is_some(), "no retry planned");
        assert!(sink.installed().is_empty());
    });
}

fn on_demand_issues_for_allowed_names_only() {
    block_on(async {
        let s = Setup::new(PebbleOptions::default()).await;
        let mut settings = s.pebble.settings(ChallengeKind::Http01);
        settings.on_demand = Some(OnDemand {
            allow: vec!["*.ok.baton.test".into()],
            ask: None,
        });
        let (acme, sink, _shutdown) = s.start(settings.clone(), &[]);

        let err = acme.on_demand("evil.baton.test").await.unwrap_err();
        assert!(matches!(err, AcmeError::NotAllowed { .. }), "{err}");
        assert!(err.to_string().contains("evil.baton.test"), "{err}");
        assert!(
            acme.status().is_empty(),
            "a refused name left a trace: {}",
            status(&acme)
        );

        // Two callers at once share one order.
        let (a, b) = tokio::join!(
            acme.on_demand("shop.ok.baton.test"),
            acme.on_demand("SHOP.ok.baton.test.")
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(Arc::ptr_eq(&a, &b), "two orders for one name");
        assert_eq!(sink.installed().len(), 1);
        verify(&s.pebble, &a, "shop.ok.baton.test").await;
        let again = acme.on_demand("shop.ok.baton.test").await.unwrap();
        assert!(Arc::ptr_eq(&a, &again));

        // No order reaches the CA for a refused name: with the CA gone it is still
        // refused by the rule, not by the network.
        let mut down = settings;
        down.directory = format!("https://127.0.0.1:{}/dir", env::free_port());
        let (acme, _sink, _shutdown) = s.start(down, &[]);
        let err = acme.on_demand("a.b.ok.baton.test").await.unwrap_err();
        assert!(matches!(err, AcmeError::NotAllowed { .. }), "{err}");
    });
}

fn on_demand_asks_the_ask_url() {
    block_on(async {
        let s = Setup::new(PebbleOptions::default()).await;
        let ask = env::servers::ask_server(vec!["yes.baton.test".into()]).await;
        let mut settings = s.pebble.settings(ChallengeKind::Http01);
        settings.on_demand = Some(OnDemand {
            allow: vec![],
            ask: Some(ask.clone()),
        });
        let (acme, _sink, _shutdown) = s.start(settings, &[]);
        let err = acme.on_demand("no.baton.test").await.unwrap_err();
        assert!(matches!(err, AcmeError::NotAllowed { .. }), "{err}");
        assert!(err.to_string().contains(&ask), "{err}");
        let cert = acme.on_demand("yes.baton.test").await.unwrap();
        verify(&s.pebble, &cert, "yes.baton.test").await;
        let st = acme.status();
        assert_eq!(st.len(), 1, "{}", status(&acme));
        assert!(st[0].on_demand);
    });
}

fn bad_input_is_refused_with_clear_errors() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("store")).unwrap());
        let start = |settings: AcmeSettings, sets: Vec<Vec<String>>| {
            Acme::start(
                settings,
                store.clone(),
                Arc::new(Sink::default()),
                sets,
                CancellationToken::new(),
            )
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
        };
        let good = AcmeSettings::new("https://127.0.0.1:1/dir");
        let err = start(good.clone(), vec![vec!["bad_name.example.com".into()]]);
        assert!(
            err.contains("bad_name.example.com") && err.contains("not a valid host name"),
            "{err}"
        );
        let err = start(good.clone(), vec![vec![]]);
        assert!(err.contains("name set is empty"), "{err}");
        let mut s = good.clone();
        s.ca_roots = Some(dir.path().join("missing.pem"));
        let err = start(s, vec![]);
        assert!(
            err.contains("missing.pem") && err.contains("CA roots"),
            "{err}"
        );
        let mut s = good.clone();
        s.directory = "http://acme.example.com/dir".into();
        let err = start(s, vec![]);
        assert!(err.contains("https://"), "{err}");
        let mut s = good;
        s.on_demand = Some(OnDemand::default());
        let err = start(s, vec![]);
        assert!(
            err.contains("neither an allow list nor an ask URL"),
            "{err}"
        );
    });
}
