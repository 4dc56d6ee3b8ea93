#!/usr/bin/env python3
"""Side-by-side benchmark: direct (ceiling), baton, nginx, HAProxy, Caddy, interleaved over
rounds, at one worker each and again at two.

Called by bench/run after installation and the release build. Standard library only.
Writes bench/results.json, bench/results.svg and (full mode) bench/RESULTS.md.
"""

import argparse
import http.client
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
PROXIES = ["baton", "nginx", "haproxy", "caddy"]
OTHERS = PROXIES[1:]  # what baton's figures are divided by
# Switches and weight steps: Caddy's counterpart (a config reload through its admin API)
# is not measured.
SWITCH_PROXIES = ["baton", "nginx", "haproxy"]
TARGETS = ["direct"] + PROXIES
MODES = {"keepalive": [], "close": ["-H", "Connection: close"]}
# TLS rows: `handshake` = wrk with `Connection: close`, a full
# TLS handshake per request (bench/noresume.c stops wrk from resuming sessions).
TLS_PROXIES = ["baton", "nginx", "haproxy", "caddy"]
TLS_MODES = {"handshake": ["-H", "Connection: close"], "keepalive": []}

CHILDREN = []  # every Popen we start, cleaned up in stop_all()

# What every proxy tells the backend about the request, so each does the same job and
# the backend reads the same fields from each: the client's Host, X-Forwarded-For,
# -Proto and -Host, and the client's X-Request-Id or a new one. baton sets these
# without being asked; a production nginx or HAProxy is configured to (Caddy adds the
# X-Forwarded-* fields by itself).
NGINX_FORWARDING = """\
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Request-Id $forward_request_id;
"""


def haproxy_forwarding(proto):
    """A frontend's lines for the fields above; `proto`: http or https."""
    return (f"    http-request set-header X-Forwarded-Proto {proto}\n"
            "    http-request set-header X-Forwarded-Host %[req.hdr(host)]\n"
            "    http-request set-header X-Request-Id %[unique-id]"
            " unless { req.hdr(x-request-id) -m found }\n")


CADDY_FORWARDING = "\t\theader_up X-Request-Id {http.request.uuid}\n"


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


def pin_proxy(workers):
    """One worker: core 0 (load and backends on core 1). More: cores 0 .. workers-1."""
    if workers == 1:
        return pin(0)
    cores = min(workers, os.cpu_count() or 1)
    return ["taskset", "-c", f"0-{cores - 1}"] if shutil.which("taskset") else []


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


def get_body_tls(port, timeout=2.0):
    import ssl
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(f"https://127.0.0.1:{port}/", timeout=timeout,
                                context=ctx) as resp:
        return resp.read().decode(errors="replace")


def build_noresume(tmp):
    """bench/noresume.c as an LD_PRELOAD library: wrk keeps its TLS session across
    reconnects (SSL_clear) and resumes it; this makes each connection a full handshake."""
    so = Path(tmp) / "noresume.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", str(so),
                    str(BENCH_DIR / "noresume.c"), "-ldl"], check=True, capture_output=True,
                   timeout=60)
    return str(so)


def raise_nofile():
    """1,000 client connections need more than the usual soft limit of 1,024 fds (the
    proxies inherit it from here)."""
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
        if soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ImportError, ValueError, OSError) as exc:
        log(f"cannot raise the open-files limit: {exc}")


def proc_tree(pid):
    """pid and all its descendants (nginx: master + workers, including old ones)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def cpu_times(pid):
    """(utime, stime) of the process tree, in seconds: the proxy's own instructions and
    the kernel's work for it (system calls, TCP on loopback)."""
    tick = os.sysconf("SC_CLK_TCK")
    user = system = 0
    for p in proc_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            user += int(fields[11])
            system += int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return user / tick, system / tick


def cpu_seconds(pid):
    """utime + stime of the process tree, in seconds."""
    return sum(cpu_times(pid))


def cpu_per_request(r, before, after, requests):
    """Adds CPU µs per request to a run's record `r`: in all, and its user and kernel
    parts (on loopback the kernel's TCP work is most of a small request's cost, and it is
    the same for every proxy; the user part is what a proxy's own code decides)."""
    user, system = after[0] - before[0], after[1] - before[1]
    r["cpu_us_per_req"] = (user + system) * 1e6 / requests
    r["user_us_per_req"] = user * 1e6 / requests
    r["sys_us_per_req"] = system * 1e6 / requests


def rss_mib(pid):
    """Summed VmRSS of the process tree, MiB."""
    kib = 0
    for p in proc_tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        kib += int(line.split()[1])
        except (OSError, ValueError):
            pass
    return kib / 1024


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


def wrk_argv(port, mode, seconds, conns, scheme="http", threads=1):
    """One wrk thread on core 1; with more threads (the two-worker rows) wrk is not
    pinned and shares both cores with the proxy and the backends."""
    headers = (TLS_MODES if scheme == "https" else MODES)[mode]
    where = pin(1) if threads == 1 else []
    return where + ["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--latency",
                    *headers, f"{scheme}://127.0.0.1:{port}/"]


def run_wrk(port, mode, seconds, conns, scheme="http", env=None, threads=1):
    out = subprocess.run(wrk_argv(port, mode, seconds, conns, scheme, threads),
                         capture_output=True, text=True, timeout=seconds + 30, env=env)
    res = parse_wrk(out.stdout)
    if res["rps"] is None:
        log(f"wrk produced no figures: {out.stdout[-400:]} {out.stderr[-400:]}")
    return res


# ---------------------------------------------------------------- proxies


