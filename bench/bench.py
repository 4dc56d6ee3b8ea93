#!/usr/bin/env python3
"""Side-by-side benchmark: direct (ceiling), baton, nginx, HAProxy, interleaved over rounds.

Called by bench/run after installation and the release build. Standard library only.
Writes bench/results.json, bench/results.svg and (full mode) bench/RESULTS.md.
"""

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PROXIES = ["baton", "nginx", "haproxy"]
TARGETS = ["direct"] + PROXIES
MODES = {"keepalive": [], "close": ["-H", "Connection: close"]}

CHILDREN = []  # every Popen we start, cleaned up in stop_all()


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, what, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout}s")


def pin(core):
    """taskset prefix when taskset exists and the core is present."""
    if shutil.which("taskset") and (os.cpu_count() or 1) > core:
        return ["taskset", "-c", str(core)]
    return []


def spawn(argv, logfile, **kw):
    out = open(logfile, "ab")
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kw)
    CHILDREN.append(proc)
    return proc


def stop_all():
    for proc in reversed(CHILDREN):
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    for proc in reversed(CHILDREN):
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=5)


def get_body(port, timeout=2.0):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=timeout) as resp:
        return resp.read().decode(errors="replace")


# ---------------------------------------------------------------- wrk


def to_ms(value):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    if not m:
        return None
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[m.group(2)]
    return float(m.group(1)) * scale


def parse_wrk(text):
    res = {"rps": None, "p50_ms": None, "p99_ms": None, "requests": None,
           "socket_errors": 0, "non2xx": 0}
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if m:
        res["rps"] = float(m.group(1))
    m = re.search(r"(\d+) requests in", text)
    if m:
        res["requests"] = int(m.group(1))
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        m = re.search(rf"^\s*{pct}(?:\.000)?%\s+(\S+)", text, re.M)
        if m:
            res[key] = to_ms(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        res["socket_errors"] = sum(int(x) for x in m.groups())
        res["socket_detail"] = dict(zip(("connect", "read", "write", "timeout"),
                                        (int(x) for x in m.groups())))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        res["non2xx"] = int(m.group(1))
    return res


def wrk_argv(port, mode, seconds, conns):
    return pin(1) + ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency",
                     *MODES[mode], f"http://127.0.0.1:{port}/"]


def run_wrk(port, mode, seconds, conns):
    out = subprocess.run(wrk_argv(port, mode, seconds, conns), capture_output=True,
                         text=True, timeout=seconds + 30)
    res = parse_wrk(out.stdout)
    if res["rps"] is None:
        log(f"wrk produced no figures: {out.stdout[-400:]} {out.stderr[-400:]}")
    return res


# ---------------------------------------------------------------- proxies


