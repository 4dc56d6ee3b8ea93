"""baton's memory through the benchmark's phases, one at a time: private (anonymous) and
file-backed RSS after each, the process's largest mappings, and the store's size.

    python3 bench/memory.py --baton target/release/baton --client target/release/bench-client
    python3 bench/memory.py ... --phases switch,switch --switches 20

Uses bench.py's setup (the same baton.toml, backends, certificate and loads) with baton
alone, so what each phase leaves behind is seen on its own. Phases: ka, close, rate, h2,
tlsh (TLS handshakes), tlska, tlsh2, switch (the switch and weight-step profiles). Each
phase is followed by `--settle` seconds idle before it is measured (baton hands freed
memory back a few seconds after a load ends)."""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench as B  # noqa: E402

PHASES = ["ka", "close", "rate", "h2", "tlsh", "tlska", "tlsh2", "switch"]


def status_mib(pid):
    """VmRSS, RssAnon and RssFile of one process, MiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0]) / 1024
    return out


def mappings(pid, top=4):
    """The largest resident mappings: (MiB, name)."""
    rss, name = {}, None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            parts = line.split()
            if parts and "-" in parts[0] and not parts[0].endswith(":"):
                name = parts[5] if len(parts) > 5 else "[anon]"
            elif parts and parts[0] == "Rss:":
                rss[name] = rss.get(name, 0) + int(parts[1])
    return sorted(((round(v / 1024, 1), k) for k, v in rss.items()), reverse=True)[:top]


def report(label, pid, tmp):
    s = status_mib(pid)
    store = sum(p.stat().st_size for p in Path(tmp).glob("baton-state*") if p.is_file())
    print(f"{label:>14}: RSS {s['VmRSS']:5.1f} MiB (private {s['RssAnon']:4.1f}, file "
          f"{s['RssFile']:4.1f}), store {store // 1024} KiB, largest {mappings(pid)}",
          flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--baton", required=True)
    ap.add_argument("--client", required=True)
    ap.add_argument("--phases", default=",".join(PHASES))
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--switches", type=int, default=20)
    ap.add_argument("--settle", type=float, default=6)
    args = ap.parse_args()
    phases = [p for p in args.phases.split(",") if p]
    unknown = [p for p in phases if p not in PHASES]
    if unknown:
        sys.exit(f"memory.py: unknown phase {unknown[0]} (phases: {', '.join(PHASES)})")
    B.raise_nofile()
    tmp = tempfile.mkdtemp(prefix="baton-memory-")
    os.chmod(tmp, 0o755)
    b = B.Bench(args.baton, tmp)
    client = str(Path(args.client).resolve())
    try:
        noresume = {**os.environ, "LD_PRELOAD": B.build_noresume(tmp)}
        b.make_cert()
        b.start_backends()
        b.start_baton()
        pid, port, tls = b.pids["baton"], b.ports["baton"], b.tls_ports["baton"]
        B.get_body(port)
        time.sleep(0.5)
        report("idle", pid, tmp)
        socks = B.open_connections(port, 1000)
        time.sleep(0.3)
        report("1000 conns", pid, tmp)
        for s in socks:
            s.close()
        secs = args.seconds
        for phase in phases:
            if phase == "ka":
                B.run_wrk(port, "keepalive", secs, 32)
            elif phase == "close":
                B.run_wrk(port, "close", secs, 32)
            elif phase == "rate":
                for rate in (5000, 20000):
                    B.fixed_rate(client, port, rate, secs, 32)
            elif phase == "h2":
                B.h2_throughput(port, secs)
            elif phase == "tlsh":
                B.run_wrk(tls, "handshake", secs, 32, scheme="https", env=noresume)
            elif phase == "tlska":
                B.run_wrk(tls, "keepalive", secs, 32, scheme="https")
            elif phase == "tlsh2":
                B.h2_throughput(tls, secs, scheme="https")
            elif phase == "switch":
                for prof in B.PROFILES:
                    B.switch_profile(b, client, "baton", prof, args.switches, 0.8)
                    if b.version != "v1":
                        b.baton_wait(b.baton_deploy("v1"))
                        b.version = "v1"
                    B.weight_steps(b, client, "baton", prof)
            time.sleep(args.settle)
            report(f"after {phase}", pid, tmp)
    finally:
        B.stop_all()


if __name__ == "__main__":
    main()