class Bench:
    def __init__(self, baton, tmp, sample_app=None):
        self.baton = str(Path(baton).resolve())
        # The backends' binary: the same for every build of baton under test.
        self.sample_app = str(Path(sample_app or baton).resolve())
        self.tmp = Path(tmp)
        self.backends = {}
        self.ports = {}
        self.version = "v1"  # which backend the proxies currently route to
        self.pids = {}  # proxy -> pid of its (master) process
        self.procs = {}  # proxy -> its Popen
        self.h2_ports = {}  # proxy -> h2c (prior knowledge) port
        self.tls_ports = {}  # proxy -> HTTPS port (HTTP/1.1 and h2 by ALPN)
        self.tls = self.tmp / "tls"  # cert.pem, key.pem, haproxy.pem (cert + key)
        self.workers = 1  # each proxy's workers (threads, processes) in this phase
        self.phase = ""  # suffix of the state paths of this phase's proxies

    def make_cert(self):
        """One self-signed ECDSA P-256 certificate for localhost / 127.0.0.1, used by
        every proxy."""
        self.tls.mkdir()
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-days", "7",
                        "-keyout", str(self.tls / "key.pem"), "-out", str(self.tls / "cert.pem"),
                        "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       check=True, capture_output=True, timeout=30)
        (self.tls / "haproxy.pem").write_text((self.tls / "cert.pem").read_text()
                                              + (self.tls / "key.pem").read_text())

    def start_backends(self):
        for ver in ("v1", "v2"):
            port = free_port()
            spawn(pin(1) + [self.sample_app, "sample-app", "--port", str(port), "--version", ver],
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
        self.tls_ports["baton"] = free_port()
        (self.tmp / "baton.toml").write_text(f"""
[proxy]
listen = ["127.0.0.1:{port}"]
tls_listen = ["127.0.0.1:{self.tls_ports['baton']}"]
workers = {self.workers}

[proxy.tls]
default_host = "localhost"  # clients that send no name (h2load to an IP address)
redirect_http = false       # `listen` keeps serving plain HTTP for the other rows

[[proxy.tls.certificates]]
cert = "{self.tls}/cert.pem"
key = "{self.tls}/key.pem"

[admin]
listen = "unix:{self.tmp}/baton.sock"

[store]
path = "{self.tmp}/baton-state{self.phase}"

[apps.web]
runtime = "static"
strategy = "blue_green"
drain_timeout = "2s"

[apps.web.blue_green]
auto_promote = true
scale_down_delay = "0s"

[apps.web.canary]
steps = [{{ weight = 10 }}, {{ pause = "1s" }}, {{ weight = 50 }}, {{ pause = "1s" }}]
""")
        proc = spawn(pin_proxy(self.workers) + [self.baton, "-c", str(self.tmp / "baton.toml"), "serve"],
                     self.tmp / "baton.log", env={**os.environ, "BATON_LOG": "warn"})
        self.pids["baton"] = proc.pid
        self.procs["baton"] = proc
        wait_port(port, "baton serve")
        wait_port(self.tls_ports["baton"], "baton serve (TLS)")
        self.baton_seq = 1
        self.baton_cmd("deploy", "web", "v1", "--target", f"127.0.0.1:{self.backends['v1']}")
        self.ports["baton"] = port
        self.h2_ports["baton"] = port  # h2c and HTTP/1.1 share the listener

    def baton_api(self, method, path, body=None):
        """The admin API on its unix socket (what `baton deploy --detach` calls)."""
        conn = UnixHTTP(str(self.tmp / "baton.sock"))
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=data,
                         headers={"content-type": "application/json"} if data else {})
            resp = conn.getresponse()
            text = resp.read().decode(errors="replace")
            if resp.status >= 300:
                raise RuntimeError(f"baton API {method} {path}: {resp.status} {text[:300]}")
            return json.loads(text) if text else None
        finally:
            conn.close()

    def baton_deploy(self, ver, strategy=None):
        """Start a deployment through the API (detached); returns its id."""
        self.baton_seq += 1
        r = self.baton_api("POST", "/v1/apps/web/deployments",
                           {"version": f"{ver}-{self.baton_seq}", "strategy": strategy,
                            "targets": [f"127.0.0.1:{self.backends[ver]}"]})
        return r.get("id") if isinstance(r, dict) else None

    def baton_wait(self, dep_id, timeout=30.0):
        """Poll the status until deployment `dep_id` is no longer running."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.baton_api("GET", "/v1/apps/web")
            d = st.get("deployment") or {}
            if d.get("id") == dep_id and d.get("state") not in ("running", "paused"):
                if d.get("state") != "succeeded":
                    raise RuntimeError(f"baton deployment {dep_id} ended {d.get('state')}")
                return
            time.sleep(0.01)
        raise RuntimeError(f"baton deployment {dep_id} still running after {timeout}s")

    def baton_switch(self, ver):
        self.baton_deploy(ver)

    def baton_settle(self):
        st = self.baton_api("GET", "/v1/apps/web")
        d = st.get("deployment") or {}
        if d.get("id"):
            self.baton_wait(d["id"])

    # -- nginx
    def nginx_conf(self, ver, weights=None):
        """`weights`: {version: weight} for a split (0 = `down`); else all to `ver`."""
        t = self.tmp / "nginx"
        if weights:
            upstreams = "\n".join(
                f"        server 127.0.0.1:{self.backends[v]} weight={max(w, 1)}"
                + (" down" if w == 0 else "") + ";" for v, w in weights.items())
        else:
            upstreams = f"        server 127.0.0.1:{self.backends[ver]};"
        return f"""
worker_processes {self.workers};
worker_rlimit_nofile 16384;
daemon off;
pid {t}/nginx.pid;
error_log {t}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    # Not 1,000 requests per client connection (the default; for h2c too, where h2load
    # counts every stream after the GOAWAY as failed).
    keepalive_requests 1000000;
    client_body_temp_path {t}/body;
    proxy_temp_path {t}/proxy;
    fastcgi_temp_path {t}/fastcgi;
    uwsgi_temp_path {t}/uwsgi;
    scgi_temp_path {t}/scgi;
    # The client's X-Request-Id, or a new one (32 hex digits), as baton does.
    map $http_x_request_id $forward_request_id {{
        "" $request_id;
        default $http_x_request_id;
    }}
    upstream be {{
{upstreams}
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{self.ports['nginx']};
        listen 127.0.0.1:{self.h2_ports['nginx']} http2;
        location / {{
            proxy_pass http://be;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
{NGINX_FORWARDING}        }}
    }}
    server {{
        listen 127.0.0.1:{self.tls_ports['nginx']} ssl http2;
        ssl_certificate {self.tls}/cert.pem;
        ssl_certificate_key {self.tls}/key.pem;
        ssl_protocols TLSv1.3;
        location / {{
            proxy_pass http://be;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
{NGINX_FORWARDING}        }}
    }}
}}
"""

    def nginx_bin(self):
        return shutil.which("nginx") or "/usr/sbin/nginx"

    def start_nginx(self):
        (self.tmp / "nginx").mkdir(exist_ok=True)
        self.ports["nginx"] = free_port()
        self.h2_ports["nginx"] = free_port()
        self.tls_ports["nginx"] = free_port()
        conf = self.tmp / "nginx" / "nginx.conf"
        conf.write_text(self.nginx_conf("v1"))
        proc = spawn(pin_proxy(self.workers) + [self.nginx_bin(), "-e", str(self.tmp / "nginx" / "error.log"),
                               "-c", str(conf)], self.tmp / "nginx.log")
        self.pids["nginx"] = proc.pid
        self.procs["nginx"] = proc
        wait_port(self.ports["nginx"], "nginx")

    def nginx_switch(self, ver, weights=None):
        conf = self.tmp / "nginx" / "nginx.conf"
        conf.write_text(self.nginx_conf(ver, weights))
        out = subprocess.run([self.nginx_bin(), "-e", str(self.tmp / "nginx" / "error.log"),
                              "-c", str(conf), "-s", "reload"],
                             capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            raise RuntimeError(f"nginx reload failed: {out.stderr}")

    # -- haproxy
    def start_haproxy(self):
        self.ports["haproxy"] = free_port()
        self.h2_ports["haproxy"] = free_port()
        self.tls_ports["haproxy"] = free_port()
        sock = self.tmp / "haproxy.sock"
        conf = self.tmp / "haproxy.cfg"
        conf.write_text(f"""
global
    nbthread {self.workers}
    maxconn 8192
    stats socket {sock} mode 600 level admin

defaults
    mode http
    timeout connect 3s
    timeout client 30s
    timeout server 30s
    http-reuse always
    option forwardfor
    unique-id-format %[uuid()]

