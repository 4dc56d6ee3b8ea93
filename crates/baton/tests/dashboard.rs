//! The web dashboard end to end: a real `baton serve`, the sample app under load, real
//! canaries and an A/B test, and a real headless Chromium (tests/common/browser.rs)
//! that logs in, watches, clicks and takes the screenshots kept in `docs/dashboard/`.
//! The credentials rules (wrong token, missing CSRF token, foreign Origin, read-only)
//! are checked both from the browser and with raw HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/browser.rs"]
mod browser;
mod common;
#[path = "common/prerequisite.rs"]
mod prerequisite;

use baton_loadgen::{Load, LoadSpec};
use browser::Browser;
use common::*;
use prerequisite::{run, tests, Test, CHROMIUM};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

fn main() {
    run(tests![
        a_live_canary_is_shown_step_by_step_and_abort_returns_traffic_to_stable[&CHROMIUM],
        a_failed_canary_is_explained_and_the_page_fits_a_phone[&CHROMIUM],
        the_ab_view_shows_significance_and_promote_picks_the_winner[&CHROMIUM],
        a_wrong_token_cannot_read_or_act_and_actions_need_the_csrf_token[&CHROMIUM],
        a_read_only_dashboard_shows_but_cannot_act[&CHROMIUM],
    ]);
}

const TOKEN: &str = "dashboard-test-token-7f3a9c2e51d04b68";

/// Where the screenshots go: `docs/dashboard/` of the repository.
fn shot(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/dashboard")
        .join(name)
}

struct Setup {
    b: Baton,
    dash: SocketAddr,
}

impl Setup {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.dash)
    }
}

/// baton with the token file, `[dashboard]` on a port of its own (plus `dashboard`
/// keys), and `apps`.
fn start(dashboard: &str, apps: &str) -> Setup {
    let port = free_port();
    let dash: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let b = Baton::start_full(
        free_port(),
        |_| String::new(),
        |dir| {
            std::fs::write(dir.join("admin.token"), format!("{TOKEN}\n")).unwrap();
            format!("token_file = \"{}/admin.token\"", dir.display())
        },
        &format!("{apps}\n[dashboard]\nlisten = \"{dash}\"\n{dashboard}\n"),
    );
    Setup { b, dash }
}

/// The `web` app of `analysis_app_config`, also routed by `hosts = ["web"]`.
fn web(strategy: &str, faults: &str, steps: &str, analysis: &str) -> String {
    analysis_app_config(strategy, faults, steps, analysis).replacen(
        "strategy = ",
        "hosts = [\"web\", \"localhost\"]\nstrategy = ",
        1,
    )
}

/// A second app, `api`, for the overview.
fn api() -> String {
    app_config("rolling", 1, "")
        .replace("[apps.web", "[apps.api")
        .replace("strategy = ", "hosts = [\"api\"]\nstrategy = ")
}

const LONG_STEPS: &str =
    r#"[{ weight = 20 }, { pause = "10m" }, { weight = 50 }, { pause = "10m" }]"#;

/// A raw HTTP/1.1 request to the dashboard listener: (status, head, body).
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_string(), body.to_string())
}

