#!/usr/bin/env python3
"""Ingest with the probes on and off, side by side (issue 12's load check).

Builds nothing: run `cargo build --release --locked` first. Three rounds; in each, a fresh
release gateway (one reader) with the probes off, then one with every group on (extras too)
sampling every second, each driven by `statsgate bench` at --rate lines/s for 10 s, 20 lines
per datagram. Prints loss, kernel drops and CPU per line per run, then the medians. Exit 1 if
the probes cost any line.
"""
import json, os, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "statsgate")
RATE = sys.argv[1] if len(sys.argv) > 1 else "1000000"
UDP, ADMIN = "127.0.0.1:18125", "127.0.0.1:18126"


def run(probes: bool) -> dict:
    env = dict(os.environ, STATSGATE_STATSD__LISTEN=UDP, STATSGATE_ADMIN__LISTEN=ADMIN,
               STATSGATE_HTTP__LISTEN="", STATSGATE_STATSD__READERS="1",
               STATSGATE_PROBES__ENABLED="true" if probes else "false",
               STATSGATE_PROBES__PERIOD="1s", STATSGATE_PROBES__DISABLED_GROUPS="[]",
               STATSGATE_PROBES__EXTRAS="true")
    gw = subprocess.Popen([BIN, "run"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.5)
        out = subprocess.run([BIN, "bench", "--target", UDP, "--admin", ADMIN, "--rate", RATE,
                              "--duration", "10s", "--lines-per-datagram", "20", "--series", "1000",
                              "--json"], capture_output=True, text=True, check=True)
        return json.loads(out.stdout)
    finally:
        gw.terminate()
        gw.wait()


results = {False: [], True: []}
for rnd in range(3):
    for probes in (False, True):
        r = run(probes)
        results[probes].append(r)
        print(f"round {rnd} probes {'on ' if probes else 'off'}: offered {r['offered_lines']}, "
              f"lost {r['lost_lines']}, kernel drops {r['kernel_drops']}, "
              f"CPU/line {r['cpu_per_line_us']:.4f} µs", flush=True)
for probes, rs in results.items():
    print(f"probes {'on ' if probes else 'off'}: median lost {statistics.median(x['lost_lines'] for x in rs)}, "
          f"median CPU/line {statistics.median(x['cpu_per_line_us'] for x in rs):.4f} µs")
sys.exit(1 if any(x["lost_lines"] for x in results[True]) else 0)