frontend fe
    bind 127.0.0.1:{self.ports['haproxy']}
{haproxy_forwarding("http")}    default_backend be

frontend fe_h2c
    bind 127.0.0.1:{self.h2_ports['haproxy']} proto h2
{haproxy_forwarding("http")}    default_backend be

frontend fe_tls
    bind 127.0.0.1:{self.tls_ports['haproxy']} ssl crt {self.tls}/haproxy.pem alpn h2,http/1.1 ssl-min-ver TLSv1.3
{haproxy_forwarding("https")}    default_backend be

backend be
    server s1 127.0.0.1:{self.backends['v1']}
    server s2 127.0.0.1:{self.backends['v2']} disabled
""")
        proc = spawn(pin_proxy(self.workers) + ["haproxy", "-db", "-f", str(conf)], self.tmp / "haproxy.log")
        self.pids["haproxy"] = proc.pid
        self.procs["haproxy"] = proc
        wait_port(self.ports["haproxy"], "haproxy")

    # -- caddy (stays on v1: no switch rows)
    def start_caddy(self):
        d = self.tmp / "caddy"
        d.mkdir(exist_ok=True)
        port = self.tls_ports["caddy"] = free_port()
        plain = self.ports["caddy"] = self.h2_ports["caddy"] = free_port()
        conf = d / "Caddyfile"
        conf.write_text(f"""{{
\tadmin off
\tauto_https off
\tdefault_sni localhost
\tservers {{
\t\tprotocols h1 h2 h2c
\t}}
}}

http://127.0.0.1:{plain} {{
\tbind 127.0.0.1
\treverse_proxy 127.0.0.1:{self.backends['v1']} {{
{CADDY_FORWARDING}\t}}
}}