class Bench:
    def __init__(self, baton, tmp):
        self.baton = str(Path(baton).resolve())
        self.tmp = Path(tmp)
        self.backends = {}
        self.ports = {}
        self.version = "v1"  # which backend the proxies currently route to

    def start_backends(self):
        for ver in ("v1", "v2"):
            port = free_port()
            spawn(pin(1) + [self.baton, "sample-app", "--port", str(port), "--version", ver],
                  self.tmp / f"backend-{ver}.log")
            wait_port(port, f"sample-app {ver}")
            self.backends[ver] = port
        self.ports["direct"] = self.backends["v1"]

    # -- baton
    def baton_cmd(self, *args, check=True):
        argv = [self.baton, "-c", str(self.tmp / "baton.toml"), *args]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if check and out.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {out.stdout}{out.stderr}")
        return out

    def start_baton(self):
        port = free_port()
        (self.tmp / "baton.toml").write_text(f"""
[proxy]
listen = ["127.0.0.1:{port}"]

[admin]
listen = "unix:{self.tmp}/baton.sock"

[store]
path = "{self.tmp}/baton-state"

[apps.web]
runtime = "static"
strategy = "blue_green"
drain_timeout = "2s"

[apps.web.blue_green]
auto_promote = true
scale_down_delay = "0s"
""")
        spawn(pin(0) + [self.baton, "-c", str(self.tmp / "baton.toml"), "serve"],
              self.tmp / "baton.log", env={**os.environ, "RUST_LOG": "warn"})
        wait_port(port, "baton serve")
        self.baton_seq = 1
        self.baton_cmd("deploy", "web", "v1", "--target", f"127.0.0.1:{self.backends['v1']}")
        self.ports["baton"] = port

    def baton_switch(self, ver):
        self.baton_seq += 1
        self.baton_cmd("deploy", "web", f"{ver}-{self.baton_seq}",
                       "--target", f"127.0.0.1:{self.backends[ver]}")

    # -- nginx
    def nginx_conf(self, ver):
        t = self.tmp / "nginx"
        return f"""
worker_processes 1;
daemon off;
pid {t}/nginx.pid;
error_log {t}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {t}/body;
    proxy_temp_path {t}/proxy;
    fastcgi_temp_path {t}/fastcgi;
    uwsgi_temp_path {t}/uwsgi;
    scgi_temp_path {t}/scgi;
    upstream be {{
        server 127.0.0.1:{self.backends[ver]};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{self.ports['nginx']};
        location / {{
            proxy_pass http://be;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""

    def nginx_bin(self):
        return shutil.which("nginx") or "/usr/sbin/nginx"

    def start_nginx(self):
        (self.tmp / "nginx").mkdir()
        self.ports["nginx"] = free_port()
        conf = self.tmp / "nginx" / "nginx.conf"
        conf.write_text(self.nginx_conf("v1"))
        spawn(pin(0) + [self.nginx_bin(), "-e", str(self.tmp / "nginx" / "error.log"),
                        "-c", str(conf)], self.tmp / "nginx.log")
        wait_port(self.ports["nginx"], "nginx")

    def nginx_switch(self, ver):
        conf = self.tmp / "nginx" / "nginx.conf"
        conf.write_text(self.nginx_conf(ver))
        out = subprocess.run([self.nginx_bin(), "-e", str(self.tmp / "nginx" / "error.log"),
                              "-c", str(conf), "-s", "reload"],
                             capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            raise RuntimeError(f"nginx reload failed: {out.stderr}")

    # -- haproxy
    def start_haproxy(self):
        self.ports["haproxy"] = free_port()
        sock = self.tmp / "haproxy.sock"
        conf = self.tmp / "haproxy.cfg"
        conf.write_text(f"""
global
    nbthread 1
    maxconn 8192
    stats socket {sock} mode 600 level admin

defaults
    mode http
    timeout connect 3s
    timeout client 30s
    timeout server 30s
    http-reuse always

frontend fe
    bind 127.0.0.1:{self.ports['haproxy']}
    default_backend be

backend be
    server s1 127.0.0.1:{self.backends['v1']}
    server s2 127.0.0.1:{self.backends['v2']} disabled