/// Logs in with raw HTTP: the session cookie (`name=value`) and the page's CSRF token.
fn login(addr: SocketAddr) -> (String, String) {
    let (status, head, _) = http(
        addr,
        "POST",
        "/ui/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &format!("token={TOKEN}"),
    );
    assert_eq!(status, 303, "{head}");
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let (status, _, page) = http(addr, "GET", "/ui/", &[("Cookie", &cookie)], "");
    assert_eq!(status, 200);
    let csrf = page
        .split("name=\"baton-csrf\" content=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    (cookie, csrf)
}

/// Opens the browser, logs in with the link `baton demo` prints (`#token=`), and waits
/// for the overview.
async fn logged_in(s: &Setup) -> Browser {
    let mut br = Browser::launch().await;
    br.goto(&s.url(&format!("/ui/login#token={TOKEN}"))).await;
    br.wait_for(
        "location.pathname === '/ui/' && !!document.querySelector('#apps tr[data-app]')",
        "the overview after logging in",
    )
    .await;
    br
}

/// Every request the page made went to the dashboard itself.
fn only_own_requests(br: &Browser, s: &Setup) {
    let own = format!("http://{}/", s.dash);
    let foreign: Vec<&String> = br
        .requests
        .iter()
        .filter(|u| !u.starts_with(&own) && !u.starts_with("data:") && *u != "about:blank")
        .collect();
    assert!(
        foreign.is_empty(),
        "requests outside the dashboard: {foreign:?}"
    );
    assert!(
        br.requests.iter().any(|u| u.ends_with("/ui/assets/app.js")),
        "the request log recorded the page's own files: {:?}",
        br.requests
    );
    let errors: Vec<&String> = br
        .console
        .iter()
        .filter(|c| c.starts_with("exception"))
        .collect();
    assert!(
        errors.is_empty(),
        "uncaught exceptions in the page: {errors:?}"
    );
}

/// Deploys v1 of `web` and starts load on it through the proxy (the runtime the load
/// runs on, and the load).
fn v1_under_load(s: &Setup) -> (tokio::runtime::Runtime, Load) {
    s.b.cli_ok(&["deploy", "web", "v1"], 0);
    let rt = rt();
    let load = rt.block_on(async {
        Load::start(LoadSpec {
            host: "web".into(),
            ..LoadSpec::new(s.b.proxy)
        })
    });
    (rt, load)
}

/// Served by which version, over 40 fresh requests through the proxy.
fn versions_served(b: &Baton) -> std::collections::BTreeMap<String, u32> {
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..40 {
        let resp = proxy_get(b, "/");
        let v = resp
            .lines()
            .find_map(|l| l.strip_prefix("x-version: "))
            .unwrap_or("none")
            .trim()
            .to_string();
        *seen.entry(v).or_insert(0) += 1;
    }
    seen
}

fn a_live_canary_is_shown_step_by_step_and_abort_returns_traffic_to_stable() {
    let s = start(
        "",
        &(web(
            "canary",
            "",
            LONG_STEPS,
            "interval = \"1s\"\nmin_requests = 20\nmax_error_rate = 0.05",
        ) + &api()),
    );
    s.b.cli_ok(&["deploy", "api", "v1"], 0);
    let (rt, load) = v1_under_load(&s);
    rt.block_on(async {
        let mut br = logged_in(&s).await;
        // The overview lists both apps with what they serve.
        let rows = br
            .eval("[...document.querySelectorAll('#apps tr[data-app]')].map(r => r.dataset.app).join(',')")
            .await;
        assert_eq!(rows, "api,web");
        br.click("#apps tr[data-app='web'] a").await;
        br.wait_for(
            "location.pathname === '/ui/apps/web' && document.querySelector('#weights .seg[data-version=\"v1\"]')?.dataset.weight === '100'",
            "web's page serving v1 at 100%",
        )
        .await;
        br.eval("window.stillTheSamePage = true").await;

        // The canary starts while the page is open: the weights change in place.
        s.b.cli_ok(&["deploy", "web", "v2", "--detach"], 0);
        br.wait_for(
            "document.querySelector('#weights .seg[data-version=\"v2\"]')?.dataset.weight === '20' && document.querySelector('#weights .seg[data-version=\"v1\"]')?.dataset.weight === '80'",
            "the weights moving to v2 20% / v1 80%",
        )
        .await;
        assert_eq!(br.eval("window.stillTheSamePage === true").await, true, "live, not reloaded");
        let painted = br
            .eval("getComputedStyle(document.querySelector('#weights .seg[data-version=\"v2\"]')).backgroundColor")
            .await;
        assert_ne!(painted, "rgba(0, 0, 0, 0)", "the weight bar has its colours");
        // The timeline of the deployment's steps, the current one marked.
        let steps = br.eval("[...document.querySelectorAll('#timeline li')].map(l => l.textContent).join('|')").await;
        assert_eq!(steps, "weight 20%|pause 10m|weight 50%|pause 10m|full rollout of v2", "{steps}");
        br.wait_for(
            "document.querySelector('#timeline li[aria-current=step]')?.textContent === 'pause 10m'",
            "the pause after 20% as the current step",
        )
        .await;
        // The judge's verdicts with their evidence, and both versions in the charts.
        let verdict = br
            .wait_for(
                "document.querySelector('#verdicts li[data-verdict=pass]')?.textContent",
                "a passing verdict of the canary judge",
            )
            .await;
        let verdict = verdict.as_str().unwrap();
        assert!(
            verdict.contains("canary v2") && verdict.contains("against v1"),
            "the evidence names the canary and what it is judged against: {verdict}"
        );
        assert!(verdict.contains("err"), "{verdict}");
        br.wait_for(
            "!!document.querySelector('#chart-rps path[data-version=\"v2\"]') && !!document.querySelector('#chart-p99 path[data-version=\"v1\"]')",
            "per-version lines in the charts",
        )
        .await;
        br.wait_for(
            "document.querySelectorAll('#chart-rps path[data-version=\"v2\"]').length === 1 && document.querySelector('#chart-rps path[data-version=\"v2\"]').getAttribute('d').split('L').length > 3",
            "a few seconds of the canary's traffic in the chart",
        )
        .await;
        br.screenshot(&shot("canary.png")).await;

        // Overview while the canary runs (a second look, then back).
        br.goto(&s.url("/ui/")).await;
        br.wait_for(
            "document.querySelector('#waiting li[data-app=web]')?.textContent.includes('pause 10m')",
            "the running canary in the overview",
        )
        .await;
        br.screenshot(&shot("overview.png")).await;
        br.goto(&s.url("/ui/apps/web")).await;
        br.wait_for("!!document.querySelector('#act-abort:not([disabled])')", "the Abort button").await;

        // Abort from the keyboard: focus, Enter opens the confirmation that names the effect.
        br.eval("document.getElementById('act-abort').focus()").await;
        br.press("Enter").await;
        let effect = br
            .wait_for(
                "document.getElementById('confirm').open && document.getElementById('confirm-effect').textContent",
                "the confirmation dialog",
            )
            .await;
        let effect = effect.as_str().unwrap();
        assert!(effect.contains("all traffic returns to v1"), "{effect}");
        assert!(effect.contains("instances of v2 are drained and stopped"), "{effect}");
        br.click("#confirm-ok").await;
        br.wait_for(
            "document.querySelector('#deployment .badge')?.dataset.state === 'aborted' && document.querySelector('#weights .seg[data-version=\"v1\"]')?.dataset.weight === '100'",
            "the page showing the abort and v1 at 100%",
        )
        .await;
        only_own_requests(&br, &s);
    });
    let report = rt.block_on(load.stop());
    assert_eq!(report.failed, 0, "{report:?}");
    let st = s.b.status();
    assert_eq!(st["stable_version"], "v1", "{st:#}");
    assert_eq!(st["deployment"]["state"], "aborted", "{st:#}");
    let served = versions_served(&s.b);
    assert_eq!(
        served.keys().collect::<Vec<_>>(),
        ["v1"],
        "through the proxy: {served:?}"
    );
}

fn a_failed_canary_is_explained_and_the_page_fits_a_phone() {
    let s = start(
        "",
        &web(
            "canary",
            "--error-rate-for-version v2=0.25",
            LONG_STEPS,
            "interval = \"1s\"\nmin_requests = 30\nmax_error_rate = 0.02",
        ),
    );
    let (rt, load) = v1_under_load(&s);
    rt.block_on(async {
        let mut br = logged_in(&s).await;
        br.goto(&s.url("/ui/apps/web")).await;
        br.wait_for("!!document.querySelector('#weights')", "web's page").await;
        s.b.cli_ok(&["deploy", "web", "v2", "--detach"], 0);
        let why = br
            .wait_for(
                "document.querySelector('#deployment .badge')?.dataset.state === 'failed' && document.querySelector('#verdicts li[data-verdict=fail]')?.textContent",
                "the failed verdict and the failed deployment",
            )
            .await;
        let why = why.as_str().unwrap();
        assert!(why.contains("error rate"), "{why}");
        assert!(why.contains("2.0%"), "the limit: {why}");
        assert!(why.contains("canary v2") && why.contains("err"), "the figures: {why}");
        let reason = br.eval("document.getElementById('reason').textContent").await;
        assert!(reason.as_str().unwrap().contains("analysis failed"), "{reason}");
        // History: the failed deployment with its reason, and the delivery figures.
        br.wait_for(
            "document.querySelector('#history-table tr[data-id] .badge')?.dataset.state === 'failed'",
            "the failed deployment in the history",
        )
        .await;
        br.wait_for(
            "document.getElementById('dep-h')?.textContent === 'Last deployment'",
            "the deployment finished (rolled back to v1)",
        )
        .await;
        let delivery = br.eval("document.getElementById('delivery').textContent").await;
        let delivery = delivery.as_str().unwrap();
        assert!(delivery.contains("2 (0.29 a day)"), "v1 and v2 in 7 days: {delivery}");
        assert!(delivery.contains("50.0%"), "one of two failed: {delivery}");
        br.screenshot(&shot("failed-canary.png")).await;

        // A phone: nothing wider than the screen, the actions still there.
        br.viewport(390, 844, true).await;
        br.goto(&s.url("/ui/apps/web")).await;
        br.wait_for("!!document.querySelector('#verdicts li')", "the page at phone width").await;
        let fits = br
            .eval("document.documentElement.scrollWidth <= window.innerWidth + 1")
            .await;
        assert_eq!(fits, true, "the page scrolls sideways at 390 px");
        let visible = br
            .eval("(() => { const r = document.getElementById('act-rollback').getBoundingClientRect(); return r.width > 40 && r.right <= window.innerWidth; })()")
            .await;
        assert_eq!(visible, true);
        br.screenshot(&shot("phone.png")).await;
        only_own_requests(&br, &s);
    });
    let report = rt.block_on(load.stop());
    assert!(
        report.by_version.get("v1").copied().unwrap_or(0) > 0,
        "{report:?}"
    );
    assert_eq!(s.b.status()["stable_version"], "v1");
}

fn the_ab_view_shows_significance_and_promote_picks_the_winner() {
    let s = start(
        "",
        &(web(
            "ab_test",
            "--error-rate-for-version v2=0.3",
            LONG_STEPS,
            "interval = \"1s\"",
        ) + "[apps.web.ab_test]\nweight = 50\n"),
    );
    let (rt, load) = v1_under_load(&s);
    rt.block_on(async {
        let mut br = logged_in(&s).await;
        br.goto(&s.url("/ui/apps/web")).await;
        s.b.cli_ok(&["deploy", "web", "v2", "--detach"], 0);
        let row = br
            .wait_for(
                "(() => { const r = document.querySelector('#ab-table tr[data-variant=v2]'); return r && Number(r.cells[1].textContent) >= 200 && r.textContent.includes('differs') && r.textContent; })()",
                "the A/B table showing v2's error rate as significantly different after 200 requests",
            )
            .await;
        let row = row.as_str().unwrap();
        assert!(row.contains("p = < 0.001"), "{row}");
        let control = br.eval("document.querySelector('#ab-table tr[data-variant=v1]').textContent").await;
        assert!(control.as_str().unwrap().contains("(control)"), "{control}");
        br.screenshot(&shot("ab-test.png")).await;
        // Promote from the page: the dialog asks for the winner.
        br.click("#act-promote").await;
        br.wait_for("document.getElementById('confirm').open", "the promote dialog").await;
        br.eval("document.getElementById('confirm-variant').value = 'v1'").await;
        br.click("#confirm-ok").await;
        br.wait_for(
            "document.querySelector('#deployment .badge')?.dataset.state === 'succeeded' && document.getElementById('serving').textContent === 'v1'",
            "v1 kept as the winner",
        )
        .await;
        only_own_requests(&br, &s);
    });
    rt.block_on(load.stop());
    let st = s.b.status();
    assert_eq!(st["stable_version"], "v1", "{st:#}");
    assert_eq!(st["weights"].as_object().unwrap().len(), 1, "{st:#}");
}

fn a_wrong_token_cannot_read_or_act_and_actions_need_the_csrf_token() {
    let s = start("", &web("canary", "", LONG_STEPS, "interval = \"1s\""));
    s.b.cli_ok(&["deploy", "web", "v1"], 0);
    s.b.cli_ok(&["deploy", "web", "v2", "--detach"], 0);
    s.b.wait_status("the canary at 20%", |st| st["weights"]["v2"] == 20);
    rt().block_on(async {
        let mut br = Browser::launch().await;
        // A wrong token: the login page again, and nothing readable.
        br.goto(&s.url("/ui/login")).await;
        br.eval("document.getElementById('token').focus()").await;
        br.type_text("not-the-token").await;
        br.press("Enter").await;
        br.wait_for(
            "document.querySelector('.error')?.textContent.includes('not the admin token')",
            "the wrong-token message",
        )
        .await;
        let read = br.eval("fetch('/v1/apps/web').then(r => r.status)").await;
        assert_eq!(read, 401);
        let act = br
            .eval("fetch('/v1/apps/web/abort', {method: 'POST', headers: {'X-Baton-CSRF': 'x'}}).then(r => r.status)")
            .await;
        assert_eq!(act, 401);
        br.goto(&s.url("/ui/apps/web")).await;
        assert_eq!(br.eval("location.pathname").await, "/ui/login", "pages need a login");

        // Logged in, an action without the page's CSRF token is refused.
        br.goto("about:blank").await;
        br.goto(&s.url(&format!("/ui/login#token={TOKEN}"))).await;
        br.wait_for("location.pathname === '/ui/'", "the overview").await;
        let no_csrf = br
            .eval("fetch('/v1/apps/web/abort', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: '{}'}).then(async r => [r.status, await r.text()])")
            .await;
        assert_eq!(no_csrf[0], 403, "{no_csrf}");
        assert!(no_csrf[1].as_str().unwrap().contains("X-Baton-CSRF"), "{no_csrf}");
        let wrong_csrf = br
            .eval("fetch('/v1/apps/web/pause', {method: 'POST', headers: {'X-Baton-CSRF': '0123'}}).then(r => r.status)")
            .await;
        assert_eq!(wrong_csrf, 403);
        let readable = br.eval("fetch('/v1/apps/web').then(r => r.status)").await;
        assert_eq!(readable, 200, "a session reads");
        let with_csrf = br
            .eval("fetch('/v1/apps/web/pause', {method: 'POST', headers: {'X-Baton-CSRF': document.querySelector('meta[name=baton-csrf]').content}}).then(r => r.status)")
            .await;
        assert_eq!(with_csrf, 200, "the page's own token acts");
        // The HttpOnly cookie is not readable from the page.
        assert_eq!(br.eval("document.cookie").await, "");
    });
    let st = s.b.status();
    assert_eq!(
        st["deployment"]["state"], "paused",
        "only the action with the token happened: {st:#}"
    );
    assert_eq!(st["weights"]["v2"], 20, "{st:#}");

    // Raw HTTP: another site's page (Origin) cannot act even with the CSRF token; a
    // wrong bearer token and a forged cookie cannot read.
    let (cookie, csrf) = login(s.dash);
    let (status, _, body) = http(
        s.dash,
        "POST",
        "/v1/apps/web/abort",
        &[
            ("Cookie", &cookie),
            ("X-Baton-CSRF", &csrf),
            ("Origin", "http://evil.example"),
        ],
        "{}",
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("Origin"), "{body}");
    let (status, _, _) = http(
        s.dash,
        "GET",
        "/v1/apps",
        &[("Authorization", "Bearer wrong")],
        "",
    );
    assert_eq!(status, 401);
    let forged = format!("{cookie}0");
    let (status, _, _) = http(s.dash, "GET", "/v1/apps", &[("Cookie", &forged)], "");
    assert_eq!(status, 401);
    let (status, _, _) = http(s.dash, "GET", "/ui/feed?app=web", &[], "");
    assert_eq!(status, 303, "the feed needs a login");
    let bearer = format!("Bearer {TOKEN}");
    let (status, _, body) = http(
        s.dash,
        "GET",
        "/v1/apps/web",
        &[("Authorization", &bearer)],
        "",
    );
    assert_eq!(
        status, 200,
        "the token itself works as on the admin API: {body}"
    );
    // Logging out ends the session at once.
    let (status, _, _) = http(s.dash, "POST", "/ui/logout", &[("Cookie", &cookie)], "");
    assert_eq!(status, 303);
    let (status, _, _) = http(s.dash, "GET", "/v1/apps", &[("Cookie", &cookie)], "");
    assert_eq!(status, 401, "a logged-out cookie reads nothing");
    assert_eq!(s.b.status()["deployment"]["state"], "paused");
}

fn a_read_only_dashboard_shows_but_cannot_act() {
    let s = start(
        "read_only = true",
        &web("canary", "", LONG_STEPS, "interval = \"1s\""),
    );
    s.b.cli_ok(&["deploy", "web", "v1"], 0);
    s.b.cli_ok(&["deploy", "web", "v2", "--detach"], 0);
    s.b.wait_status("the canary at 20%", |st| st["weights"]["v2"] == 20);
    rt().block_on(async {
        let mut br = logged_in(&s).await;
        br.goto(&s.url("/ui/apps/web")).await;
        br.wait_for(
            "document.getElementById('actions')?.textContent.includes('Read-only')",
            "the read-only note instead of actions",
        )
        .await;
        assert_eq!(br.eval("document.querySelectorAll('#actions button').length").await, 0);
        let act = br
            .eval("fetch('/v1/apps/web/abort', {method: 'POST', headers: {'X-Baton-CSRF': document.querySelector('meta[name=baton-csrf]').content}}).then(r => r.status)")
            .await;
        assert_eq!(act, 403);
        only_own_requests(&br, &s);
    });
    let (cookie, csrf) = login(s.dash);
    let (status, _, body) = http(
        s.dash,
        "POST",
        "/v1/apps/web/abort",
        &[("Cookie", &cookie), ("X-Baton-CSRF", &csrf)],
        "{}",
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("read-only"), "{body}");
    let st = s.b.status();
    assert_eq!(st["deployment"]["state"], "running", "{st:#}");
}
