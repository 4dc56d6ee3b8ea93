// baton dashboard: draws the overview (/ui/) or one app (/ui/apps/NAME) from the admin
// API and the live feed (/ui/feed, Server-Sent Events). No framework, no external
// request; every text goes in through textContent, never as HTML.
"use strict";

const CSRF = document.querySelector('meta[name="baton-csrf"]').content;
const READ_ONLY = document.querySelector('meta[name="baton-read-only"]').content === "true";
const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"];
const KEEP_POINTS = 600;

// ---- small helpers -------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    // Through the CSSOM: the page's Content Security Policy refuses style attributes.
    else if (k === "style") Object.assign(el.style, v);
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// Replaces el's children, leaving out the null / false ones (`cond ? node : null`).
function fill(el, ...children) {
  el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const colors = new Map();
function colorOf(version) {
  if (!colors.has(version)) colors.set(version, PALETTE[colors.size % PALETTE.length]);
  return colors.get(version);
}

function pct(x) {
  if (x === null || x === undefined) return "–";
  const p = x * 100;
  return (p === 0 ? "0" : p < 1 ? p.toFixed(2) : p.toFixed(1)) + "%";
}
function ms(x) {
  if (x === null || x === undefined) return "–";
  return (x < 10 ? x.toFixed(2) : x < 100 ? x.toFixed(1) : Math.round(x)) + " ms";
}
function rate(x) {
  return x < 10 ? x.toFixed(1) : String(Math.round(x));
}
function duration(msec) {
  if (msec === null || msec === undefined) return "–";
  const s = msec / 1000;
  if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.round((s % 3600) / 60) + " min";
}
function when(millis) {
  return millis ? new Date(millis).toLocaleString() : "–";
}
function ago(millis) {
  const s = Math.max(0, (Date.now() - millis) / 1000);
  if (s < 60) return Math.round(s) + " s ago";
  if (s < 3600) return Math.round(s / 60) + " min ago";
  if (s < 86400) return Math.round(s / 3600) + " h ago";
  return Math.round(s / 86400) + " d ago";
}

function toast(text, bad) {
  const t = document.getElementById("toast");
  t.textContent = text;
  t.className = bad ? "show bad" : "show";
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (t.className = ""), 6000);
}

async function api(method, path, body) {
  const init = { method, headers: {}, credentials: "same-origin" };
  if (method !== "GET") {
    init.headers["X-Baton-CSRF"] = CSRF;
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body || {});
  }
  const r = await fetch(path, init);
  if (r.status === 401) {
    location.href = "/ui/login";
    throw new Error("logged out");
  }
  const text = await r.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (_) {
    data = { error: text };
  }
  if (!r.ok) throw new Error((data && data.error) || r.status + " " + r.statusText);
  return data;
}

function deploymentRunning(st) {
  return !!(st.deployment && !st.deployment.finished_at);
}

function stateBadge(state, extra) {
  return h("span", { class: "badge " + state, "data-state": state }, state + (extra ? " " + extra : ""));
}

function waitingFor(st) {
  const d = st.deployment;
  if (!d || d.finished_at) return null;
  if (d.frozen) return "frozen: " + d.frozen;
  if (d.state === "paused") return d.reason || "paused";
  if (d.reason && /waiting/.test(d.reason)) return d.reason;
  return null;
}

// ---- the live feed -------------------------------------------------------------------

function connect(app, handlers) {
  const live = document.getElementById("live");
  const url = "/ui/feed" + (app ? "?app=" + encodeURIComponent(app) : "");
  const es = new EventSource(url);
  es.onopen = () => {
    live.textContent = "live";
    live.className = "live on";
  };
  es.onerror = () => {
    live.textContent = "reconnecting…";
    live.className = "live off";
  };
  for (const [name, fn] of Object.entries(handlers)) {
    es.addEventListener(name, (e) => fn(JSON.parse(e.data)));
  }
  return es;
}

// ---- overview ------------------------------------------------------------------------

