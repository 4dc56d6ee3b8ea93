#!/usr/bin/env python3
"""A/B of two baton builds on the CPU: the same load through each, alternating.

    python3 bench/ab.py --a /tmp/baton-before --b target/release/baton [--rounds 3]
        [--modes keepalive,close,h2c,rate20000]

Each run starts a fresh baton (one worker, on core 0) and fresh backends with bench.py's
`Bench` (core 1), warms up for 2 s, then runs each mode for `--seconds` on core 1 —
`wrk -t1 -c32` keep-alive, `wrk` with `Connection: close`, `h2load -c32 -m10` over
h2c, `rate<N>`: `bench-client` at N requests a second on 32 connections (open loop, as
bench/run's latency rows; prints p99 too) — the default is the first two — reading the
proxy's CPU time from /proc before and after. The builds alternate, and which goes first flips every round, so
a machine that gets busier or quieter during the runs is shared by both. Prints each run,
then per mode and build the figures of every round: CPU µs per request (user + kernel),
of it user, and req/s. Compare rounds against rounds; one pair of runs says little on a
shared machine.
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench as B  # noqa: E402

MODES = ("keepalive", "close", "h2c", "rate<N>")
CLIENT = Path(__file__).resolve().parent.parent / "target" / "release" / "bench-client"


def known(mode):
    return mode in MODES[:3] or (mode.startswith("rate") and mode[4:].isdigit())


def load(port, mode, seconds):
    """One mode's load through `port`: a result with "requests" and "rps"."""
    if mode.startswith("rate"):
        res = B.fixed_rate(str(CLIENT), port, int(mode[4:]), seconds, 32)
        if res.get("sent") is None or res.get("failed"):
            raise RuntimeError(f"bench-client: no figures or failed requests: {res}")
        res["requests"] = res["sent"]
        return res
    if mode == "h2c":
        res = B.h2_throughput(port, seconds)
        if res["failed"]:
            raise RuntimeError(f"h2load: {res['failed']} requests failed")
        res["requests"] = res["succeeded"]
        return res
    return B.run_wrk(port, mode, seconds, 32)


def one_run(binary, seconds, modes, sample_app):
    """Fresh backends (from `sample_app`) and baton from `binary`; {mode: wrk result with
    CPU per request}."""
    out = {}
    with tempfile.TemporaryDirectory(prefix="baton-ab-") as tmp:
        b = B.Bench(binary, tmp, sample_app)
        try:
            b.make_cert()
            b.start_backends()
            b.start_baton()
            port, pid = b.ports["baton"], b.pids["baton"]
            B.run_wrk(port, "keepalive", 2, 32)
            for mode in modes:
                before = B.cpu_times(pid)
                res = load(port, mode, seconds)
                if not res["requests"]:
                    raise RuntimeError(f"wrk completed no requests through {binary} ({mode})")
                B.cpu_per_request(res, before, B.cpu_times(pid), res["requests"])
                out[mode] = res
        finally:
            B.stop_all()
            B.CHILDREN.clear()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", required=True, help="the first baton binary (e.g. the base)")
    ap.add_argument("--b", required=True, help="the second baton binary (e.g. the change)")
    ap.add_argument("--sample-app", help="the binary whose `sample-app` is the backend of "
                    "both (default: --a), so a build's backends do not differ")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10, help="each mode's duration")
    ap.add_argument("--modes", default="keepalive,close",
                    help=f"comma-separated, of {', '.join(MODES)}")
    args = ap.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    unknown = [m for m in modes if not known(m)]
    if unknown or not modes:
        sys.exit(f"ab: --modes {args.modes!r}: use one or more of {', '.join(MODES)}")
    builds = {"a": args.a, "b": args.b}
    if any(m.startswith("rate") for m in modes) and not CLIENT.is_file():
        sys.exit(f"ab: {CLIENT} is missing: cargo build --release -p baton-loadgen")
    for name, path in builds.items():
        if not Path(path).is_file():
            sys.exit(f"ab: --{name} {path} is not a file; build it first "
                     "(cargo build --release -p baton, then copy target/release/baton)")
    B.raise_nofile()
    runs = []
    for r in range(args.rounds):
        order = list(builds.items())
        if r % 2:
            order.reverse()
        for name, path in order:
            for mode, res in one_run(path, args.seconds, modes,
                                     args.sample_app or args.a).items():
                runs.append((name, mode, res))
                p99 = f"  p99 {res['p99_ms']:.3f} ms" if res.get("p99_ms") is not None else ""
                print(f"round {r + 1} {name} {mode:9} {res['rps']:9,.0f} req/s  "
                      f"CPU {res['cpu_us_per_req']:6.2f} µs/req  "
                      f"user {res['user_us_per_req']:5.2f}  kernel {res['sys_us_per_req']:6.2f}"
                      f"{p99}", flush=True)
            time.sleep(1)
    for mode in modes:
        for name, path in builds.items():
            rs = [res for n, m, res in runs if n == name and m == mode]
            cpu = " / ".join(f"{x['cpu_us_per_req']:.2f}" for x in rs)
            user = " / ".join(f"{x['user_us_per_req']:.2f}" for x in rs)
            rps = " / ".join(f"{x['rps']:,.0f}" for x in rs)
            p99 = ""
            if all(x.get("p99_ms") is not None for x in rs):
                p99 = "; p99 ms " + " / ".join(f"{x['p99_ms']:.3f}" for x in rs)
            print(f"{mode:9} {name} ({path}): CPU µs/req {cpu}; user {user}; req/s {rps}{p99}")


if __name__ == "__main__":
    main()