""")
        spawn(pin(0) + ["haproxy", "-db", "-f", str(conf)], self.tmp / "haproxy.log")
        wait_port(self.ports["haproxy"], "haproxy")

    def haproxy_api(self, cmd):
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(self.tmp / "haproxy.sock"))
            s.sendall((cmd + "\n").encode())
            data = b""
            while chunk := s.recv(4096):
                data += chunk
        text = data.decode(errors="replace").strip()
        if text:
            raise RuntimeError(f"haproxy runtime API `{cmd}`: {text}")

    def haproxy_switch(self, ver):
        new, old = ("s2", "s1") if ver == "v2" else ("s1", "s2")
        self.haproxy_api(f"set server be/{new} state ready")
        self.haproxy_api(f"set server be/{old} state drain")

    def switch(self, proxy, ver):
        getattr(self, f"{proxy}_switch")(ver)


# ---------------------------------------------------------------- runs


def switch_under_load(bench, proxy, mode, switches, conns):
    """wrk runs while the upstream flips v1->v2->v1...; returns wrk figures + switch count."""
    port = bench.ports[proxy]
    wrk = subprocess.Popen(wrk_argv(port, mode, 300, conns), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, start_new_session=True)
    CHILDREN.append(wrk)
    done, errors, t0, to_new = 0, [], time.monotonic(), []
    try:
        time.sleep(0.5)
        for i in range(switches):
            ver = "v2" if i % 2 == 0 else "v1"
            start = time.monotonic()
            try:
                bench.switch(proxy, ver)
                done += 1
                ms = first_response_from(port, ver, start)
                if ms is None:
                    errors.append(f"switch {i + 1}: no response from {ver} within 3s")
                else:
                    to_new.append(ms)
            except Exception as exc:  # noqa: BLE001 - reported, not fatal
                errors.append(str(exc)[:300])
            time.sleep(0.2)
        time.sleep(0.5)
    finally:
        wrk.send_signal(signal.SIGINT)
        out, err = wrk.communicate(timeout=30)
    elapsed = time.monotonic() - t0
    res = parse_wrk(out)
    final = None
    try:
        final = get_body(port)
    except OSError as exc:
        errors.append(f"final GET failed: {exc}")
    want = "v1" if switches % 2 == 0 else "v2"
    res.update({"switches_requested": switches, "switches_done": done,
                "switch_errors": errors,
                "to_new_backend_ms_median": median(to_new),
                "to_new_backend_ms_max": max(to_new) if to_new else None,
                "seconds": round(elapsed, 2),
                "final_routes_to_expected": final is not None and want in final})
    if res["rps"] is None:
        log(f"wrk (switch) produced no figures: {out[-400:]} {err[-400:]}")
    return res


def first_response_from(port, ver, start, limit=3.0):
    """ms from the switch command's start until a fresh connection gets `ver`'s response."""
    while time.monotonic() - start < limit:
        try:
            if get_body(port, timeout=1.0).strip() == ver:
                return (time.monotonic() - start) * 1000
        except OSError:
            pass
        time.sleep(0.002)
    return None


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(raw):
    summary = {}
    for mode in MODES:
        summary[mode] = {}
        for target in TARGETS:
            runs = raw[mode][target]
            summary[mode][target] = {
                "rps": median([r["rps"] for r in runs]),
                "p50_ms": median([r["p50_ms"] for r in runs]),
                "p99_ms": median([r["p99_ms"] for r in runs]),
                "socket_errors": sum(r["socket_errors"] for r in runs),
                "non2xx": sum(r["non2xx"] for r in runs),
            }
        b = summary[mode]["baton"]
        for other in ("nginx", "haproxy"):
            o = summary[mode][other]
            summary[mode][f"ratio_baton_{other}"] = {
                k: (b[k] / o[k] if b[k] and o[k] else None) for k in ("rps", "p50_ms", "p99_ms")
            }
    return summary


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def table(summary, switch):
    lines = []
    for mode in MODES:
        lines.append(f"\n## Throughput, {mode} (median over rounds)\n")
        lines.append("| target | req/s | p50 ms | p99 ms | socket errors | non-2xx |")
        lines.append("|---|---:|---:|---:|---:|---:|")
        for t in TARGETS:
            s = summary[mode][t]
            lines.append(f"| {t} | {fmt(s['rps'], ',.0f')} | {fmt(s['p50_ms'], '.3f')} | "
                         f"{fmt(s['p99_ms'], '.3f')} | {s['socket_errors']} | {s['non2xx']} |")
        for other in ("nginx", "haproxy"):
            r = summary[mode][f"ratio_baton_{other}"]
            lines.append(f"| **baton / {other}** | {fmt(r['rps'], '.2f')}x | "
                         f"{fmt(r['p50_ms'], '.2f')}x | {fmt(r['p99_ms'], '.2f')}x | | |")
    lines.append("\n## Switch under load (upstream v1 -> v2 -> v1 ...)\n")
    lines.append("| proxy | profile | switches | req/s | socket errors | non-2xx | "
                 "command to new backend, median / max ms | final route ok | switch errors |")
    lines.append("|---|---|---:|---:|---:|---:|---:|---|---:|")
    for proxy in PROXIES:
        for mode in MODES:
            s = switch[proxy][mode]
            detail = s.get("socket_detail", {})
            errs = f"{s['socket_errors']}" + (f" ({detail})" if s["socket_errors"] else "")
            lines.append(f"| {proxy} | {mode} | {s['switches_done']}/{s['switches_requested']} | "
                         f"{fmt(s['rps'], ',.0f')} | {errs} | {s['non2xx']} | "
                         f"{fmt(s['to_new_backend_ms_median'], '.1f')} / "
                         f"{fmt(s['to_new_backend_ms_max'], '.1f')} | "
                         f"{s['final_routes_to_expected']} | {len(s['switch_errors'])} |")
    return "\n".join(lines) + "\n"


def svg_chart(summary):
    colors = {"direct": "#999999", "baton": "#d9534f", "nginx": "#5cb85c", "haproxy": "#428bca"}
    width, bar, gap, group_gap, top, h = 640, 40, 8, 60, 40, 260
    vals = [summary[m][t]["rps"] or 0 for m in MODES for t in TARGETS]
    vmax = max(vals) or 1
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{top + h + 70}" '
             'font-family="sans-serif" font-size="12">',
             f'<text x="10" y="20" font-size="14">Requests/s, median (higher is better)</text>']
    x = 40
    for mode in MODES:
        gx = x
        for t in TARGETS:
            v = summary[mode][t]["rps"] or 0
            bh = h * v / vmax
            y = top + h - bh
            parts.append(f'<rect x="{x}" y="{y:.1f}" width="{bar}" height="{bh:.1f}" '
                         f'fill="{colors[t]}"/>')
            parts.append(f'<text x="{x + bar / 2}" y="{y - 4:.1f}" text-anchor="middle" '
                         f'font-size="10">{v / 1000:.1f}k</text>')
            parts.append(f'<text x="{x + bar / 2}" y="{top + h + 14}" text-anchor="middle" '
                         f'font-size="10">{t}</text>')
            x += bar + gap
        parts.append(f'<text x="{(gx + x - gap) / 2}" y="{top + h + 34}" '
                     f'text-anchor="middle">{mode}</text>')
        x += group_gap
    parts.append(f'<line x1="35" y1="{top + h}" x2="{x}" y2="{top + h}" stroke="black"/>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def machine_info():
    def sh(cmd):
        try:
            return subprocess.run(cmd, shell=True, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"nproc": sh("nproc"), "lscpu": sh("lscpu | head -15"), "kernel": platform.release(),
            "nginx": sh("nginx -v 2>&1"), "haproxy": sh("haproxy -v 2>&1 | head -1"),
            "wrk": sh("wrk -v 2>&1 | head -1"), "taskset": bool(shutil.which("taskset"))}


def missing_figures(summary, switch):
    missing = []
    for mode in MODES:
        for t in TARGETS:
            for k in ("rps", "p50_ms", "p99_ms"):
                if summary[mode][t][k] is None:
                    missing.append(f"{mode}/{t}/{k}")
        for other in ("nginx", "haproxy"):
            if summary[mode][f"ratio_baton_{other}"]["rps"] is None:
                missing.append(f"{mode}/ratio_baton_{other}")
    for proxy in PROXIES:
        for mode in MODES:
            s = switch[proxy][mode]
            if s["rps"] is None:
                missing.append(f"switch/{proxy}/{mode}")
            if s["to_new_backend_ms_median"] is None:
                missing.append(f"switch/{proxy}/{mode}/to_new_backend_ms")
            if s["switches_done"] != s["switches_requested"]:
                missing.append(f"switch/{proxy}/{mode}: only {s['switches_done']} switches ran")
    return missing


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--baton", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(BENCH_DIR))
    args = ap.parse_args()
    rounds, seconds, conns, switches = (1, 2, 32, 4) if args.quick else (3, 10, 32, 20)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = tempfile.mkdtemp(prefix="baton-bench-")
    os.chmod(tmp, 0o755)
    bench = Bench(args.baton, tmp)
    try:
        bench.start_backends()
        bench.start_baton()
        bench.start_nginx()
        bench.start_haproxy()
        for proxy in PROXIES:
            body = get_body(bench.ports[proxy])
            if "v1" not in body:
                raise RuntimeError(f"{proxy} does not route to v1: {body[:200]}")
        raw = {m: {t: [] for t in TARGETS} for m in MODES}
        for rnd in range(rounds):
            order = TARGETS[rnd % len(TARGETS):] + TARGETS[:rnd % len(TARGETS)]
            for mode in MODES:
                for t in order:
                    log(f"round {rnd + 1}/{rounds} {mode} {t} ({seconds}s)")
                    raw[mode][t].append(run_wrk(bench.ports[t], mode, seconds, conns))
        switch = {p: {} for p in PROXIES}
        for proxy in PROXIES:
            for mode in MODES:
                log(f"switch under load: {proxy} {mode} ({switches} switches)")
                switch[proxy][mode] = switch_under_load(bench, proxy, mode, switches, conns)
    finally:
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)

    summary = summarize(raw)
    cmd = "bench/run" + (" --quick" if args.quick else "")
    result = {"command": cmd, "mode": "quick" if args.quick else "full",
              "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "params": {"rounds": rounds, "seconds": seconds, "connections": conns,
                         "wrk_threads": 1, "switches": switches, "proxy_core": 0,
                         "loadgen_core": 1},
              "machine": machine_info(), "summary": summary, "switch": switch, "raw": raw}
    out = Path(args.out)
    text = table(summary, switch)
    print(text)
    stem = "results-quick" if args.quick else "results"  # quick runs keep the full figures
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / f"{stem}.svg").write_text(svg_chart(summary))
    if not args.quick:
        write_results_md(out / "RESULTS.md", result, text)
    missing = missing_figures(summary, switch)
    if missing:
        log("figures missing: " + ", ".join(missing))
        return 1
    return 0


def write_results_md(path, result, text):
    m = result["machine"]
    p = result["params"]
    path.write_text(f"""# Benchmark results: baton vs nginx vs HAProxy