function overview() {
  const main = document.getElementById("main");
  document.getElementById("crumbs").replaceChildren(h("span", {}, "Apps"));
  const waiting = h("section", { id: "waiting", "aria-labelledby": "waiting-h" });
  const body = h("tbody", { id: "apps" });
  fill(main, 
    h("h1", {}, "Apps"),
    waiting,
    h("section", { "aria-labelledby": "apps-h" },
      h("h2", { id: "apps-h", class: "sr-only" }, "Every app"),
      h("div", { class: "scroll" },
        h("table", { class: "apps" },
          h("thead", {}, h("tr", {},
            h("th", { scope: "col" }, "App"),
            h("th", { scope: "col" }, "Serving"),
            h("th", { scope: "col" }, "Instances"),
            h("th", { scope: "col", class: "num" }, "req/s"),
            h("th", { scope: "col", class: "num" }, "Errors"),
            h("th", { scope: "col", class: "num" }, "p99"),
            h("th", { scope: "col" }, "Deployment"))),
          body))));
  connect(null, {
    frame: (f) => {
      const rows = f.apps.map((st) => {
        const rps = st.traffic.reduce((a, t) => a + t.rps, 0);
        const reqs = st.traffic.reduce((a, t) => a + t.requests, 0);
        const errs = st.traffic.reduce((a, t) => a + t.errors, 0);
        const p99 = st.traffic.reduce((a, t) => Math.max(a, t.p99_ms), 0);
        const healthy = st.instances.filter((i) => i.healthy).length;
        const d = st.deployment;
        const dep = !d ? h("span", { class: "muted" }, "none")
          : d.finished_at
            ? h("span", {}, stateBadge(d.state), " ", d.version, " ", h("span", { class: "muted" }, ago(d.finished_at)))
            : h("span", {}, stateBadge(d.state), " ", d.version, " — ", d.step);
        return h("tr", { "data-app": st.app },
          h("th", { scope: "row" }, h("a", { href: "/ui/apps/" + encodeURIComponent(st.app) }, st.app)),
          h("td", {}, st.stable_version || h("span", { class: "muted" }, "nothing yet"),
            Object.keys(st.weights).length > 1
              ? h("span", { class: "muted" }, " (" + Object.entries(st.weights).map(([v, w]) => v + " " + w + "%").join(", ") + ")")
              : null),
          h("td", { class: healthy < st.instances.length ? "warn" : "" }, healthy + " / " + st.instances.length + " healthy"),
          h("td", { class: "num" }, rate(rps)),
          h("td", { class: "num" + (errs > 0 ? " bad" : "") }, reqs ? pct(errs / reqs) : "–"),
          h("td", { class: "num" }, reqs ? ms(p99) : "–"),
          h("td", {}, dep));
      });
      patchRows(body, rows.length ? rows : [h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No apps configured."))]);
      const pending = f.apps.filter((st) => waitingFor(st));
      const running = f.apps.filter((st) => deploymentRunning(st) && !waitingFor(st));
      const waitingNow = h("div", {}, 
        h("h2", { id: "waiting-h" }, "Deployments"),
        pending.length || running.length
          ? h("ul", { class: "waiting" },
            pending.map((st) => h("li", { class: "attention", "data-app": st.app },
              h("a", { href: "/ui/apps/" + encodeURIComponent(st.app) }, st.app), " ", st.deployment.version, " — waiting for you: ", waitingFor(st))),
            running.map((st) => h("li", { "data-app": st.app },
              h("a", { href: "/ui/apps/" + encodeURIComponent(st.app) }, st.app), " ", st.deployment.version, " — ", st.deployment.step)))
          : h("p", { class: "muted" }, "Nothing running, nothing waiting for a promote."));
      if (waiting.innerHTML !== waitingNow.innerHTML) fill(waiting, ...waitingNow.childNodes);
    },
  });
}

// Puts `rows` into `body`, touching only the cells that changed: a link or button that
// did not change stays the same element, so a click or the keyboard focus is not lost
// to the once-a-second refresh.
function patchRows(body, rows) {
  const old = [...body.rows];
  rows.forEach((row, i) => {
    const was = old[i];
    if (!was || was.cells.length !== row.cells.length || was.dataset.app !== row.dataset.app) {
      if (was) body.replaceChild(row, was);
      else body.append(row);
      return;
    }
    [...row.cells].forEach((cell, j) => {
      if (was.cells[j].outerHTML !== cell.outerHTML) was.replaceChild(cell, was.cells[j]);
    });
  });
  for (const extra of old.slice(rows.length)) extra.remove();
}

// ---- charts --------------------------------------------------------------------------

// series: Map version -> [[t, value], ...]; draws one line per version.
function chart(title, series, fmt, id) {
  const W = 320, H = 120, L = 44, B = 18, T = 8, R = 6;
  let tMin = Infinity, tMax = -Infinity, vMax = 0;
  for (const pts of series.values()) {
    for (const [t, v] of pts) {
      tMin = Math.min(tMin, t);
      tMax = Math.max(tMax, t);
      vMax = Math.max(vMax, v);
    }
  }
  const figure = h("figure", { class: "chart", id });
  figure.append(h("figcaption", {}, title));
  const box = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title });
  if (!isFinite(tMin)) {
    box.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" }, "no traffic yet"));
    figure.append(box);
    return figure;
  }
  if (vMax === 0) vMax = 1;
  const span = Math.max(tMax - tMin, 1000);
  const x = (t) => L + ((t - tMin) / span) * (W - L - R);
  const y = (v) => T + (1 - v / vMax) * (H - T - B);
  box.append(
    svg("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }),
    svg("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }),
    svg("line", { x1: L, y1: y(vMax / 2), x2: W - R, y2: y(vMax / 2), class: "grid" }),
    svg("text", { x: L - 4, y: T + 8, "text-anchor": "end" }, fmt(vMax)),
    svg("text", { x: L - 4, y: H - B, "text-anchor": "end" }, fmt(0)),
    svg("text", { x: W - R, y: H - 4, "text-anchor": "end" }, "now"),
    svg("text", { x: L, y: H - 4 }, "−" + duration(span)));
  for (const [version, pts] of series) {
    if (!pts.length) continue;
    const d = pts.map(([t, v], i) => (i ? "L" : "M") + x(t).toFixed(1) + " " + y(v).toFixed(1)).join(" ");
    box.append(svg("path", { d, stroke: colorOf(version), class: "line", "data-version": version }));
  }
  figure.append(box);
  figure.append(h("p", { class: "legend" },
    [...series.keys()].map((v) => h("span", {}, h("i", { style: { background: colorOf(v) } }), v))));
  return figure;
}

// ---- one app -------------------------------------------------------------------------

function appPage(app) {
  const main = document.getElementById("main");
  document.getElementById("crumbs").replaceChildren(
    h("a", { href: "/ui/" }, "Apps"), " / ", h("span", { "aria-current": "page" }, app));
  document.title = app + " — baton";
  const points = [];
  const events = [];
  let status = null;
  // What each section was last drawn from: a section whose data did not change is not
  // redrawn, so focus, open details and text selection survive the once-a-second frames.
  const drawn = new Map();
  function draw(section, data, fn) {
    const key = JSON.stringify(data);
    if (drawn.get(section) === key) return;
    drawn.set(section, key);
    const focused = document.activeElement && document.activeElement.id;
    fn();
    if (focused && document.activeElement && document.activeElement.id !== focused) {
      const again = document.getElementById(focused);
      if (again) again.focus();
    }
  }

  const el = {
    head: h("div", { class: "apphead" }),
    actions: h("div", { class: "actions", id: "actions", role: "toolbar", "aria-label": "Actions" }),
    deployment: h("section", { id: "deployment", "aria-labelledby": "dep-h" }),
    charts: h("section", { id: "charts", "aria-labelledby": "charts-h" }),
    judge: h("section", { id: "judge", "aria-labelledby": "judge-h" }),
    experiment: h("section", { id: "experiment", "aria-labelledby": "ab-h" }),
    instances: h("section", { id: "instances", "aria-labelledby": "inst-h" }),
    history: h("section", { id: "history", "aria-labelledby": "hist-h" }),
    events: h("section", { id: "events", "aria-labelledby": "ev-h" }),
  };
  fill(main, el.head, el.actions, el.deployment, el.charts, el.judge, el.experiment, el.instances, el.history, el.events);
  const openLogs = new Set();

  function renderHead(st) {
    fill(el.head, 
      h("h1", {}, app),
      h("p", {},
        "Serving ", h("strong", { id: "serving" }, st.stable_version || "nothing yet"),
        st.previous_version ? h("span", { class: "muted" }, " (previous " + st.previous_version + ")") : null,
        st.warm ? h("span", { class: "muted" }, " — " + st.warm.version + " kept warm until " + when(st.warm.until)) : null),
      st.store_error ? h("p", { class: "error", role: "alert" }, "The store fails: " + st.store_error) : null,
      weightsBar(st));
  }

  function weightsBar(st) {
    const entries = Object.entries(st.weights);
    const bar = h("div", { class: "weights", id: "weights", role: "img",
      "aria-label": "Traffic: " + entries.map(([v, w]) => v + " " + w + "%").join(", ") });
    for (const [v, w] of entries) {
      bar.append(h("span", { class: "seg", "data-version": v, "data-weight": w,
        style: { flexGrow: String(Math.max(w, 0.0001)), background: colorOf(v) } }, w > 0 ? v + " " + w + "%" : ""));
    }
    return h("div", {}, h("h2", { class: "small" }, "Traffic"), bar);
  }

  function renderActions(st) {
    if (READ_ONLY) {
      fill(el.actions, h("p", { class: "muted" }, "Read-only dashboard: actions are made with the CLI."));
      return;
    }
    const d = st.deployment;
    const running = deploymentRunning(st);
    const ab = running && d.strategy === "ab_test";
    const btn = (id, label, enabled, fn, cls) =>
      h("button", { id, type: "button", disabled: !enabled, class: cls || "", onclick: fn }, label);
    const force = running ? d.irreversible : st.deployment && st.deployment.irreversible;
    fill(el.actions, 
      btn("act-deploy", "Deploy…", true, () => deployDialog(st)),
      btn("act-promote", "Promote", running || !!st.warm, () => act("promote", st, ab)),
      btn("act-pause", "Pause", running && d.state === "running", () => act("pause", st)),
      btn("act-resume", "Resume", running && d.state === "paused", () => act("resume", st)),
      btn("act-abort", "Abort", running, () => act("abort", st, false, force), "danger"),
      btn("act-rollback", "Roll back", !running && !!st.previous_version, () => act("rollback", st, false, force), "danger"));
  }

  function effectOf(op, st) {
    const d = st.deployment || {};
    const from = d.from_version || st.stable_version || "the previous version";
    switch (op) {
      case "promote":
        if (st.warm && !deploymentRunning(st)) return `End the warm window now: ${st.warm.version} is stopped and can no longer be switched back to at once.`;
        if (d.strategy === "ab_test") return `End the A/B test ${d.id}: the variant you pick takes 100% of the traffic; the other one is drained and stopped.`;
        return `Promote ${d.id}: ${d.version} skips the remaining steps (and their analysis) and takes 100% of the traffic; ${from} is drained and stopped.`;
      case "pause":
        return `Pause ${d.id} at "${d.step}": traffic stays split as it is now until you resume.`;
      case "resume":
        return `Resume ${d.id} from "${d.step}".`;
      case "abort":
        return `Abort ${d.id}: all traffic returns to ${from}; the instances of ${d.version} are drained and stopped.`;
      case "rollback":
        return `Roll ${app} back to ${st.previous_version}: it takes 100% of the traffic again and ${st.stable_version} is drained and stopped.`;
    }
    return op;
  }

  function act(op, st, pickVariant, force) {
    const extra = [];
    let select = null, forceBox = null;
    if (pickVariant) {
      const variants = Object.keys(st.weights);
      select = h("select", { id: "confirm-variant" }, variants.map((v) => h("option", { value: v }, v)));
      extra.push(h("label", { for: "confirm-variant" }, "Winning variant "), select);
    }
    if (force && (op === "abort" || op === "rollback")) {
      forceBox = h("input", { type: "checkbox", id: "confirm-force" });
      extra.push(h("p", {}, forceBox, h("label", { for: "confirm-force" },
        " Force: the release step of this deployment cannot be undone; go back anyway")));
    }
    confirmThen(op[0].toUpperCase() + op.slice(1), effectOf(op, st), extra, async () => {
      const body = {};
      if (select) body.to = select.value;
      if (forceBox && forceBox.checked) body.force = true;
      await api("POST", `/v1/apps/${encodeURIComponent(app)}/${op}`, body);
      return `${op} requested`;
    });
  }

  function deployDialog(st) {
    const version = h("input", { id: "deploy-version", required: true, pattern: "[A-Za-z0-9._-]+", autocomplete: "off" });
    const strategy = h("select", { id: "deploy-strategy" },
      h("option", { value: "" }, "the app's configured strategy"),
      ["recreate", "blue_green", "rolling", "canary", "ab_test"].map((s) => h("option", { value: s }, s)));
    const extra = [
      h("p", {}, h("label", { for: "deploy-version" }, "Version "), version),
      h("p", {}, h("label", { for: "deploy-strategy" }, "Strategy "), strategy),
    ];
    confirmThen("Deploy", `Deploy a new version of ${app} (now serving ${st.stable_version || "nothing"}); it replaces the serving version step by step as its strategy says.`, extra, async () => {
      if (!version.value.match(/^[A-Za-z0-9._-]+$/)) throw new Error("a version is letters, digits, '.', '_' or '-'");
      const body = { version: version.value };
      if (strategy.value) body.strategy = strategy.value;
      const r = await api("POST", `/v1/apps/${encodeURIComponent(app)}/deployments`, body);
      return `deployment ${r.id} started`;
    });
  }

  function renderDeployment(st) {
    const d = st.deployment;
    if (!d) {
      fill(el.deployment, h("h2", { id: "dep-h" }, "Deployment"), h("p", { class: "muted" }, "No deployment yet."));
      return;
    }
    const running = !d.finished_at;
    const steps = d.steps && d.steps.length ? d.steps : [];
    const timeline = h("ol", { class: "timeline", id: "timeline" },
      steps.map((label, i) => {
        const cls = i < d.step_index ? "done" : i === d.step_index ? "current" : "todo";
        return h("li", { class: cls, "aria-current": i === d.step_index ? "step" : null }, label);
      }));
    fill(el.deployment, 
      h("h2", { id: "dep-h" }, running ? "Deployment in progress" : "Last deployment"),
      h("p", {}, stateBadge(d.state), " ", h("strong", {}, d.id), " ",
        (d.from_version || "nothing") + " → " + d.version, " · ", d.strategy,
        " · started ", when(d.started_at),
        d.finished_at ? " · took " + duration(d.finished_at - d.started_at) : null),
      running ? h("p", { id: "step" }, "Now: ", d.step) : null,
      steps.length ? timeline : null,
      d.reason ? h("p", { class: d.state === "failed" || d.state === "aborted" ? "error" : "note", id: "reason" }, d.reason) : null,
      d.frozen ? h("p", { class: "error" }, "Frozen: " + d.frozen) : null,
      d.irreversible ? h("p", { class: "note" }, "Its release step cannot be undone: going back needs force.") : null,
      (d.hooks || []).map((hk) => h("details", { class: "hook" },
        h("summary", {}, `${hk.hook} hook: ${hk.state}${hk.result ? " — " + hk.result : ""}`),
        h("pre", {}, (hk.output || []).join("\n")))));
  }

  function renderCharts() {
    const series = (f) => {
      const m = new Map();
      for (const p of points) {
        for (const [v, fig] of Object.entries(p.versions)) {
          if (!m.has(v)) m.set(v, []);
          m.get(v).push([p.at, f(fig)]);
        }
      }
      return m;
    };
    fill(el.charts, 
      h("h2", { id: "charts-h" }, "Per version, live (5-second windows)"),
      h("div", { class: "charts" },
        chart("Requests per second", series((f) => f.rps), rate, "chart-rps"),
        chart("Error rate", series((f) => f.error_rate), pct, "chart-errors"),
        chart("p50 latency", series((f) => f.p50_ms), ms, "chart-p50"),
        chart("p99 latency", series((f) => f.p99_ms), ms, "chart-p99")));
  }

  function verdictWord(message) {
    const m = message.match(/^(pass|fail|inconclusive):/);
    return m ? m[1] : "note";
  }

  function renderJudge(st) {
    const d = st.deployment;
    const dep = d ? d.id : null;
    const rounds = events.filter((e) => e.kind === "analysis" && (!dep || e.deployment === dep));
    const failed = events.filter((e) => (e.kind === "failed" || e.kind === "finished") && e.deployment === dep);
    if (!rounds.length && !(d && d.verdict) && st.experiment) {
      // An A/B test is judged in its own table below, not by the canary judge.
      fill(el.judge);
      return;
    }
    if (!rounds.length && !(d && d.verdict)) {
      fill(el.judge, h("h2", { id: "judge-h" }, "Canary judge"),
        h("p", { class: "muted" }, "No analysis verdict for this deployment (analysis runs when [apps." + app + ".analysis] is set)."));
      return;
    }
    const current = d && d.verdict
      ? h("p", { id: "verdict", class: "verdict " + d.verdict.verdict, "data-verdict": d.verdict.verdict },
        "Latest verdict: ", h("strong", {}, d.verdict.verdict), d.verdict.reason ? " — " + d.verdict.reason : "")
      : null;
    fill(el.judge, 
      h("h2", { id: "judge-h" }, "Canary judge"),
      current,
      h("ol", { class: "verdicts", id: "verdicts", reversed: true },
        rounds.slice().reverse().map((e) => {
          const w = verdictWord(e.message);
          return h("li", { class: "verdict " + w, "data-verdict": w },
            h("time", {}, new Date(e.at).toLocaleTimeString()), " ",
            h("strong", {}, w), " ", e.message.replace(/^(pass|fail|inconclusive):\s*/, ""));
        })),
      failed.map((e) => h("p", { class: "outcome", id: "judge-outcome" }, e.message)));
  }

  function renderExperiment(st) {
    const x = st.experiment;
    if (!x) {
      fill(el.experiment, );
      el.experiment.hidden = true;
      return;
    }
    el.experiment.hidden = false;
    const rows = x.variants.map((v) => {
      const c = x.comparisons.find((c) => c.variant === v.version);
      const diff = c ? c.errors : null;
      return h("tr", { "data-variant": v.version },
        h("th", { scope: "row" }, h("i", { class: "dot", style: { background: colorOf(v.version) } }), v.version, v.version === x.control ? " (control)" : ""),
        h("td", { class: "num" }, v.requests),
        h("td", { class: "num" }, pct(v.error_rate)),
        h("td", { class: "num" }, ms(v.p50_ms)),
        h("td", { class: "num" }, ms(v.p99_ms)),
        h("td", {}, significance(c, c && c.error_significant, c && c.errors)),
        h("td", {}, significance(c, c && c.latency_significant, c && c.latency)),
        h("td", { class: "num" }, c ? (c.needed_per_variant === null || c.needed_per_variant === undefined ? (c.error_significant ? "done" : "–") : c.needed_per_variant) : "–"));
    });
    fill(el.experiment, 
      h("h2", { id: "ab-h" }, "A/B test"),
      h("p", {}, `Control ${x.control}; confidence ${Math.round(x.confidence * 100)}%; smallest error-rate difference worth detecting ${pct(x.mde_error_rate)}; counted since ${when(x.since)}.`),
      h("div", { class: "scroll" }, h("table", { id: "ab-table" },
        h("thead", {}, h("tr", {},
          h("th", { scope: "col" }, "Variant"), h("th", { scope: "col", class: "num" }, "Requests"),
          h("th", { scope: "col", class: "num" }, "Error rate"), h("th", { scope: "col", class: "num" }, "p50"),
          h("th", { scope: "col", class: "num" }, "p99"), h("th", { scope: "col" }, "Errors vs control"),
          h("th", { scope: "col" }, "Latency vs control"), h("th", { scope: "col", class: "num" }, "Requests still needed"))),
        h("tbody", {}, rows))));
  }

  function significance(c, significant, test) {
    if (!c) return "–";
    return [
      significant ? h("strong", { class: "bad" }, "differs") : "no difference shown",
      test && typeof test.p_value === "number" ? ` (p = ${fmtP(test.p_value)})` : "",
    ];
  }

  function fmtP(p) {
    return p < 0.001 ? "< 0.001" : p.toFixed(3);
  }

  function renderInstances(st) {
    const rows = st.instances.map((i) => {
      const row = h("tr", { "data-instance": i.id },
        h("th", { scope: "row" }, i.id),
        h("td", {}, h("i", { class: "dot", style: { background: colorOf(i.version) } }), i.version),
        h("td", {}, i.address),
        h("td", { class: i.healthy ? "good" : "bad" }, i.healthy ? "healthy" : "not healthy"),
        h("td", { class: "num" }, i.in_flight),
        h("td", {}, ago(i.started_at)),
        h("td", {}, h("button", { type: "button", class: "small", id: "logs-" + i.id, "aria-expanded": openLogs.has(i.id),
          onclick: () => { openLogs.has(i.id) ? openLogs.delete(i.id) : openLogs.add(i.id); loadLogs(); } }, "Logs")));
      return row;
    });
    const logs = h("div", { id: "logs" });
    fill(el.instances, 
      h("h2", { id: "inst-h" }, "Instances"),
      h("div", { class: "scroll" }, h("table", {},
        h("thead", {}, h("tr", {}, ["Instance", "Version", "Address", "Health", "In flight", "Started", ""].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, rows))),
      logs);
    renderLogs();
  }

  let logText = [];
  async function loadLogs() {
    if (!openLogs.size) {
      logText = [];
      renderLogs();
      renderInstances(status);
      return;
    }
    try {
      const all = await api("GET", `/v1/apps/${encodeURIComponent(app)}/logs?lines=40`);
      logText = all.filter((l) => openLogs.has(l.instance));
    } catch (e) {
      toast("Logs: " + e.message, true);
    }
    renderInstances(status);
  }
  function renderLogs() {
    const box = document.getElementById("logs");
    if (!box) return;
    fill(box, ...logText.map((l) => h("div", { class: "log" },
      h("h3", {}, l.instance + " (" + l.version + ")"),
      h("pre", { tabindex: 0 }, l.lines.join("\n") || "(no output)"))));
  }

  async function loadHistory() {
    try {
      const [hist, del] = await Promise.all([
        api("GET", `/v1/apps/${encodeURIComponent(app)}/history?limit=20`),
        api("GET", `/v1/apps/${encodeURIComponent(app)}/delivery`),
      ]);
      hist.sort((a, b) => b.started_at - a.started_at);
      const stat = (s) => h("td", {}, h("dl", {},
        h("dt", {}, "Deploys"), h("dd", {}, s.deployments + " (" + s.per_day.toFixed(2) + " a day)"),
        h("dt", {}, "Change-failure rate"), h("dd", {}, pct(s.change_failure_rate)),
        h("dt", {}, "Time to restore"), h("dd", {}, duration(s.mean_time_to_restore_ms))));
      fill(el.history, 
        h("h2", { id: "hist-h" }, "History"),
        h("div", { class: "scroll" }, h("table", { id: "delivery", class: "delivery" },
          h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Last 7 days"), h("th", { scope: "col" }, "Last 30 days"))),
          h("tbody", {}, h("tr", {}, stat(del.last_7_days), stat(del.last_30_days))))),
        h("div", { class: "scroll" }, h("table", { id: "history-table" },
          h("thead", {}, h("tr", {}, ["Deployment", "Change", "Strategy", "Outcome", "Took", "Finished", "Reason"].map((c) => h("th", { scope: "col" }, c)))),
          h("tbody", {}, hist.length ? hist.map((e) => h("tr", { "data-id": e.id },
            h("th", { scope: "row" }, e.id),
            h("td", {}, (e.from_version || "nothing") + " → " + e.to_version),
            h("td", {}, e.strategy),
            h("td", {}, stateBadge(e.outcome === "succeeded" ? "succeeded" : e.outcome === "failed" ? "failed" : "aborted", e.outcome === "rolled_back" ? "(rolled back)" : "")),
            h("td", {}, duration(e.duration_ms)),
            h("td", {}, when(e.finished_at)),
            h("td", { class: "reason" }, e.reason || "", e.analysis ? h("div", { class: "muted" }, e.analysis) : null)))
            : h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No finished deployment yet."))))));
    } catch (e) {
      fill(el.history, h("h2", { id: "hist-h" }, "History"), h("p", { class: "error" }, e.message));
    }
  }

  function renderEvents() {
    fill(el.events, 
      h("h2", { id: "ev-h" }, "Events"),
      h("ol", { class: "events", reversed: true },
        events.slice(-60).reverse().map((e) => h("li", { "data-kind": e.kind },
          h("time", {}, new Date(e.at).toLocaleTimeString()), " ", h("span", { class: "kind" }, e.kind), " ", e.message))));
  }

  function renderAll() {
    if (!status) return;
    const st = status;
    draw("head", [st.stable_version, st.previous_version, st.warm, st.store_error, st.weights], () => renderHead(st));
    draw("actions", [st.deployment && [st.deployment.id, st.deployment.state, st.deployment.finished_at, st.deployment.irreversible], !!st.warm, st.previous_version], () => renderActions(st));
    draw("deployment", st.deployment, () => renderDeployment(st));
    renderCharts();
    draw("judge", [st.deployment && [st.deployment.id, st.deployment.verdict], events.length], () => renderJudge(st));
    draw("experiment", st.experiment, () => renderExperiment(st));
    draw("instances", [st.instances, [...openLogs], logText.length], () => renderInstances(st));
  }

  connect(app, {
    history: (pts) => {
      points.splice(0, points.length, ...pts);
    },
    events: (list) => {
      events.splice(0, events.length, ...list);
      renderEvents();
    },
    frame: (f) => {
      const st = f.apps.find((a) => a.app === app);
      if (!st) {
        document.getElementById("main").replaceChildren(h("h1", {}, app), h("p", { class: "error" }, "No app named " + app + "."));
        return;
      }
      status = st;
      if (points.length === 0 || points[points.length - 1].at < f.at) {
        points.push({ at: f.at, versions: Object.fromEntries(st.traffic.map((t) => [t.version, t])), weights: st.weights });
        if (points.length > KEEP_POINTS) points.shift();
      }
      renderAll();
    },
    event: (e) => {
      events.push(e);
      if (events.length > 500) events.shift();
      renderEvents();
      renderAll();
      if (e.kind === "finished" || e.kind === "failed" || e.kind === "started") loadHistory();
    },
  });
  loadHistory();
}

// ---- confirmation dialog -------------------------------------------------------------

function confirmThen(title, effect, extra, run) {
  const dlg = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-effect").textContent = effect;
  document.getElementById("confirm-extra").replaceChildren(...extra);
  document.getElementById("confirm-ok").textContent = title;
  dlg.returnValue = "";
  dlg.onclose = async () => {
    if (dlg.returnValue !== "ok") return;
    try {
      toast(await run());
    } catch (e) {
      toast(title + " refused: " + e.message, true);
    }
  };
  dlg.showModal();
  const first = dlg.querySelector("input, select") || document.getElementById("confirm-cancel");
  first.focus();
}

// ---- start ---------------------------------------------------------------------------

(function start() {
  const m = location.pathname.match(/^\/ui\/apps\/([^/]+)\/?$/);
  if (m) appPage(decodeURIComponent(m[1]));
  else overview();
})();
