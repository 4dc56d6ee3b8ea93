//! Valid configurations: every default, a full example, the bundled example, and
//! path resolution against the file's directory.

#![allow(clippy::unwrap_used)]

use baton_config::{parse, AccessLogFormatKind, AdminListen, AppConfig, RuntimeKind, StrategyKind};
use baton_core::{HealthSpec, HumanDuration, PortRange, ProbeKind, Quantity, StickySpec};
use baton_rollout::spec::{CanaryRule, CanaryStep, PauseSpec};
use baton_rollout::StrategySpec;
use std::net::SocketAddr;
use std::path::Path;

const MINIMAL: &str = "[apps.web]\ncommand = \"./web --port {port}\"\n";

#[test]
fn every_default() {
    let cfg = parse(MINIMAL, Path::new("/srv/site/baton.toml")).unwrap();
    assert_eq!(cfg.path, Path::new("/srv/site/baton.toml"));
    assert_eq!(cfg.base_dir, Path::new("/srv/site"));

    let p = &cfg.proxy;
    assert_eq!(
        p.listen,
        vec!["127.0.0.1:8080".parse::<SocketAddr>().unwrap()]
    );
    assert!(p.trusted_proxies.is_empty());
    assert_eq!(p.connect_timeout, HumanDuration::from_secs(3));
    assert_eq!(p.upstream_header_timeout, HumanDuration::from_secs(60));
    assert_eq!(p.client_header_timeout, HumanDuration::from_secs(10));
    assert_eq!(p.client_idle_timeout, HumanDuration::from_secs(60));
    assert_eq!(p.max_header_bytes, 65536);
    assert_eq!(p.max_request_body, None);
    assert_eq!(p.max_request_body_bytes(), None);
    assert_eq!(p.request_buffering_bytes(), Some(1 << 20));
    assert_eq!(p.body_read_timeout, HumanDuration::from_secs(60));
    assert_eq!(p.workers, 0);

    assert_eq!(
        cfg.admin.listen,
        AdminListen::Unix("/srv/site/.baton/baton.sock".into())
    );
    assert_eq!(cfg.admin.token_file, None);
    assert_eq!(cfg.store.path, Path::new("/srv/site/.baton/state"));

    let web = &cfg.apps["web"];
    assert_eq!(web.runtime, RuntimeKind::Process);
    assert_eq!(web.command.as_deref(), Some("./web --port {port}"));
    assert_eq!(web.cwd, None);
    assert!(web.env.is_empty());
    assert_eq!(
        web.ports,
        PortRange {
            first: 20000,
            last: 29999
        }
    );
    assert_eq!(web.replicas, 1);
    assert_eq!(web.strategy, StrategyKind::Rolling);
    assert!(web.hosts.is_empty());
    assert_eq!(web.path, "/");
    assert_eq!(web.health, HealthSpec::default());
    assert_eq!(web.health.interval, HumanDuration::from_secs(1));
    assert_eq!(web.health.timeout, HumanDuration::from_secs(2));
    assert_eq!((web.health.healthy, web.health.unhealthy), (1, 3));
    assert_eq!(web.health.startup_timeout, HumanDuration::from_secs(60));
    assert_eq!(web.drain_timeout, HumanDuration::from_secs(30));
    assert_eq!(web.stop_timeout, HumanDuration::from_secs(10));
    assert_eq!(web.hold_timeout, HumanDuration::from_secs(30));
    assert_eq!(
        web.blue_green.scale_down_delay,
        HumanDuration::from_secs(30)
    );
    assert!(web.blue_green.auto_promote);
    assert_eq!(web.rolling.max_surge, Quantity::Count(1));
    assert_eq!(web.rolling.max_unavailable, Quantity::Count(0));
    assert_eq!(web.canary, baton_rollout::spec::CanarySpec::default());
    assert_eq!(web.ab_test, baton_rollout::spec::AbTestSpec::default());
    assert_eq!((web.image.as_ref(), web.container_port), (None, None));
    assert_eq!(
        web,
        &AppConfig {
            command: web.command.clone(),
            ..AppConfig::default()
        }
    );
}