Produced by `{result['command']}` on {result['date_utc']} (figures below are copied from
`bench/results.json` of that run; the chart is `bench/results.svg`).

Setup: two `baton sample-app` backends (v1, v2) on loopback; each proxy with one worker
(nginx `worker_processes 1` + upstream `keepalive 64` + `access_log off`; HAProxy
`nbthread 1` + `http-reuse always`, no logging; baton pinned to one core with `taskset`, static
runtime). Proxies on core {p['proxy_core']}, wrk (`-t1 -c{p['connections']} --latency`) and the backends
on core {p['loadgen_core']}. {p['rounds']} rounds x {p['seconds']} s per target, targets interleaved with
a rotating order; medians over rounds. `close` = wrk with `Connection: close` (one new client
connection per request). Switch under load: {p['switches']} switches v1 -> v2 -> v1 while wrk
runs (baton: `baton deploy web vN --target`, blue/green; nginx: rewrite upstream +
`nginx -s reload`; HAProxy: runtime API `set server be/sX state ready|drain`).

Caveat: a 2-core machine shared with other work; the backends share the load generator's
core, so absolute figures are low and noisy. Ratios are the point.

## Machine

- nproc: {m['nproc']}
- kernel: {m['kernel']}
- {m['nginx']}; {m['haproxy']}; {m['wrk']}

```
{m['lscpu']}
```
{text}""")


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        stop_all()
