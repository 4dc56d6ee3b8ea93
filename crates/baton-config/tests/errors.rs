//! Invalid configurations: each error names the file, line, column and key, says how to
//! fix it, and for a misspelt key or value suggests the closest valid one.

#![allow(clippy::unwrap_used)]

use baton_config::{parse, ConfigError};
use std::path::Path;

/// The error message for `text` read from `baton.toml`.
fn error(text: &str) -> String {
    match parse(text, Path::new("baton.toml")) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

/// Asserts that `message` is located at `line:column` and contains every `needle`.
#[track_caller]
fn assert_error(text: &str, line_col: &str, needles: &[&str]) {
    let message = error(text);
    let prefix = format!("baton.toml:{line_col}: ");
    assert!(
        message.starts_with(&prefix),
        "expected {prefix:?} in:\n{message}"
    );
    for needle in needles {
        assert!(
            message.contains(needle),
            "expected {needle:?} in:\n{message}"
        );
    }
}

const WEB: &str = "[apps.web]\ncommand = \"./web\"\n";

fn web(extra: &str) -> String {
    format!("{WEB}{extra}")
}

// --- unknown keys and values (serde), with suggestions ---

#[test]
fn unknown_key_in_an_app_suggests_the_closest() {
    let text = "[proxy]\nlisten = [\"127.0.0.1:8080\"]\n\n[apps.web]\ncommand = \"./web\"\n\nreplica = 2\n";
    assert_eq!(
        error(text),
        "baton.toml:7:1: unknown key `replica` in [apps.web]; did you mean `replicas`?"
    );
}

#[test]
fn unknown_keys_everywhere_are_refused_with_their_table() {
    assert_error(
        "[app.web]\ncommand = \"x\"\n",
        "1:2",
        &["unknown key `app` at the top level; did you mean `apps`?"],
    );
    assert_error(
        "[proxy]\nlisen = []\n",
        "2:1",
        &["in [proxy]; did you mean `listen`?"],
    );
    assert_error(
        &web("[apps.web.health]\nintervl = \"1s\"\n"),
        "4:1",
        &["`intervl` in [apps.web.health]; did you mean `interval`?"],
    );
    assert_error(
        &web("health = { intervl = \"1s\" }\n"),
        "3:12",
        &["in [apps.web.health]; did you mean `interval`?"],
    );
    assert_error(
        &web("[apps.web.rolling]\nmax_surg = 1\n"),
        "4:1",
        &["did you mean `max_surge`?"],
    );
    assert_error(
        &web("[apps.web.blue_green]\nauto_promot = false\n"),
        "4:1",
        &["did you mean `auto_promote`?"],
    );
}

#[test]
fn unknown_keys_inside_canary_steps_and_sticky_tables_are_refused() {
    assert_error(
        &web("[apps.web.canary]\nsteps = [{ wieght = 10 }]\n"),
        "4:12",
        &["unknown key `wieght` in `apps.web.canary.steps[0]`; did you mean `weight`?"],
    );
    assert_error(
        &web("[apps.web.canary]\nsticky = { kind = \"cookie\", name = \"c\", maxage = \"1h\" }\n"),
        "4:41",
        &["unknown key `maxage`", "did you mean `max_age`?"],
    );
    assert_error(
        &web("[apps.web.ab_test]\nrules = [{ header = \"X\", vaule = \"1\" }]\n"),
        "4:26",
        &["did you mean `value`?"],
    );
}

#[test]
fn an_unknown_key_with_no_close_match_lists_the_valid_ones() {
    assert_error(
        &web("colour = 1\n"),
        "3:1",
        &["unknown key `colour` in [apps.web]; expected one of `runtime`, `command`"],
    );
    assert_error(
        "[store]\ncolour = \"red\"\n",
        "2:1",
        &["unknown key `colour` in [store]; the only valid key here is `path`"],
    );
}

#[test]
fn unknown_enum_values_suggest_the_closest() {
    assert_error(
        &web("strategy = \"canery\"\n"),
        "3:12",
        &["unknown value \"canery\" for `strategy` in [apps.web]; did you mean `canary`?"],
    );
    assert_error(
        "[apps.web]\nruntime = \"proces\"\ncommand = \"x\"\n",
        "2:11",
        &["for `runtime` in [apps.web]; did you mean `process`?"],
    );
    assert_error(
        &web("[apps.web.health]\nkind = \"htp\"\n"),
        "4:8",
        &["did you mean `http`?"],
    );
}

// --- syntax and types ---

#[test]
fn malformed_toml_points_at_the_spot() {
    assert_error(
        "[apps.web\ncommand = \"x\"\n",
        "1:10",
        &["invalid TOML: invalid table header"],
    );
    assert_error(
        &web("replicas = 2\nreplicas = 3\n"),
        "4:1",
        &["invalid TOML: duplicate key `replicas`"],
    );
    assert_error(&web("command = \n"), "3:11", &["invalid TOML"]);
}

#[test]
fn wrong_types_and_bad_values_name_the_key() {
    assert_error(
        &web("replicas = \"two\"\n"),
        "3:12",
        &[
            "invalid `replicas` in [apps.web]",
            "expected a whole number",
        ],
    );
    assert_error(
        &web("replicas = -1\n"),
        "3:12",
        &["invalid `replicas` in [apps.web]"],
    );
    assert_error(
        &web("[apps.web.health]\ninterval = \"5 parsecs\"\n"),
        "4:12",
        &["invalid `interval` in [apps.web.health]", "\"30s\""],
    );
    assert_error(
        &web("ports = \"9-1\"\n"),
        "3:9",
        &["invalid `ports` in [apps.web]", "FIRST-LAST"],
    );
    assert_error(
        "[proxy]\nlisten = [\"localhost:80\"]\n",
        "2:11",
        &["invalid `listen[0]` in [proxy]", "write IP:PORT"],
    );
    assert_error(
        "[proxy]\n\n[proxy.access_log]\nformat = \"common\"\n",
        "4:10",
        &[
            "unknown value \"common\" for `format` in [proxy.access_log]",
            "did you mean `combined`?",
        ],
    );
    assert_error(
        "[proxy.access_log]\nqueue = 0\n",
        "2:1",
        &["`queue` in [proxy.access_log] is 0", "use 1 to"],
    );
    assert_error(
        "[proxy.access_log]\npath = \"\"\n",
        "2:1",
        &[
            "`path` in [proxy.access_log] is empty",
            "\"-\" for standard output",
        ],
    );
    assert_error(
        "[proxy.access_log]\nfile = \"x\"\n",
        "2:1",
        &["file", "[proxy.access_log]", "path"],
    );
    assert_error(
        "[proxy.compression]\nalgorithms = [\"gzip\", \"brotli\"]\n",
        "2:23",
        &[
            "\"brotli\" in `algorithms` in [proxy.compression]",
            "written \"br\"",
            "use \"br\" or \"gzip\"",
        ],
    );
    assert_error(
        "[proxy.compression]\nalgorithms = [\"zstd\"]\n",
        "2:15",
        &["\"zstd\" in `algorithms`", "br and gzip only"],
    );
    assert_error(
        "[proxy.compression]\nalgorithms = []\n",
        "2:1",
        &[
            "`algorithms` in [proxy.compression] is empty",
            "remove [proxy.compression]",
        ],
    );
    assert_error(
        "[proxy.compression]\nalgorithms = [\"gzip\", \"gzip\"]\n",
        "2:23",
        &["listed twice"],
    );
    assert_error(
        "[proxy.compression]\nmin_size = \"1 parsec\"\n",
        "2:1",
        &["min_size \"1 parsec\"", "a number of bytes such as 1024"],
    );
    assert_error(
        "[proxy.compression]\nmin_size = true\n",
        "2:12",
        &[
            "min_size",
            "a number of bytes (1024) or a size such as \"1KiB\"",
        ],
    );
    assert_error(
        "[proxy.compression]\ntypes = [\"text/html\", \"text/html; charset=utf-8\"]\n",
        "2:23",
        &["has parameters", "\"text/html\""],
    );
    assert_error(
        "[proxy.compression]\ntypes = [\"*/*\"]\n",
        "2:10",
        &["would compress every type"],
    );
    assert_error(
        "[proxy.compression]\ntypes = [\"html\"]\n",
        "2:10",
        &["is not a media type", "type/subtype"],
    );
    assert_error(
        "[proxy.compression]\nlevel = 11\n",
        "2:1",
        &["`level` in [proxy.compression] is 11", "1 (fastest) to 9"],
    );
    assert_error(
        "[proxy.compression]\ngzip = true\n",
        "2:1",
        &["gzip", "[proxy.compression]"],
    );
    assert_error(
        "[proxy]\ntls_listen = [\"0.0.0.0:443\"]\n",
        "2:1",
        &[
            "`tls_listen` is set but there is no certificate",
            "[[proxy.tls.certificates]]",
        ],
    );
    assert_error(
        "[proxy]\nlisten = [\"0.0.0.0:8443\"]\ntls_listen = [\"0.0.0.0:8443\"]\n\n[[proxy.tls.certificates]]\ncert = \"c.pem\"\nkey = \"k.pem\"\n",
        "3:1",
        &["0.0.0.0:8443 is in both `listen` and `tls_listen`", "remove it from one of them"],
    );
    assert_error(
        "[[proxy.tls.certificates]]\ncert = \"c.pem\"\nkey = \"k.pem\"\n",
        "1:13",
        &[
            "certificates are given but nothing serves them",
            "tls_listen",
        ],
    );
    assert_error(
        "[proxy]\ntls_listen = [\"0.0.0.0:443\"]\n\n[[proxy.tls.certificates]]\ncert = \"c.pem\"\nkey = \"k.pem\"\nhosts = [\"https://example.com\"]\n",
        "7:1",
        &["host \"https://example.com\"", "not a DNS name", "no scheme"],
    );
    assert_error(
        "[proxy]\ntls_listen = [\"0.0.0.0:443\"]\n\n[[proxy.tls.certificates]]\ncert = \"c.pem\"\n",
        "4:1",
        &["missing key `key` in `proxy.tls.certificates[0]`"],
    );
    assert_error(
        "[proxy]\ntls_listen = [\"0.0.0.0:443\"]\n\n[[proxy.tls.certificates]]\ncert = \"c.pem\"\nkey = \"k.pem\"\nhosts = [\"a.test\"]\n\n[proxy.tls.acme]\n\n[apps.web]\ncommand = \"./web {port}\"\nhosts = [\"a.test\"]\ntls = \"acme\"\n",
        "7:1",
        &["host \"a.test\" has a certificate file here and ACME in [apps.web]", "keep one"],
    );
    assert_error(
        "[proxy]\ntls_listen = [\"0.0.0.0:443\"]\n\n[apps.web]\ncommand = \"./web {port}\"\nhosts = [\"a.test\"]\ntls = \"acme\"\n",
        "7:1",
        &["asks for `tls = \"acme\"` but there is no [proxy.tls.acme]", "add it"],
    );
    assert_error(
        "[proxy]\ntls_listen = [\"0.0.0.0:443\"]\n\n[proxy.tls.acme]\n\n[apps.web]\ncommand = \"./web {port}\"\nhosts = [\"*.a.test\"]\ntls = \"acme\"\n",
        "8:1",
        &["ACME gives no wildcard certificates", "on_demand"],
    );
    assert_error(
        "[proxy]\ntls_listen = [\"0.0.0.0:443\"]\n\n[proxy.tls.acme]\nchallenge = \"dns-01\"\n\n[proxy.tls.acme.on_demand]\nallow = [\"a.test\"]\n",
        "5:1",
        &["`challenge` \"dns-01\"", "\"http-01\"", "\"tls-alpn-01\""],
    );
    assert_error(
        "[proxy]\ntls_listen = [\"0.0.0.0:443\"]\n\n[proxy.tls.acme.on_demand]\n",
        "4:17",
        &["allows nothing", "never open-ended"],
    );
    assert_error(
        "[proxy]\nworkers = 1000\n",
        "2:1",
        &["`workers` in [proxy] is 1000", "0 for one per CPU core"],
    );
    assert_error(
        "[proxy]\nmax_request_body = \"12 parsecs\"\n",
        "2:1",
        &[
            "max_request_body \"12 parsecs\" has an unknown unit",
            "\"512MiB\"",
        ],
    );
    assert_error(
        "[proxy]\nmax_request_body = \"0MiB\"\n",
        "2:1",
        &[
            "`max_request_body` in [proxy] is 0",
            "remove the key for no limit",
        ],
    );
    assert_error(
        "[proxy]\nrequest_buffering = \"lots\"\n",
        "2:1",
        &[
            "request_buffering \"lots\" is not a size",
            "or \"off\" to stream every body at once",
        ],
    );
    assert_error(
        "[proxy]\nrequest_buffering = \"0KiB\"\n",
        "2:1",
        &["`request_buffering` in [proxy] is 0", "\"off\""],
    );
    assert_error(
        "[proxy]\nbody_read_timeout = \"0s\"\n",
        "2:1",
        &["`body_read_timeout` in [proxy] must be longer than zero"],
    );
    assert_error(
        "[proxy]\nworkers = -1\n",
        "2:11",
        &["invalid `workers` in [proxy]"],
    );
    assert_error(
        "[admin]\nlisten = \"tcp://x\"\n",
        "2:10",
        &["invalid `listen` in [admin]", "unix:PATH"],
    );
    assert_error(
        "[apps]\nweb = 3\n",
        "2:7",
        &["invalid `web` in [apps]", "expected a table"],
    );
    assert_error(
        &web("[apps.web.rolling]\nmax_surge = \"150%\"\n"),
        "4:13",
        &["percentage"],
    );
    assert_error(
        &web("[apps.web.canary]\nsteps = [{ pause = \"soon\" }]\n"),
        "4:20",
        &[
            "invalid `pause` in `apps.web.canary.steps[0]`",
            "or \"manual\"",
        ],
    );
}

// --- semantic checks ---

#[test]
fn app_names_must_be_safe() {
    assert_error(
        "[apps.\"my app\"]\ncommand = \"x\"\n",
        "1:7",
        &["app name \"my app\" is not valid"],
    );
}

#[test]
fn the_process_runtime_needs_a_command_and_static_refuses_one() {
    assert_error(
        "[apps.web]\nreplicas = 2\n",
        "1:7",
        &["no `command`", "command = \"./server --port {port}\""],
    );
    assert_error("[apps.web]\ncommand = \"  \"\n", "2:1", &["no `command`"]);
    assert_error(
        "[apps.api]\nruntime = \"static\"\ncommand = \"./api\"\n",
        "3:1",
        &["`command` in [apps.api] has no effect with runtime = \"static\""],
    );
}

#[test]
fn the_swarm_runtime_needs_an_overlay_network_and_refuses_engine_only_keys() {
    assert_error(
        "[apps.web]\nruntime = \"swarm\"\nimage = \"web:{version}\"\ncontainer_port = 8080\n",
        "1:7",
        &[
            "[apps.web] uses the swarm runtime but has no `network`",
            "docker network create --driver overlay --attachable web-net",
        ],
    );
    assert_error(
        "[apps.web]\nruntime = \"swarm\"\nimage = \"web:{version}\"\nnetwork = \"n\"\n",
        "1:7",
        &["[apps.web] uses the swarm runtime but has no `container_port`"],
    );
    assert_error(
        "[apps.web]\nruntime = \"swarm\"\nimage = \"web:{version}\"\ncontainer_port = 8080\nnetwork = \"n\"\npull = \"always\"\n",
        "6:1",
        &["`pull` in [apps.web] has no effect with runtime = \"swarm\""],
    );
    assert_error(
        "[apps.web]\nruntime = \"swarm\"\nimage = \"web:{version}\"\ncontainer_port = 8080\nnetwork = \"n\"\n[apps.web.swarm]\nconstraints = [\"node.role\"]\n",
        "7:16",
        &["constraint \"node.role\" in [apps.web.swarm] has no == or !="],
    );
    assert_error(
        &web("[apps.web.swarm]\nconstraints = [\"node.role==worker\"]\n"),
        "3:11",
        &["[apps.web.swarm] only applies to runtime = \"swarm\""],
    );
}

#[test]
fn replicas_must_be_at_least_one() {
    assert_error(
        &web("replicas = 0\n"),
        "3:1",
        &["`replicas` in [apps.web] is 0: use 1 or more"],
    );
}

#[test]
fn canary_steps_are_checked() {
    let canary = |steps: &str| web(&format!("[apps.web.canary]\nsteps = {steps}\n"));
    assert_error(
        &canary("[{ weight = 150 }]"),
        "4:12",
        &["canary weight 150 is above 100"],
    );
    assert_error(
        &canary("[{ weight = 50 }, { pause = \"1m\" }, { weight = 10 }]"),
        "4:47",
        &["weight 10 is below the previous step's 50"],
    );
    assert_error(
        &canary("[{ pause = \"1m\" }]"),
        "4:1",
        &["has no weight step"],
    );
    assert_error(&canary("[]"), "4:1", &["has no weight step"]);
    assert_error(
        &canary("[{ weight = 10, pause = \"1m\" }]"),
        "4:9",
        &["invalid `steps` in [apps.web.canary]", "not both"],
    );
    assert_error(&canary("[{}]"), "4:9", &["an empty canary step"]);
}

#[test]
fn targeting_rules_are_checked() {
    let rules =
        |section: &str, rules: &str| web(&format!("[apps.web.{section}]\nrules = {rules}\n"));
    assert_error(
        &rules(
            "canary",
            "[{ header = \"X-Role\", cookie = \"r\", value = \"admin\" }]",
        ),
        "4:10",
        &[
            "invalid rule `apps.web.canary.rules[0]`",
            "exactly one of `header",
        ],
    );
    assert_error(
        &rules("canary", "[{ header = \"X-Role\" }]"),
        "4:10",
        &["exactly one of `value"],
    );
    assert_error(
        &rules("ab_test", "[{ cookie = \"beta\", regex = \"(unclosed\" }]"),
        "4:29",
        &[
            "invalid regex in rule `apps.web.ab_test.rules[0]`",
            "unclosed group",
        ],
    );
    assert_error(
        &rules("canary", "[{ header = \"\", present = true }]"),
        "4:10",
        &["name is empty"],
    );
}

#[test]
fn sticky_settings_are_checked() {
    let sticky = |s: &str| web(&format!("[apps.web.canary]\nsticky = {s}\n"));
    assert_error(
        &sticky("{ kind = \"header\", name = \"X-User\", max_age = \"1h\" }"),
        "4:10",
        &["`max_age` applies only to kind = \"cookie\""],
    );
    assert_error(
        &sticky("{ kind = \"cookie\" }"),
        "4:10",
        &["missing key `name` in [apps.web.canary.sticky]"],
    );
    assert_error(
        &sticky("{ kind = \"coookie\", name = \"x\" }"),
        "4:19",
        &["did you mean `cookie`?"],
    );
}

#[test]
fn health_checks_are_checked() {
    let health = |h: &str| web(&format!("[apps.web.health]\n{h}\n"));
    assert_error(
        &health("interval = \"0s\""),
        "4:1",
        &["`interval` in [apps.web.health] must be longer than zero"],
    );
    assert_error(
        &health("timeout = \"0ms\""),
        "4:1",
        &["`timeout` in [apps.web.health] must be longer than zero"],
    );
    assert_error(
        &health("healthy = 0"),
        "4:1",
        &["`healthy` in [apps.web.health] is 0: use 1 or more"],
    );
    assert_error(
        &health("unhealthy = 0"),
        "4:1",
        &["`unhealthy` in [apps.web.health] is 0"],
    );
    assert_error(
        &health("path = \"health\""),
        "4:1",
        &["write a path starting with /"],
    );
    assert_error(
        &health("expect_status = [200, 999]"),
        "4:23",
        &["999 in `expect_status` is not an HTTP status"],
    );
}

#[test]
fn ab_test_weight_is_a_percentage() {
    assert_error(
        &web("[apps.web.ab_test]\nweight = 101\n"),
        "4:1",
        &["ab_test weight 101 is above 100"],
    );
}

#[test]
fn rolling_needs_room_to_move() {
    assert_error(
        &web("[apps.web.rolling]\nmax_surge = 0\nmax_unavailable = \"0%\"\n"),
        "4:1",
        &["leave no room to replace an instance"],
    );
}

#[test]
fn the_admin_api_on_tcp_requires_a_token_file() {
    assert_error(
        "[admin]\nlisten = \"127.0.0.1:9901\"\n",
        "2:1",
        &["requires `token_file` in [admin]", "any local user"],
    );
    assert_error(
        "[admin]\nlisten = \"0.0.0.0:9901\"\n",
        "2:1",
        &["requires `token_file`", "anyone on the network"],
    );
    let with_token = "[admin]\nlisten = \"0.0.0.0:9901\"\ntoken_file = \"t\"\n";
    assert!(parse(with_token, Path::new("baton.toml")).is_ok());
    assert_error(
        "[proxy]\nlisten = [\"127.0.0.1:9000\"]\n[admin]\nlisten = \"127.0.0.1:9000\"\ntoken_file = \"t\"\n",
        "4:1",
        &["both listen on 127.0.0.1:9000"],
    );
}

#[test]
fn the_dashboard_needs_the_admin_token_and_a_tcp_address() {
    assert_error(
        "[dashboard]\nlisten = \"127.0.0.1:9300\"\n",
        "1:2",
        &["the dashboard's login is the admin token", "token_file"],
    );
    assert_error(
        "[admin]\ntoken_file = \"t\"\n[dashboard]\n",
        "3:2",
        &[
            "needs a TCP address a browser can reach",
            "listen = \"127.0.0.1:9300\"",
        ],
    );
    assert_error(
        "[proxy]\nlisten = [\"127.0.0.1:9000\"]\n[admin]\ntoken_file = \"t\"\n[dashboard]\nlisten = \"127.0.0.1:9000\"\n",
        "6:1",
        &["the dashboard and the proxy both listen on 127.0.0.1:9000"],
    );
    assert_error(
        "[admin]\ntoken_file = \"t\"\n[dashboard]\nlisten = \"127.0.0.1:9300\"\nsession_lifetime = \"0s\"\n",
        "5:1",
        &["`session_lifetime`", "longer than zero"],
    );
    let ok =
        "[admin]\ntoken_file = \"t\"\n[dashboard]\nlisten = \"127.0.0.1:9300\"\nread_only = true\n";
    let cfg = parse(ok, Path::new("baton.toml")).unwrap();
    let d = cfg.dashboard.unwrap();
    assert!(d.read_only);
    assert_eq!(d.listen, Some("127.0.0.1:9300".parse().unwrap()));
    let on_admin = "[admin]\nlisten = \"127.0.0.1:9901\"\ntoken_file = \"t\"\n[dashboard]\n";
    assert!(parse(on_admin, Path::new("baton.toml"))
        .unwrap()
        .dashboard
        .is_some());
    assert!(parse("", Path::new("baton.toml"))
        .unwrap()
        .dashboard
        .is_none());
}

#[test]
fn listen_addresses_must_be_distinct_and_present() {
    assert_error(
        "[proxy]\nlisten = [\"127.0.0.1:8080\", \"0.0.0.0:8081\", \"127.0.0.1:8080\"]\n",
        "2:45",
        &["127.0.0.1:8080 is listed twice in `listen` in [proxy]"],
    );
    assert_error(
        "[proxy]\nlisten = []\n",
        "2:1",
        &["`listen` in [proxy] is empty"],
    );
}

#[test]
fn two_apps_may_not_claim_the_same_host_and_path() {
    let text = "[apps.a]\ncommand = \"a\"\n[apps.b]\ncommand = \"b\"\n";
    assert_error(
        text,
        "3:7",
        &["apps `a` and `b` both route any host with path /"],
    );
    let text = "[apps.a]\ncommand = \"a\"\nhosts = [\"Example.com\"]\npath = \"/api/\"\n\
                [apps.b]\ncommand = \"b\"\nhosts = [\"example.com\"]\npath = \"/api\"\n";
    assert_error(text, "8:1", &["both route host example.com with path /api"]);
    // Different hosts, or different paths, are fine.
    let ok = "[apps.a]\ncommand = \"a\"\nhosts = [\"a.com\"]\n[apps.b]\ncommand = \"b\"\nhosts = [\"b.com\"]\n\
              [apps.c]\ncommand = \"c\"\npath = \"/c\"\n";
    assert!(parse(ok, Path::new("baton.toml")).is_ok());
}

#[test]
fn hosts_and_paths_are_checked() {
    assert_error(
        &web("hosts = [\"https://example.com\"]\n"),
        "3:10",
        &["without scheme or path"],
    );
    assert_error(
        &web("hosts = [\"example.com:80\"]\n"),
        "3:10",
        &["must not include a port"],
    );
    assert_error(
        &web("hosts = [\"a.com\", \"A.com\"]\n"),
        "3:19",
        &["listed twice"],
    );
    assert_error(
        &web("path = \"api\"\n"),
        "3:1",
        &["path prefix starting with /"],
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = "[apps.web]\nreplicas = 0\n[apps.web.health]\nhealthy = 0\n";
    let err = parse(text, Path::new("conf/baton.toml")).unwrap_err();
    let ConfigError::Invalid(problems) = &err else {
        panic!("{err:?}");
    };
    let lines: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(
        lines[0].starts_with("conf/baton.toml:1:7: [apps.web] uses the process runtime"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with("conf/baton.toml:2:1: `replicas`"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].starts_with("conf/baton.toml:4:1: `healthy`"),
        "{}",
        lines[2]
    );
    assert_eq!(problems[1].key.as_deref(), Some("apps.web.replicas"));
    assert_eq!(err.to_string(), lines.join("\n"));
}

#[test]
fn the_cluster_needs_a_token_a_role_and_addresses_of_its_own() {
    assert_error(
        "[cluster]\nlisten = \"0.0.0.0:9400\"\n",
        "1:2",
        &["shared secret", "token_file = \"cluster.token\""],
    );
    assert_error(
        "[cluster]\ntoken_file = \"c\"\n",
        "1:2",
        &[
            "listen = \"0.0.0.0:9400\"",
            "controllers = [\"controller-host:9400\"]",
        ],
    );
    assert_error(
        "[proxy]\nlisten = [\"127.0.0.1:9000\"]\n[cluster]\ntoken_file = \"c\"\nlisten = \"127.0.0.1:9000\"\n",
        "5:1",
        &["127.0.0.1:9000 is already taken", "a port of its own"],
    );
    assert_error(
        "[cluster]\ntoken_file = \"c\"\ncontrollers = [\"ok:9400\", \"no-port\", \":9400\"]\n",
        "3:27",
        &["\"no-port\" is not HOST:PORT", "\":9400\" is not HOST:PORT"],
    );
    assert_error(
        "[cluster]\ntoken_file = \"c\"\ncontrollers = [\"c:9400\"]\nname = \"\"\n",
        "4:1",
        &["1 to 64 printable characters"],
    );
    let cfg = parse(
        "[cluster]\ntoken_file = \"c.token\"\ncontrollers = [\"baton-controller:9400\"]\nroutes_cache = \"routes.json\"\n",
        Path::new("/srv/baton/baton.toml"),
    )
    .unwrap();
    let c = cfg.cluster.unwrap();
    // Paths are the file's directory's.
    assert_eq!(c.token_file.unwrap(), Path::new("/srv/baton/c.token"));
    assert_eq!(c.routes_cache.unwrap(), Path::new("/srv/baton/routes.json"));
    assert_eq!(c.controllers, ["baton-controller:9400"]);
    assert_eq!(c.state, baton_config::ClusterState::Local);
}

#[test]
fn the_controller_state_in_the_swarm_is_checked_before_anything_starts() {
    let head = "[cluster]\ntoken_file = \"c\"\nlisten = \"0.0.0.0:9400\"\n";
    assert_error(
        &format!("{head}state = \"etcd\"\n"),
        "4:9",
        &["etcd", "local", "swarm"],
    );
    assert_error(
        &format!("{head}state = \"swarm\"\nstate_name = \"Baton_1\"\n"),
        "5:1",
        &[
            "\"Baton_1\" cannot name Swarm services",
            "lower-case letters",
        ],
    );
    assert_error(
        &format!("{head}state = \"swarm\"\nlease_ttl = \"500ms\"\n"),
        "5:1",
        &["too short for a lease", "\"2s\" or more"],
    );
    assert_error(
        "[cluster]\ntoken_file = \"c\"\ncontrollers = [\"c:9400\"]\nstate = \"swarm\"\n",
        "4:1",
        &[
            "state = \"swarm\" is the controller's",
            "listen = \"0.0.0.0:9400\"",
        ],
    );
    assert_error(
        &format!("{head}state = \"swarm\"\n\n[apps.web]\ncommand = \"./web\"\n"),
        "6:7",
        &[
            "app web's instances run on this machine",
            "runtime = \"swarm\"",
        ],
    );
    let cfg = parse(
        &format!("{head}state = \"swarm\"\nstate_name = \"shop\"\nlease_ttl = \"6s\"\n"),
        Path::new("/srv/baton/baton.toml"),
    )
    .unwrap();
    let c = cfg.cluster.unwrap();
    assert_eq!(c.state, baton_config::ClusterState::Swarm);
    assert_eq!(c.state_name(), "shop");
    assert_eq!(c.lease_ttl(), std::time::Duration::from_secs(6));
    let defaults = parse(head, Path::new("/srv/baton/baton.toml"))
        .unwrap()
        .cluster
        .unwrap();
    assert_eq!(defaults.state_name(), "baton");
    assert_eq!(defaults.lease_ttl(), std::time::Duration::from_secs(10));
}