https://localhost:{port}, https://127.0.0.1:{port} {{
\tbind 127.0.0.1
\ttls {self.tls}/cert.pem {self.tls}/key.pem {{
\t\tprotocols tls1.3
\t}}
\treverse_proxy 127.0.0.1:{self.backends['v1']} {{
{CADDY_FORWARDING}\t}}
}}
""")
        env = {**os.environ, "GOMAXPROCS": str(self.workers), "HOME": str(d),
               "XDG_DATA_HOME": str(d), "XDG_CONFIG_HOME": str(d)}
        proc = spawn(pin_proxy(self.workers) + ["caddy", "run", "--config", str(conf), "--adapter", "caddyfile"],
                     self.tmp / "caddy.log", env=env)
        self.pids["caddy"] = proc.pid
        self.procs["caddy"] = proc
        wait_port(port, "caddy")
        wait_port(plain, "caddy (plain)")

    def start_proxies(self):
        self.start_baton()
        self.start_nginx()
        self.start_haproxy()
        self.start_caddy()

    def restart_proxies(self, workers):
        """Every proxy stopped and started again with `workers` each (the backends stay)."""
        for proxy in PROXIES:
            proc = self.procs.pop(proxy)
            self.pids.pop(proxy)
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=15)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        self.workers = workers
        self.phase = f"-{workers}w"
        self.version = "v1"
        self.start_proxies()

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
        self.haproxy_weights({ver: 1, "v1" if ver == "v2" else "v2": 0})

    def haproxy_weights(self, weights):
        """Weights first to the servers that gain, so no moment has none ready."""
        for ver, w in sorted(weights.items(), key=lambda kv: -kv[1]):
            srv = "s1" if ver == "v1" else "s2"
            self.haproxy_api(f"set server be/{srv} weight {w}")
            self.haproxy_api(f"set server be/{srv} state {'ready' if w else 'drain'}")

    def switch(self, proxy, ver):
        getattr(self, f"{proxy}_switch")(ver)


class UnixHTTP(http.client.HTTPConnection):
    """HTTP over a unix socket (baton's admin API)."""

    def __init__(self, path):
        super().__init__("localhost", timeout=10)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(10)
        self.sock.connect(self.path)


# ---------------------------------------------------------------- bench-client runs


def client_argv(client, port, *extra):
    return pin(1) + [client, "--addr", f"127.0.0.1:{port}", *extra]


def run_client(client, port, *extra, timeout=120):
    out = subprocess.run(client_argv(client, port, *extra), capture_output=True, text=True,
                         timeout=timeout)
    try:
        return json.loads(out.stdout)
    except json.JSONDecodeError:
        log(f"bench-client produced no figures: {out.stdout[-300:]} {out.stderr[-300:]}")
        return {}


def fixed_rate(client, port, rate, seconds, conns):
    r = run_client(client, port, "--rate", str(rate), "--conns", str(conns),
                   "--seconds", str(seconds))
    return {k: r.get(k) for k in ("rps", "target_rps", "p50_ms", "p99_ms", "p99_9_ms",
                                  "max_ms", "failed", "sent")}


PROFILES = {  # switch-under-load client profiles
    "keepalive": ["--conns", "32"],
    "idle50ms": ["--conns", "32", "--gap-ms", "50"],
    "close": ["--conns", "32", "--close"],
}


class TimedLoad:
    """bench-client running until stopped, recording a timeline of responses."""

    def __init__(self, bench, client, proxy, profile, name):
        self.timeline = bench.tmp / f"timeline-{name}.txt"
        self.proc = subprocess.Popen(
            client_argv(client, bench.ports[proxy], *PROFILES[profile], "--until-stdin",
                        "--timeline", str(self.timeline)),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True)
        CHILDREN.append(self.proc)

    def stop(self):
        out, err = self.proc.communicate("stop\n", timeout=60)
        try:
            res = json.loads(out)
        except json.JSONDecodeError:
            log(f"bench-client (switch) produced no figures: {out[-300:]} {err[-300:]}")
            res = {}
        events = {}
        try:
            for line in self.timeline.read_text().splitlines():
                t, v = line.split(" ", 1)
                events.setdefault(v, []).append(int(t) / 1e6)
        except (OSError, ValueError) as exc:
            log(f"cannot read the timeline: {exc}")
        for v in events.values():
            v.sort()
        return res, events


def switch_timing(events, switches):
    """Per command (t, old, new, t_next): ms to the first response from `new`, and ms to
    the last response from `old` before the next command (0 when none came after)."""
    import bisect
    to_new, drained, missing = [], [], 0
    for t, old, new, t_next in switches:
        news = events.get(new, [])
        i = bisect.bisect_left(news, t)
        if i < len(news) and news[i] < t_next:
            to_new.append((news[i] - t) * 1000)
        else:
            missing += 1
        olds = events.get(old, [])
        j = bisect.bisect_left(olds, t_next) - 1
        drained.append((olds[j] - t) * 1000 if j >= 0 and olds[j] >= t else 0.0)
    return to_new, drained, missing


def switch_profile(bench, client, proxy, profile, switches, interval):
    """A -> B -> A switches under one client profile; failures, time to new, drain."""
    load = TimedLoad(bench, client, proxy, profile, f"{proxy}-{profile}")
    errors, cmds = [], []
    try:
        time.sleep(0.5)
        for i in range(switches):
            new = "v2" if bench.version == "v1" else "v1"
            t = time.time()
            try:
                if proxy == "baton":
                    bench.baton_wait(bench.baton_deploy(new))
                else:
                    bench.switch(proxy, new)
                cmds.append((t, bench.version, new))
                bench.version = new
            except Exception as exc:  # noqa: BLE001 - reported, not fatal
                errors.append(str(exc)[:300])
            time.sleep(max(0.0, t + interval - time.time()))
        time.sleep(0.3)
    finally:
        res, events = load.stop()
    spans = [(t, o, n, cmds[k + 1][0] if k + 1 < len(cmds) else float("inf"))
             for k, (t, o, n) in enumerate(cmds)]
    to_new, drained, missing = switch_timing(events, spans)
    return {"switches_requested": switches, "switches_done": len(cmds), "switch_errors": errors,
            "requests": res.get("sent"), "failed": res.get("failed"),
            "failures": res.get("failures"), "rps": res.get("rps"),
            "to_new_ms_median": median(to_new), "to_new_ms_max": max(to_new) if to_new else None,
            "old_last_seen_ms_median": median(drained),
            "old_last_seen_ms_max": max(drained) if drained else None,
            "switches_without_new_response": missing}


WEIGHT_STEPS = [10, 50, 100]  # v2's share; the rest stays on v1


def weight_steps(bench, client, proxy, profile, step_s=1.0):
    """v1 -> v2 in weight steps 0 -> 10 -> 50 -> 100 under load. baton: a canary deploy
    whose steps (weight 10, 1 s, weight 50, 1 s, then all) baton applies itself; nginx:
    weighted upstream + reload per step; HAProxy: `set server ... weight` per step."""
    assert bench.version == "v1", "weight steps start from v1"
    load = TimedLoad(bench, client, proxy, profile, f"{proxy}-{profile}-weights")
    errors, t0 = [], None
    try:
        time.sleep(0.5)
        t0 = time.time()
        try:
            if proxy == "baton":
                bench.baton_wait(bench.baton_deploy("v2", strategy="canary"))
            else:
                for k, w in enumerate(WEIGHT_STEPS):
                    weights = {"v1": 100 - w, "v2": w}
                    if proxy == "nginx":
                        bench.nginx_switch("v2", weights)
                    else:
                        bench.haproxy_weights(weights)
                    if k + 1 < len(WEIGHT_STEPS):
                        time.sleep(max(0.0, t0 + (k + 1) * step_s - time.time()))
            bench.version = "v2"
        except Exception as exc:  # noqa: BLE001 - reported, not fatal
            errors.append(str(exc)[:300])
        time.sleep(0.5)
    finally:
        res, events = load.stop()
    v2 = [t for t in events.get("v2", []) if t >= (t0 or 0)]
    v1 = [t for t in events.get("v1", []) if t >= (t0 or 0)]
    # back to v1 (plain switch) for whatever runs next
    try:
        if proxy == "baton":
            bench.baton_wait(bench.baton_deploy("v1"))
        elif proxy == "nginx":
            bench.nginx_switch("v1")
        else:
            bench.haproxy_weights({"v1": 1, "v2": 0})
        bench.version = "v1"
    except Exception as exc:  # noqa: BLE001
        errors.append(f"back to v1: {str(exc)[:300]}")
    return {"requests": res.get("sent"), "failed": res.get("failed"),
            "failures": res.get("failures"), "switch_errors": errors,
            "first_v2_ms": (v2[0] - t0) * 1000 if v2 and t0 else None,
            "v1_last_seen_ms": (v1[-1] - t0) * 1000 if v1 and t0 else None}


def h2_throughput(port, seconds, conns=32, streams=10, scheme="http"):
    """h2load (nghttp2) over h2c prior knowledge, or over TLS with ALPN h2 (https)."""
    argv = pin(1) + ["h2load", "-t1", f"-c{conns}", f"-m{streams}", f"-D{seconds}",
                     f"{scheme}://127.0.0.1:{port}/"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    m = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out.stdout)
    f = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored", out.stdout)
    if not m:
        log(f"h2load produced no figures: {out.stdout[-300:]} {out.stderr[-300:]}")
    return {"rps": float(m.group(1)) if m else None,
            "succeeded": int(f.group(2)) if f else None,
            "failed": int(f.group(3)) + int(f.group(4)) if f else None}


def open_connections(port, n):
    """n keep-alive client connections that each completed one request; left open."""
    socks = []
    req = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(req)
        socks.append(s)
    for s in socks:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                raise RuntimeError("connection closed before its response")
            data += chunk
    return socks


def measure_memory(bench, conns):
    out = {}
    for proxy in PROXIES:
        pid, port = bench.pids[proxy], bench.ports[proxy]
        get_body(port)
        time.sleep(0.2)
        idle = rss_mib(pid)
        socks = []
        try:
            socks = open_connections(port, conns)
            time.sleep(0.3)
            loaded = rss_mib(pid)
        except (OSError, RuntimeError) as exc:
            log(f"{proxy}: {conns} open connections failed: {exc}")
            loaded = None
        finally:
            for s in socks:
                s.close()
        out[proxy] = {"idle_mib": round(idle, 2),
                      "conns_mib": round(loaded, 2) if loaded is not None else None,
                      "conns": conns}
    return out


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratios(b, o, keys):
    return {k: (b[k] / o[k] if b.get(k) and o.get(k) else None) for k in keys}


def summarize(raw):
    """Medians over rounds, and baton / nginx, baton / HAProxy ratios."""
    summary = {"throughput": {}, "throughput2": {}, "fixed_rate": {}, "h2": {}}
    # One worker each (with direct, the ceiling), then two workers each.
    for key, targets in (("throughput", TARGETS), ("throughput2", PROXIES)):
        for mode in MODES:
            sm = summary[key][mode] = {}
            for target in targets:
                runs = raw[key][mode][target]
                sm[target] = {
                    "rps": median([r["rps"] for r in runs]),
                    "p50_ms": median([r["p50_ms"] for r in runs]),
                    "p99_ms": median([r["p99_ms"] for r in runs]),
                    "cpu_us_per_req": median([r.get("cpu_us_per_req") for r in runs]),
                    "user_us_per_req": median([r.get("user_us_per_req") for r in runs]),
                    "sys_us_per_req": median([r.get("sys_us_per_req") for r in runs]),
                    "socket_errors": sum(r["socket_errors"] for r in runs),
                    "non2xx": sum(r["non2xx"] for r in runs),
                }
            for other in OTHERS:
                sm[f"ratio_baton_{other}"] = ratios(
                    sm["baton"], sm[other],
                    ("rps", "p50_ms", "p99_ms", "cpu_us_per_req", "user_us_per_req",
                     "sys_us_per_req"))
    for rate, per in raw["fixed_rate"].items():
        sr = summary["fixed_rate"][rate] = {}
        for target, runs in per.items():
            sr[target] = {k: median([r.get(k) for r in runs])
                          for k in ("rps", "p50_ms", "p99_ms", "p99_9_ms", "max_ms")}
            sr[target]["failed"] = sum(r.get("failed") or 0 for r in runs)
        direct = sr.get("direct", {})
        for target in PROXIES:
            t = sr[target]
            t["added_p99_ms"] = (t["p99_ms"] - direct["p99_ms"]
                                 if t.get("p99_ms") is not None
                                 and direct.get("p99_ms") is not None else None)
        for other in OTHERS:
            sr[f"ratio_baton_{other}"] = ratios(sr["baton"], sr[other],
                                                ("p50_ms", "p99_ms", "p99_9_ms", "added_p99_ms"))
    for target, runs in raw["h2"].items():
        summary["h2"][target] = {"rps": median([r["rps"] for r in runs]),
                                 "failed": sum(r.get("failed") or 0 for r in runs)}
    for other in OTHERS:
        summary["h2"][f"ratio_baton_{other}"] = ratios(summary["h2"]["baton"],
                                                       summary["h2"][other], ("rps",))
    st = summary["tls"] = {}
    for p in TLS_PROXIES:
        x = st[p] = {}
        for mode in TLS_MODES:
            runs = raw["tls"][mode][p]
            x[mode] = {"rps": median([r["rps"] for r in runs]),
                       "p50_ms": median([r["p50_ms"] for r in runs]),
                       "p99_ms": median([r["p99_ms"] for r in runs]),
                       "cpu_us_per_req": median([r.get("cpu_us_per_req") for r in runs]),
                       "errors": sum(r["socket_errors"] + r["non2xx"] for r in runs)}
        runs = raw["tls"]["h2"][p]
        x["h2"] = {"rps": median([r["rps"] for r in runs]),
                   "cpu_us_per_req": median([r.get("cpu_us_per_req") for r in runs]),
                   "failed": sum(r.get("failed") or 0 for r in runs)}
    for other in TLS_PROXIES[1:]:
        st[f"ratio_baton_{other}"] = {
            mode: ratios(st["baton"][mode], st[other][mode], ("rps", "cpu_us_per_req"))
            for mode in (*TLS_MODES, "h2")}
    return summary


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def table(result):
    summary, switch, weights = result["summary"], result["switch"], result["weights"]
    memory, publish = result["memory"], result.get("publish")
    lines = []
    for key, title, conns in (("throughput", "one worker each", result["params"]["connections"]),
                              ("throughput2", "two workers each",
                               result["params"]["connections_2_workers"])):
        targets = TARGETS if key == "throughput" else PROXIES
        wrk = "wrk -t1" if key == "throughput" else "wrk -t2"
        for mode in MODES:
            sm = summary[key][mode]
            lines.append(f"\n## Throughput, {mode}, {title} ({wrk} -c{conns}, median over "
                         "rounds)\n")
            lines.append("| target | req/s | p50 ms | p99 ms | proxy CPU µs/req | of it user "
                         "| of it kernel | socket errors | non-2xx |")
            lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
            for t in targets:
                x = sm[t]
                lines.append(f"| {t} | {fmt(x['rps'], ',.0f')} | {fmt(x['p50_ms'], '.3f')} | "
                             f"{fmt(x['p99_ms'], '.3f')} | {fmt(x['cpu_us_per_req'], '.2f')} | "
                             f"{fmt(x.get('user_us_per_req'), '.2f')} | "
                             f"{fmt(x.get('sys_us_per_req'), '.2f')} | "
                             f"{x['socket_errors']} | {x['non2xx']} |")
            for other in OTHERS:
                r = sm[f"ratio_baton_{other}"]
                lines.append(f"| **baton / {other}** | {fmt(r['rps'], '.2f')}x | "
                             f"{fmt(r['p50_ms'], '.2f')}x | {fmt(r['p99_ms'], '.2f')}x | "
                             f"{fmt(r['cpu_us_per_req'], '.2f')}x | "
                             f"{fmt(r.get('user_us_per_req'), '.2f')}x | "
                             f"{fmt(r.get('sys_us_per_req'), '.2f')}x | | |")
    lines.append("\n## Latency at fixed request rates (open loop, corrected for coordinated "
                 "omission; median over rounds)\n")
    lines.append("| rate req/s | target | achieved | p50 ms | p99 ms | p99.9 ms | added p99 ms "
                 "(vs direct) | failed |")
    lines.append("|---:|---|---:|---:|---:|---:|---:|---:|")
    for rate, sr in summary["fixed_rate"].items():
        for t in TARGETS:
            x = sr[t]
            lines.append(f"| {rate} | {t} | {fmt(x['rps'], ',.0f')} | {fmt(x['p50_ms'], '.3f')} | "
                         f"{fmt(x['p99_ms'], '.3f')} | {fmt(x['p99_9_ms'], '.3f')} | "
                         f"{fmt(x.get('added_p99_ms'), '.3f')} | {x['failed']} |")
        for other in OTHERS:
            r = sr[f"ratio_baton_{other}"]
            lines.append(f"| {rate} | **baton / {other}** | | {fmt(r['p50_ms'], '.2f')}x | "
                         f"{fmt(r['p99_ms'], '.2f')}x | {fmt(r['p99_9_ms'], '.2f')}x | "
                         f"{fmt(r['added_p99_ms'], '.2f')}x | |")
    lines.append("\n## HTTP/2 (h2c, h2load -c32 -m10, median over rounds)\n")
    lines.append("| proxy | req/s | failed |")
    lines.append("|---|---:|---:|")
    for p in PROXIES:
        lines.append(f"| {p} | {fmt(summary['h2'][p]['rps'], ',.0f')} | "
                     f"{summary['h2'][p]['failed']} |")
    for other in OTHERS:
        lines.append(f"| **baton / {other}** | "
                     f"{fmt(summary['h2'][f'ratio_baton_{other}']['rps'], '.2f')}x | |")
    st = summary["tls"]
    lines.append("\n## TLS 1.3 (ECDSA P-256 certificate; wrk -t1 -c32 and h2load -c32 -m10 "
                 "over HTTPS; median over rounds)\n")
    lines.append("| proxy | new handshakes/s | proxy CPU µs/handshake | keep-alive req/s "
                 "| proxy CPU µs/req | keep-alive p99 ms | h2 req/s | h2 CPU µs/req | errors |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for p in TLS_PROXIES:
        x = st[p]
        errors = x["handshake"]["errors"] + x["keepalive"]["errors"] + x["h2"]["failed"]
        lines.append(f"| {p} | {fmt(x['handshake']['rps'], ',.0f')} | "
                     f"{fmt(x['handshake']['cpu_us_per_req'], '.1f')} | "
                     f"{fmt(x['keepalive']['rps'], ',.0f')} | "
                     f"{fmt(x['keepalive']['cpu_us_per_req'], '.2f')} | "
                     f"{fmt(x['keepalive']['p99_ms'], '.3f')} | "
                     f"{fmt(x['h2']['rps'], ',.0f')} | {fmt(x['h2']['cpu_us_per_req'], '.2f')} | "
                     f"{errors} |")
    for other in TLS_PROXIES[1:]:
        r = st[f"ratio_baton_{other}"]
        lines.append(f"| **baton / {other}** | {fmt(r['handshake']['rps'], '.2f')}x | "
                     f"{fmt(r['handshake']['cpu_us_per_req'], '.2f')}x | "
                     f"{fmt(r['keepalive']['rps'], '.2f')}x | "
                     f"{fmt(r['keepalive']['cpu_us_per_req'], '.2f')}x | | "
                     f"{fmt(r['h2']['rps'], '.2f')}x | {fmt(r['h2']['cpu_us_per_req'], '.2f')}x | |")
    lines.append("\n## Memory (RSS of the whole process tree, MiB)\n")
    lines.append("| proxy | idle at start | with 1,000 open client connections | idle after the load |")
    lines.append("|---|---:|---:|---:|")
    for p in PROXIES:
        m = memory[p]
        lines.append(f"| {p} | {fmt(m['idle_mib'], '.1f')} | {fmt(m['conns_mib'], '.1f')} | "
                     f"{fmt(m.get('idle_after_mib'), '.1f')} |")
    for other in OTHERS:
        b, o = memory["baton"], memory[other]
        r = ratios(b, o, ("idle_mib", "conns_mib", "idle_after_mib"))
        lines.append(f"| **baton / {other}** | {fmt(r['idle_mib'], '.2f')}x | "
                     f"{fmt(r['conns_mib'], '.2f')}x | {fmt(r['idle_after_mib'], '.2f')}x |")
    lines.append("\n## Switch under load (v1 -> v2 -> v1 ...)\n")
    lines.append("| proxy | profile | switches | requests | failed | command to first response "
                 "from new, median / max ms | old backend last seen after command, median / max ms |")
    lines.append("|---|---|---:|---:|---:|---:|---:|")
    for proxy in SWITCH_PROXIES:
        for prof in PROFILES:
            x = switch[proxy][prof]
            failed = f"{x['failed']}" + (f" {x['failures']}" if x["failed"] else "")
            lines.append(f"| {proxy} | {prof} | {x['switches_done']}/{x['switches_requested']} | "
                         f"{fmt(x['requests'], ',')} | {failed} | "
                         f"{fmt(x['to_new_ms_median'], '.1f')} / {fmt(x['to_new_ms_max'], '.1f')} | "
                         f"{fmt(x['old_last_seen_ms_median'], '.1f')} / "
                         f"{fmt(x['old_last_seen_ms_max'], '.1f')} |")
    lines.append("\n## Weight steps under load (v2 at 0 -> 10 -> 50 -> 100 %, 1 s apart)\n")
    lines.append("| proxy | profile | requests | failed | first v2 response ms | v1 last seen ms |")
    lines.append("|---|---|---:|---:|---:|---:|")
    for proxy in SWITCH_PROXIES:
        for prof in PROFILES:
            x = weights[proxy][prof]
            failed = f"{x['failed']}" + (f" {x['failures']}" if x["failed"] else "")
            lines.append(f"| {proxy} | {prof} | {fmt(x['requests'], ',')} | {failed} | "
                         f"{fmt(x['first_v2_ms'], '.1f')} | {fmt(x['v1_last_seen_ms'], '.1f')} |")
    if publish:
        lines.append(f"\n## Control plane: {publish['apps']:,}-app route table (baton only)\n")
        lines.append("| operation | p50 µs | p99 µs |")
        lines.append("|---|---:|---:|")
        for key, label in (("publish_app_weight_changed", "`publish_app`: one app's weights change"),
                           ("publish_app_backends_changed", "`publish_app`: one app's backends change"),
                           ("publish_app_add_or_remove", "`publish_app`: add or remove an app (router kept, targets shifted)"),
                           ("publish_unchanged", "`publish` of the whole table, nothing changed"),
                           ("publish_full_one_app_changed", "`publish` of the whole table, one app changed")):
            x = publish.get(key) or {}
            lines.append(f"| {label} | {fmt(x.get('p50_us'), ',.1f')} | {fmt(x.get('p99_us'), ',.1f')} |")
        q, b = publish.get("latency_quiet", {}), publish.get("latency_while_publishing", {})
        lines.append(f"\nFirst publish of the whole table: {fmt(publish.get('first_publish_ms'), '.1f')} ms. "
                     f"Request latency (one keep-alive client, in process) quiet: p50 "
                     f"{fmt(q.get('p50_ms'), '.3f')} / p99 {fmt(q.get('p99_ms'), '.3f')} / p99.9 "
                     f"{fmt(q.get('p99_9_ms'), '.3f')} ms; while publishing continuously "
                     f"({fmt(publish.get('publishes_per_s_during_load'), ',.0f')} publishes/s): p50 "
                     f"{fmt(b.get('p50_ms'), '.3f')} / p99 {fmt(b.get('p99_ms'), '.3f')} / p99.9 "
                     f"{fmt(b.get('p99_9_ms'), '.3f')} ms.")
    return "\n".join(lines) + "\n"


def svg_chart(summary):
    colors = {"direct": "#999999", "baton": "#d9534f", "nginx": "#5cb85c", "haproxy": "#428bca",
              "caddy": "#f0ad4e"}
    width, bar, gap, group_gap, top, h = 760, 40, 8, 60, 40, 260
    summary = summary["throughput"]
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
            "wrk": sh("wrk -v 2>&1 | head -1"),
            "h2load": sh("h2load --version 2>&1 | head -1"), "caddy": sh("caddy version 2>&1"),
            "openssl": sh("openssl version 2>&1"), "taskset": bool(shutil.which("taskset"))}


def missing_figures(result):
    summary, missing = result["summary"], []
    for mode in MODES:
        for t in TARGETS:
            for k in ("rps", "p50_ms", "p99_ms"):
                if summary["throughput"][mode][t][k] is None:
                    missing.append(f"{mode}/{t}/{k}")
        for other in OTHERS:
            for key in ("throughput", "throughput2"):
                r = summary[key][mode][f"ratio_baton_{other}"]
                for k in ("rps", "cpu_us_per_req", "user_us_per_req", "sys_us_per_req"):
                    if r[k] is None:
                        missing.append(f"{key}/{mode}/ratio_baton_{other}/{k}")
    for rate, sr in summary["fixed_rate"].items():
        for t in TARGETS:
            for k in ("p50_ms", "p99_ms", "p99_9_ms"):
                if sr[t][k] is None:
                    missing.append(f"fixed_rate/{rate}/{t}/{k}")
    for p in PROXIES:
        if summary["h2"][p]["rps"] is None:
            missing.append(f"h2/{p}")
        m = result["memory"][p]
        for k in ("idle_mib", "conns_mib", "idle_after_mib"):
            if m.get(k) is None:
                missing.append(f"memory/{p}/{k}")
    for p in SWITCH_PROXIES:
        for prof in PROFILES:
            s = result["switch"][p][prof]
            if s["failed"] is None or s["to_new_ms_median"] is None:
                missing.append(f"switch/{p}/{prof}")
            if s["switches_done"] != s["switches_requested"]:
                missing.append(f"switch/{p}/{prof}: only {s['switches_done']} switches ran")
            w = result["weights"][p][prof]
            if w["failed"] is None or w["first_v2_ms"] is None or w["switch_errors"]:
                missing.append(f"weights/{p}/{prof} {w['switch_errors']}")
    for p in TLS_PROXIES:
        x = result["summary"]["tls"][p]
        for mode in (*TLS_MODES, "h2"):
            if x[mode]["rps"] is None:
                missing.append(f"tls/{mode}/{p}")
        if x["handshake"]["cpu_us_per_req"] is None or x["keepalive"]["cpu_us_per_req"] is None:
            missing.append(f"tls/cpu/{p}")
    for other in TLS_PROXIES[1:]:
        r = result["summary"]["tls"][f"ratio_baton_{other}"]
        for mode in (*TLS_MODES, "h2"):
            if r[mode]["rps"] is None:
                missing.append(f"tls/{mode}/ratio_baton_{other}")
    pub = result.get("publish") or {}
    for k in ("publish_app_weight_changed", "publish_unchanged", "latency_while_publishing"):
        if not pub.get(k):
            missing.append(f"publish/{k}")
    return missing


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--baton", required=True)
    ap.add_argument("--client", required=True, help="the bench-client binary (baton-loadgen)")
    ap.add_argument("--sample-app", help="the baton binary that runs the backends "
                    "(default: --baton)")
    ap.add_argument("--publish-json", help="output of the publish_scale bench")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--build", default="plain", choices=("plain", "pgo"),
                    help="how --baton was built: `cargo build --release` or dist/build-pgo")
    ap.add_argument("--out", default=str(BENCH_DIR))
    args = ap.parse_args()
    if args.quick:
        rounds, seconds, rate_s, conns, switches, rates, mem_conns = 1, 2, 2, 32, 4, [2000], 200
    else:
        rounds, seconds, rate_s, conns, switches, rates, mem_conns = 3, 10, 8, 32, 20, [5000, 20000], 1000
    conns2 = 2 * conns  # the two-worker rows: wrk -t2, as many connections per thread
    interval = 0.8  # seconds between switch commands
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    raise_nofile()
    client = str(Path(args.client).resolve())
    tmp = tempfile.mkdtemp(prefix="baton-bench-")
    os.chmod(tmp, 0o755)
    bench = Bench(args.baton, tmp, args.sample_app)
    raw = {"throughput": {m: {t: [] for t in TARGETS} for m in MODES},
           "throughput2": {m: {p: [] for p in PROXIES} for m in MODES},
           "fixed_rate": {r: {t: [] for t in TARGETS} for r in rates},
           "h2": {p: [] for p in PROXIES},
           "tls": {m: {p: [] for p in TLS_PROXIES} for m in (*TLS_MODES, "h2")}}
    try:
        noresume_env = {**os.environ, "LD_PRELOAD": build_noresume(tmp)}
        bench.make_cert()
        bench.start_backends()
        bench.start_proxies()
        for proxy in PROXIES:
            body = get_body(bench.ports[proxy])
            if "v1" not in body:
                raise RuntimeError(f"{proxy} does not route to v1: {body[:200]}")
        for proxy in TLS_PROXIES:
            body = get_body_tls(bench.tls_ports[proxy])
            if "v1" not in body:
                raise RuntimeError(f"{proxy} (HTTPS) does not route to v1: {body[:200]}")
        log(f"memory: idle and with {mem_conns} open connections")
        memory = measure_memory(bench, mem_conns)
        for rnd in range(rounds):
            k = rnd % len(TARGETS)
            order = TARGETS[k:] + TARGETS[:k]
            for mode in MODES:
                for t in order:
                    log(f"round {rnd + 1}/{rounds} {mode} {t} ({seconds}s)")
                    pid = bench.pids.get(t)
                    c0 = cpu_times(pid) if pid else None
                    r = run_wrk(bench.ports[t], mode, seconds, conns)
                    if pid and r.get("requests"):
                        cpu_per_request(r, c0, cpu_times(pid), r["requests"])
                    raw["throughput"][mode][t].append(r)
            for rate in rates:
                for t in order:
                    log(f"round {rnd + 1}/{rounds} fixed rate {rate}/s {t} ({rate_s}s)")
                    raw["fixed_rate"][rate][t].append(
                        fixed_rate(client, bench.ports[t], rate, rate_s, conns))
            for p in [x for x in order if x in PROXIES]:
                log(f"round {rnd + 1}/{rounds} h2c {p} ({seconds}s)")
                raw["h2"][p].append(h2_throughput(bench.h2_ports[p], seconds))
            k = rnd % len(TLS_PROXIES)
            tls_order = TLS_PROXIES[k:] + TLS_PROXIES[:k]
            for mode in TLS_MODES:
                for p in tls_order:
                    log(f"round {rnd + 1}/{rounds} TLS {mode} {p} ({seconds}s)")
                    pid = bench.pids[p]
                    c0 = cpu_seconds(pid)
                    r = run_wrk(bench.tls_ports[p], mode, seconds, conns, scheme="https",
                                env=noresume_env if mode == "handshake" else None)
                    if r.get("requests"):
                        r["cpu_us_per_req"] = (cpu_seconds(pid) - c0) * 1e6 / r["requests"]
                    raw["tls"][mode][p].append(r)
            for p in tls_order:
                log(f"round {rnd + 1}/{rounds} TLS h2 {p} ({seconds}s)")
                c0 = cpu_seconds(bench.pids[p])
                r = h2_throughput(bench.tls_ports[p], seconds, scheme="https")
                if r.get("succeeded"):
                    r["cpu_us_per_req"] = (cpu_seconds(bench.pids[p]) - c0) * 1e6 / r["succeeded"]
                raw["tls"]["h2"][p].append(r)
        switch = {p: {} for p in SWITCH_PROXIES}
        weights = {p: {} for p in SWITCH_PROXIES}
        for proxy in SWITCH_PROXIES:
            for prof in PROFILES:
                log(f"switch under load: {proxy} {prof} ({switches} switches)")
                switch[proxy][prof] = switch_profile(bench, client, proxy, prof, switches,
                                                     interval)
                if bench.version != "v1":  # weight steps start from v1
                    if proxy == "baton":
                        bench.baton_wait(bench.baton_deploy("v1"))
                    else:
                        bench.switch(proxy, "v1")
                    bench.version = "v1"
                log(f"weight steps under load: {proxy} {prof}")
                weights[proxy][prof] = weight_steps(bench, client, proxy, prof)
        time.sleep(1.0)
        for proxy in PROXIES:
            memory[proxy]["idle_after_mib"] = round(rss_mib(bench.pids[proxy]), 2)
        log("two workers each: every proxy started again")
        bench.restart_proxies(2)
        for proxy in PROXIES:
            body = get_body(bench.ports[proxy])
            if "v1" not in body:
                raise RuntimeError(f"{proxy} (two workers) does not route to v1: {body[:200]}")
        for rnd in range(rounds):
            k = rnd % len(PROXIES)
            order = PROXIES[k:] + PROXIES[:k]
            for mode in MODES:
                for t in order:
                    log(f"round {rnd + 1}/{rounds} two workers {mode} {t} ({seconds}s)")
                    pid = bench.pids[t]
                    c0 = cpu_times(pid)
                    r = run_wrk(bench.ports[t], mode, seconds, conns2, threads=2)
                    if r.get("requests"):
                        cpu_per_request(r, c0, cpu_times(pid), r["requests"])
                    raw["throughput2"][mode][t].append(r)
    finally:
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)

    publish = None
    if args.publish_json:
        try:
            publish = json.loads(Path(args.publish_json).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            log(f"no control-plane figures: {exc}")
    cmd = "bench/run" + (" --quick" if args.quick else "") + (
        " --plain" if args.build == "plain" and not args.quick else "")
    result = {"command": cmd, "mode": "quick" if args.quick else "full",
              "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "params": {"rounds": rounds, "seconds": seconds, "connections": conns,
                         "connections_2_workers": conns2,
                         "wrk_threads": 1, "switches": switches, "switch_interval_s": interval,
                         "rates": rates, "rate_seconds": rate_s, "memory_connections": mem_conns,
                         "proxy_core": 0, "loadgen_core": 1, "baton_build": args.build},
              "machine": machine_info(), "summary": summarize(raw), "switch": switch,
              "weights": weights, "memory": memory, "publish": publish, "raw": raw}
    out = Path(args.out)
    text = table(result)
    print(text)
    stem = "results-quick" if args.quick else "results"  # quick runs keep the full figures
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / f"{stem}.svg").write_text(svg_chart(result["summary"]))
    if not args.quick:
        write_results_md(out / "RESULTS.md", result, text)
    missing = missing_figures(result)
    if missing:
        log("figures missing: " + ", ".join(missing))
        return 1
    return 0