#[test]
fn an_empty_file_is_a_valid_config_with_no_apps() {
    let cfg = parse("", Path::new("baton.toml")).unwrap();
    assert!(cfg.apps.is_empty());
    assert!(cfg.base_dir.is_absolute());
}

#[test]
fn the_spec_example_parses() {
    let text = r#"
[proxy]
listen = ["127.0.0.1:8080"]

[admin]
listen = "unix:.baton/baton.sock"   # TCP ("127.0.0.1:9901") requires token_file

[store]
path = ".baton/state"

[apps.web]
runtime  = "process"                # process | static | docker
command  = "java -jar app-{version}.jar --server.port={port}"
ports    = "20000-29999"            # where the process runtime picks instance ports
replicas = 2
strategy = "canary"                 # recreate | blue_green | rolling | canary | ab_test

[apps.web.health]
path = "/actuator/health"

[apps.web.canary]
steps = [{ weight = 10 }, { pause = "2m" }, { weight = 50 }, { pause = "2m" }]
"#;
    let cfg = parse(text, Path::new("/etc/baton/baton.toml")).unwrap();
    let web = &cfg.apps["web"];
    assert_eq!(web.replicas, 2);
    assert_eq!(web.strategy, StrategyKind::Canary);
    assert_eq!(web.health.path, "/actuator/health");
    let two_minutes = PauseSpec::For(HumanDuration::from_secs(120));
    assert_eq!(
        web.canary.steps,
        vec![
            CanaryStep::Weight { weight: 10 },
            CanaryStep::Pause {
                pause: two_minutes.clone()
            },
            CanaryStep::Weight { weight: 50 },
            CanaryStep::Pause { pause: two_minutes },
        ]
    );
    match web.strategy_spec(web.strategy) {
        StrategySpec::Canary(spec) => assert_eq!(spec, web.canary),
        other => panic!("expected canary, got {other:?}"),
    }
    assert_eq!(web.strategy_spec(StrategyKind::Recreate).name(), "recreate");
    assert_eq!(web.strategy_spec(StrategyKind::AbTest).name(), "ab_test");
}

#[test]
fn the_bundled_example_parses_and_shows_every_section() {
    let cfg = parse(baton_config::example(), Path::new("/x/baton.toml")).unwrap();
    let web = &cfg.apps["web"];
    assert_eq!(web.canary.steps.len(), 4);
    assert_eq!(
        web.canary.steps[3],
        CanaryStep::Pause {
            pause: PauseSpec::Manual
        }
    );
    assert_eq!(
        web.canary.rules,
        vec![CanaryRule {
            header: Some("X-Role".into()),
            value: Some("admin".into()),
            ..CanaryRule::default()
        }]
    );
    assert_eq!(
        web.canary.sticky,
        Some(StickySpec::Cookie {
            name: "baton_canary".into(),
            max_age: HumanDuration::from_secs(3600)
        })
    );
    assert_eq!(web.env["RUST_LOG"], "info");
    assert_eq!(cfg.apps["api"].runtime, RuntimeKind::Static);
    assert_eq!(cfg.apps["api"].path, "/api");
}

#[test]
fn relative_paths_resolve_against_the_files_directory() {
    let text = r#"
[admin]
listen = "127.0.0.1:9901"
token_file = "secrets/admin.token"
[store]
path = "state/baton.db"
[apps.web]
command = "./web"
cwd = "apps/web"
[apps.abs]
command = "./abs"
path = "/abs"
cwd = "/opt/abs"
"#;
    let cfg = parse(text, Path::new("/srv/site/conf/baton.toml")).unwrap();
    assert_eq!(cfg.store.path, Path::new("/srv/site/conf/state/baton.db"));
    assert_eq!(
        cfg.admin.token_file.as_deref(),
        Some(Path::new("/srv/site/conf/secrets/admin.token"))
    );
    assert_eq!(
        cfg.admin.listen,
        AdminListen::Tcp("127.0.0.1:9901".parse().unwrap())
    );
    assert_eq!(
        cfg.apps["web"].cwd.as_deref(),
        Some(Path::new("/srv/site/conf/apps/web"))
    );
    assert_eq!(cfg.apps["abs"].cwd.as_deref(), Some(Path::new("/opt/abs")));

    // A bare file name resolves against the current directory.
    let cfg = parse("[store]\npath = \"s\"\n", Path::new("baton.toml")).unwrap();
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(cfg.store.path, cwd.join("s"));
}

