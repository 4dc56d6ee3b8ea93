#!/usr/bin/env python3
"""The training run of a profile-guided build (dist/build-pgo): an instrumented baton
serves the traffic a proxy serves, and writes the counts of every branch and call it
took into LLVM_PROFILE_FILE when it exits.

    python3 dist/pgo-train.py --baton path/to/instrumented/baton --profile-dir DIR [--seconds S]

What runs through it, each for --seconds (4): HTTP/1.1 keep-alive GETs, a new connection
per request, h2c (32 connections x 10 streams), HTTPS keep-alive, new TLS connections,
h2 over TLS, POSTs with a 16 KiB body (hyper's path, request bodies), and a blue/green
deployment switched under keep-alive load (publish, drain). The optimizer lays code out
and inlines by these counts: the request paths run here become straight-line code, and
code never run here is treated as cold. The load tools are those of bench/run (wrk,
h2load, openssl for the certificate); the backends are `baton sample-app`, whose own
counts go elsewhere (they would only dilute the proxy's).
"""
import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import bench as B  # noqa: E402


def wrk_argv(port, seconds, scheme="http", extra=()):
    return ["wrk", "-t1", "-c32", f"-d{seconds}s", *extra, f"{scheme}://127.0.0.1:{port}/"]


def wrk_rps(argv, stdout, stderr=""):
    """wrk's req/s, or an error if any request failed: counts of failures would train
    the error paths as hot."""
    res = B.parse_wrk(stdout)
    if not res["rps"] or res["non2xx"] or res["socket_errors"]:
        raise RuntimeError(f"training load failed ({' '.join(argv)}): {stdout}{stderr}")
    return res["rps"]


def wrk(port, seconds, scheme="http", extra=()):
    argv = wrk_argv(port, seconds, scheme, extra)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
    return wrk_rps(argv, out.stdout, out.stderr)


def h2load(port, seconds, scheme="http"):
    res = B.h2_throughput(port, seconds, scheme=scheme)
    if not res["rps"] or res["failed"]:
        raise RuntimeError(f"training load failed (h2load {scheme}): {res}")
    return res["rps"]


def main():
    try:
        train()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        sys.exit(f"pgo-train: {exc}")


def train():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baton", required=True, help="the instrumented baton binary")
    ap.add_argument("--profile-dir", required=True, help="where the .profraw files go")
    ap.add_argument("--seconds", type=int, default=4)
    args = ap.parse_args()
    if not (Path(args.baton).is_file() and os.access(args.baton, os.X_OK)):
        raise RuntimeError(f"--baton {args.baton} is not an executable file: an instrumented "
                           "build (dist/build-pgo makes one)")
    profile_dir = Path(args.profile_dir).resolve()
    profile_dir.mkdir(parents=True, exist_ok=True)
    s = args.seconds
    B.raise_nofile()
    with tempfile.TemporaryDirectory(prefix="baton-pgo-") as tmp:
        discard = Path(tmp) / "backend-profiles"
        bench = B.Bench(args.baton, tmp)
        try:
            bench.make_cert()
            os.environ["LLVM_PROFILE_FILE"] = str(discard / "%p.profraw")
            bench.start_backends()
            os.environ["LLVM_PROFILE_FILE"] = str(profile_dir / "baton-%p-%m.profraw")
            bench.start_baton()
            port, tls = bench.ports["baton"], bench.tls_ports["baton"]
            post = Path(tmp) / "post.lua"
            post.write_text('wrk.method = "POST"\nwrk.path = "/echo"\n'
                            'wrk.body = string.rep("x", 16384)\n')
            runs = [
                ("keep-alive", lambda: wrk(port, s)),
                ("new connection per request", lambda: wrk(port, s, extra=("-H", "Connection: close"))),
                ("h2c", lambda: h2load(port, s)),
                ("https keep-alive", lambda: wrk(tls, s, "https")),
                ("https new connections", lambda: wrk(tls, s, "https", ("-H", "Connection: close"))),
                ("h2 over TLS", lambda: h2load(tls, s, "https")),
                ("POST 16 KiB", lambda: wrk(port, s, extra=("-s", str(post)))),
            ]
            for name, run in runs:
                print(f"pgo-train: {name}: {run():,.0f} req/s", file=sys.stderr, flush=True)
            # A switch under load: publish, drain, the new version's first requests.
            argv = wrk_argv(port, s)
            load = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
            time.sleep(s / 4)
            bench.baton_wait(bench.baton_deploy("v2"))
            out, _ = load.communicate(timeout=s + 30)
            print(f"pgo-train: blue/green switch under load: {wrk_rps(argv, out):,.0f} req/s",
                  file=sys.stderr, flush=True)
            # The counts are written when the process exits normally (SIGTERM: a
            # graceful stop).
            proc = bench.procs["baton"]
            proc.send_signal(signal.SIGTERM)
            if proc.wait(timeout=60) != 0:
                raise RuntimeError(f"baton exited with {proc.returncode} (its log: {tmp}/baton.log)")
        finally:
            B.stop_all()
    written = list(profile_dir.glob("baton-*.profraw"))
    if not written:
        sys.exit(f"pgo-train: baton wrote no profile into {profile_dir}: was it built with "
                 "-Cprofile-generate?")
    print(f"pgo-train: {len(written)} profile file(s) in {profile_dir}", file=sys.stderr)


if __name__ == "__main__":
    main()