# A hand-written reading of the figures at the end of RESULTS.md, from this heading on,
# survives regeneration (the engineer updates it after each full run).
READING = "\n## Reading the figures"


# How the baton under test was built, in RESULTS.md's words.
BUILDS = {"plain": "built by `cargo build --release`",
          "pgo": "built by `dist/build-pgo` (profile-guided, the build to install; "
                 "`bench/run --plain` measures `cargo build --release`)"}


def write_results_md(path, result, text):
    m = result["machine"]
    p = result["params"]
    old = path.read_text() if path.exists() else ""
    reading = old[old.index(READING):] if READING in old else ""
    path.write_text(f"""# Benchmark results: baton vs nginx vs HAProxy vs Caddy

Produced by `{result['command']}` on {result['date_utc']} (figures below are copied from
`bench/results.json` of that run; the chart is `bench/results.svg`).

Setup: two `baton sample-app` backends (v1, v2) on loopback; each proxy with one worker
(nginx `worker_processes 1` + upstream `keepalive 64` + `access_log off`; HAProxy
`nbthread 1` + `http-reuse always`, no logging; Caddy (Debian's package) `GOMAXPROCS=1`,
`reverse_proxy`, admin endpoint off, no logs; baton `[proxy] workers = 1`, static
runtime, {BUILDS[p.get('baton_build', 'plain')]}). Each proxy tells the backend the same: the client's Host,
X-Forwarded-For, -Proto, -Host, and an X-Request-Id (baton by itself; nginx
`proxy_set_header` with `$request_id`; HAProxy `option forwardfor`, `set-header` and a
`uuid()` unique id; Caddy by itself plus `header_up X-Request-Id {{http.request.uuid}}`),
so the backends read the same request from each. Every proxy is pinned to its core with `taskset`. Proxies on core {p['proxy_core']}; load
generators and the backends on core {p['loadgen_core']}. {p['rounds']} rounds, targets
interleaved with a rotating order; medians over rounds.

- Throughput: wrk `-t1 -c{p['connections']} --latency`, {p['seconds']} s per target;
  `close` = `Connection: close` (one new client connection per request). CPU µs/request =
  the proxy's process tree utime+stime (`/proc/<pid>/stat`) over the run / requests.
- Throughput at two workers each (after every other row): each proxy started again with
  two (nginx `worker_processes 2`, HAProxy `nbthread 2`, Caddy `GOMAXPROCS=2`, baton
  `workers = 2`) on both cores; wrk `-t2 -c{p['connections_2_workers']}`, not pinned: the
  proxy, wrk and the backends share the two cores, alike for every proxy.
- Fixed rates ({', '.join(str(r) for r in p['rates'])} req/s): `bench-client` (crates/baton-loadgen),
  {p['connections']} connections, open loop: latency counts from each request's scheduled send
  time, so stalls are charged to the requests queued behind them (coordinated-omission
  correction). "added p99" = target p99 − direct p99.
- HTTP/2: h2load over h2c prior knowledge (nginx `listen ... http2`, HAProxy `proto h2`,
  Caddy `protocols h1 h2 h2c`).
- TLS 1.3 (the same self-signed ECDSA P-256 certificate, made with `openssl req` per run,
  for all four): baton `tls_listen` (rustls + ring), nginx `listen ... ssl http2` +
  `ssl_protocols TLSv1.3`, HAProxy `bind ... ssl alpn h2,http/1.1 ssl-min-ver TLSv1.3`,
  Caddy `tls cert key {{ protocols tls1.3 }}`; each server's default ciphers, key exchange
  and session tickets. "New handshakes/s" = wrk over https with `Connection: close`: every
  request on a new connection with a full handshake. wrk would resume its TLS session on
  each reconnect (it keeps it across `SSL_clear`), so it runs with `bench/noresume.c`
  preloaded, which drops the session before each handshake: no resumption with any
  server. Keep-alive = wrk over https; h2 = h2load `-c{p['connections']} -m10` over https
  (ALPN h2). CPU µs per handshake / request as above. The client does as much crypto per
  handshake as the server (key share, signature check) on the other core, so handshakes/s
  may be bounded by the client; CPU µs/handshake is the proxy's own cost either way.
- Memory: VmRSS summed over the process tree (nginx: master + worker); idle, then with
  {p['memory_connections']} keep-alive client connections open (each made one request), and idle after all runs.
- Switches: {p['switches']} switches v1 -> v2 -> v1, one every {p['switch_interval_s']} s, under three
  `bench-client` profiles (32 connections each): keep-alive back to back, keep-alive with
  50 ms idle gaps, a new connection per request. baton: `POST /v1/apps/web/deployments`
  (what `baton deploy --detach` sends; blue/green, static targets) then status polling until
  it finished; nginx: rewrite the upstream + `nginx -s reload`; HAProxy: runtime API
  `set server be/sX weight|state`; Caddy is not in these rows (its counterpart, a config
  reload through its admin API, is not measured). Failed = any error or non-2xx, nothing
  retried.
  "Old backend last seen" = the last response from the old backend after the command.
- Weight steps: v2 at 10 %, 50 %, 100 % one second apart (baton: one canary deploy with
  steps `weight 10, pause 1s, weight 50, pause 1s`; nginx: weighted upstream + reload per step;
  HAProxy: `set server ... weight` per step).
- Control plane: `cargo bench -p baton-proxy --bench publish_scale` (in process, no nginx /
  HAProxy counterpart).

Caveat: a 2-core machine shared with other work (other engineers compiling); the backends
share the load generator's core, so absolute figures are low and noisy. Ratios are the point.

## Machine

- nproc: {m['nproc']}
- kernel: {m['kernel']}
- {m['nginx']}; {m['haproxy']}; Caddy {m.get('caddy', '')}; {m['wrk']}; {m.get('h2load', '')};
  {m.get('openssl', '')} (nginx, HAProxy, wrk, h2load)

```
{m['lscpu']}
```
{text}{reading}""")


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        stop_all()