#[test]
fn strategy_sections_and_their_variants_parse() {
    let text = r#"
[apps.web]
runtime = "static"
hosts = ["Example.com", "*.example.com"]
path = "/shop"
[apps.web.health]
kind = "tcp"
expect_status = [200, 204]
[apps.web.rolling]
max_surge = 0
max_unavailable = "50%"
[apps.web.canary]
steps = [{ weight = 0 }, { weight = 100 }]
rules = [{ cookie = "beta", regex = "^1$" }, { query = "canary", present = true }]
sticky = { kind = "header", name = "X-User-Id" }
[apps.web.ab_test]
weight = 20
sticky = { kind = "hash_cookie", name = "session" }
[apps.web.blue_green]
auto_promote = false
"#;
    let cfg = parse(text, Path::new("baton.toml")).unwrap();
    let web = &cfg.apps["web"];
    assert_eq!(web.health.kind, ProbeKind::Tcp);
    assert_eq!(web.rolling.max_unavailable, Quantity::Percent(50));
    assert_eq!(web.canary.rules.len(), 2);
    assert_eq!(
        web.canary.sticky,
        Some(StickySpec::Header {
            name: "X-User-Id".into()
        })
    );
    assert_eq!(web.ab_test.weight, 20);
    assert_eq!(
        web.ab_test.sticky,
        Some(StickySpec::HashCookie {
            name: "session".into()
        })
    );
    assert!(!web.blue_green.auto_promote);
}

#[test]
fn app_config_round_trips_through_json() {
    // The controller may store an app's config; what it writes must read back the same.
    let cfg = parse(baton_config::example(), Path::new("/x/baton.toml")).unwrap();
    let web = &cfg.apps["web"];
    let json = serde_json::to_string(web).unwrap();
    let back: AppConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(&back, web);
}

#[test]
fn load_reads_the_file_and_explains_a_missing_one() {
    let dir = std::env::temp_dir().join(format!("baton-config-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("baton.toml");
    let _ = std::fs::remove_file(&file);

    let err = baton_config::load(&file).unwrap_err();
    let msg = err.to_string();
    assert_eq!(
        msg,
        format!(
            "no baton.toml in {}: create one (see README) or pass -c FILE",
            dir.display()
        )
    );

    std::fs::write(&file, MINIMAL).unwrap();
    let cfg = baton_config::load(&file).unwrap();
    assert_eq!(cfg.base_dir, dir);
    assert!(cfg.apps.contains_key("web"));

    let err = baton_config::load(&dir).unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("cannot read {}", dir.display())),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn request_buffering_takes_a_size_or_off() {
    for (text, bytes) in [
        ("64KiB", Some(64 << 10)),
        ("2MiB", Some(2 << 20)),
        ("off", None),
    ] {
        let toml = format!(
            "[proxy]\nrequest_buffering = \"{text}\"\nbody_read_timeout = \"15s\"\n{MINIMAL}"
        );
        let cfg = parse(&toml, Path::new("/srv/baton.toml")).unwrap();
        assert_eq!(cfg.proxy.request_buffering_bytes(), bytes, "{text}");
        assert_eq!(cfg.proxy.body_read_timeout, HumanDuration::from_secs(15));
    }
}

#[test]
fn max_request_body_takes_a_size_with_units() {
    for (text, bytes) in [("10MiB", 10 << 20), ("1g", 1 << 30), ("500KB", 500_000)] {
        let toml = format!("[proxy]\nmax_request_body = \"{text}\"\n{MINIMAL}");
        let cfg = parse(&toml, Path::new("/srv/baton.toml")).unwrap();
        assert_eq!(cfg.proxy.max_request_body_bytes(), Some(bytes), "{text}");
    }
}

#[test]
fn access_log_is_off_unless_its_table_is_there() {
    let cfg = parse(MINIMAL, Path::new("/srv/baton.toml")).unwrap();
    assert_eq!(cfg.proxy.access_log, None);
    let toml = format!("[proxy.access_log]\n{MINIMAL}");
    let log = parse(&toml, Path::new("/srv/baton.toml"))
        .unwrap()
        .proxy
        .access_log
        .unwrap();
    assert!(log.is_stdout());
    assert_eq!(log.format, AccessLogFormatKind::Combined);
    assert_eq!(log.queue, 8192);
    let toml = format!(
        "[proxy.access_log]\npath = \"logs/access.log\"\nformat = \"json\"\nqueue = 100\n{MINIMAL}"
    );
    let log = parse(&toml, Path::new("/srv/baton.toml"))
        .unwrap()
        .proxy
        .access_log
        .unwrap();
    assert_eq!(log.path, Path::new("/srv/logs/access.log"));
    assert_eq!(log.format, AccessLogFormatKind::Json);
    assert_eq!(log.queue, 100);
}

#[test]
fn compression_is_off_unless_its_table_is_there() {
    let cfg = parse(MINIMAL, Path::new("/srv/baton.toml")).unwrap();
    assert_eq!(cfg.proxy.compression, None);
    let toml = format!("[proxy.compression]\n{MINIMAL}");
    let c = parse(&toml, Path::new("/srv/baton.toml"))
        .unwrap()
        .proxy
        .compression
        .unwrap();
    assert_eq!(c.algorithms, ["br", "gzip"]);
    assert_eq!(c.min_size_bytes(), 1024);
    assert_eq!(c.types, None);
    assert_eq!(c.level, 5);
    for (min_size, bytes) in [("2048", 2048), ("\"4KiB\"", 4096), ("\"1kb\"", 1000)] {
        let toml = format!(
            "[proxy.compression]\nalgorithms = [\"gzip\"]\nmin_size = {min_size}\n\
             types = [\"text/*\", \"application/json\"]\nlevel = 9\n{MINIMAL}"
        );
        let c = parse(&toml, Path::new("/srv/baton.toml"))
            .unwrap()
            .proxy
            .compression
            .unwrap();
        assert_eq!(c.algorithms, ["gzip"]);
        assert_eq!(c.min_size_bytes(), bytes, "{min_size}");
        assert_eq!(c.types.unwrap(), ["text/*", "application/json"]);
        assert_eq!(c.level, 9);
    }
}

#[test]
fn tls_files_resolve_against_the_config_and_the_redirect_is_on_by_default() {
    let toml = format!(
        "[proxy]\ntls_listen = [\"0.0.0.0:443\"]\n\n[proxy.tls]\nhsts = \"365d\"\nhsts_include_subdomains = true\n\n[[proxy.tls.certificates]]\ncert = \"tls/a.pem\"\nkey = \"/etc/k.pem\"\n\n{MINIMAL}"
    );
    let cfg = parse(&toml, Path::new("/srv/baton.toml")).unwrap();
    let t = &cfg.proxy.tls;
    assert_eq!(t.certificates[0].cert, Path::new("/srv/tls/a.pem"));
    assert_eq!(t.certificates[0].key, Path::new("/etc/k.pem"));
    assert!(t.certificates[0].hosts.is_empty());
    assert!(t.redirect_http);
    assert_eq!(
        t.hsts_header().as_deref(),
        Some("max-age=31536000; includeSubDomains")
    );
    let plain = parse(MINIMAL, Path::new("/srv/baton.toml")).unwrap();
    assert!(plain.proxy.tls_listen.is_empty());
    assert_eq!(plain.proxy.tls.hsts_header(), None);
}
