#!/usr/bin/env python3
"""Issue 13's long run: one check of every kind for DURATION seconds (default 600), with
`statsgate bench` load side by side against a gateway without checks.

Builds nothing: run `cargo build --release --locked` first. Needs root or
net.ipv4.ping_group_range for the ping check (it is reported as down otherwise, which this
script accepts as long as it is reported every period).

Two release gateways, one reader each: A with the checks below, B with none. A local HTTP
server answers the http check and is the tcp check's open port; a closed port is the
unreachable URL; a Nagios plugin hangs past its timeout; another prints perfdata; a writer
appends a Rainbow record to checks.files_dir every 2 s. Every 30 s, `statsgate bench` drives B
then A for 10 s each at --rate lines/s (alternating, so both see the same machine).

At the end it checks, from A's console output (every flush) and /metrics:
- every check's metric appears in every period: no gap between consecutive timestamps longer
  than period + one flush interval + 1 s;
- the hung plugin is reported as UNKNOWN (3) and the unreachable URL as down (1), on time;
- every Rainbow record arrived once;
- bench lost no more lines on A than on B (medians).
Prints a table per check and the bench rounds; exits 1 if a check failed its promise.
"""
import http.server, json, os, socket, statistics, subprocess, sys, tempfile, threading, time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "statsgate")
DURATION = float(sys.argv[1]) if len(sys.argv) > 1 else 600.0
RATE = sys.argv[2] if len(sys.argv) > 2 else "500000"
PERIOD, FLUSH = 5, 5
A = {"udp": "127.0.0.1:18125", "admin": "127.0.0.1:18126"}
B = {"udp": "127.0.0.1:18135", "admin": "127.0.0.1:18136"}


class Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"healthy\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def script(path, text):
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + text)
    os.chmod(path, 0o755)
    return path


def gateway(ports, config, stdout):
    env = dict(os.environ, STATSGATE_STATSD__LISTEN=ports["udp"], STATSGATE_ADMIN__LISTEN=ports["admin"],
               STATSGATE_HTTP__LISTEN="", STATSGATE_STATSD__READERS="1",
               STATSGATE_PROBES__ENABLED="false", STATSGATE_AGGREGATE__HOSTNAME="soak")
    return subprocess.Popen([BIN, "run", "--config", config], env=env, stdout=stdout,
                            stderr=subprocess.DEVNULL)


def bench(ports):
    out = subprocess.run([BIN, "bench", "--target", ports["udp"], "--admin", ports["admin"], "--rate", RATE,
                          "--duration", "10s", "--lines-per-datagram", "20", "--series", "1000", "--json"],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main():
    tmp = tempfile.mkdtemp(prefix="statsgate-soak-")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    dead = closed_port()
    hung = script(os.path.join(tmp, "check_hung"), "sleep 300\n")
    perf = script(os.path.join(tmp, "check_perf"), "echo 'OK - fine|conns=12;50;100;0'\nexit 0\n")
    files = os.path.join(tmp, "rainbow")
    os.mkdir(files)
    checks = f"""flush:
  interval: {FLUSH}s
checks:
  files_dir: {files}
  files_period: 1s
  instances:
    - {{name: web, kind: http, period: {PERIOD}s, url: 'http://127.0.0.1:{port}/health', body_pattern: healthy}}
    - {{name: gone, kind: http, period: {PERIOD}s, url: 'http://127.0.0.1:{dead}/'}}
    - {{name: port, kind: tcp, period: {PERIOD}s, address: '127.0.0.1:{port}'}}
    - {{name: loopback, kind: host_alive, period: {PERIOD}s, host: loopback, target: 127.0.0.1}}
    - {{name: self, kind: process, period: {PERIOD}s, search: [statsgate]}}
    - {{name: nagios.hung, kind: nagios, period: {PERIOD}s, timeout: 2s, command: ['{hung}']}}
    - {{name: nagios.perf, kind: nagios, period: {PERIOD}s, command: ['{perf}']}}
"""
    cfg_a = os.path.join(tmp, "a.yaml")
    cfg_b = os.path.join(tmp, "b.yaml")
    open(cfg_a, "w").write(checks)
    open(cfg_b, "w").write(f"flush:\n  interval: {FLUSH}s\n")
    out_a = open(os.path.join(tmp, "a.out"), "w")
    gw_a = gateway(A, cfg_a, out_a)
    gw_b = gateway(B, cfg_b, subprocess.DEVNULL)
    written = []
    stop = threading.Event()

    def writer():
        n = 0
        while not stop.wait(2.0):
            n += 1
            rec = {"name": "soak_records", "units": "n", "desc": "soak", "timestamp": int(time.time()),
                   "val": n, "higherIsBetter": True, "minVal": 0, "maxVal": 1e9, "group": "AppLevelMetrics"}
            with open(os.path.join(files, "rainbow.metrics.jsonl"), "a") as f:
                f.write(json.dumps(rec) + "\n")
            written.append(n)

    threading.Thread(target=writer, daemon=True).start()
    rounds = {"without": [], "with": []}
    started = time.time()
    try:
        time.sleep(2)
        while time.time() - started < DURATION - 25:
            for label, ports in (("without", B), ("with", A)):
                r = bench(ports)
                rounds[label].append(r)
                print(f"{time.time() - started:6.0f}s bench {label:7} checks: offered {r['offered_lines']}, "
                      f"lost {r['lost_lines']}, kernel drops {r['kernel_drops']}", flush=True)
            time.sleep(max(0.0, 30 - 20))
        time.sleep(max(0.0, DURATION - (time.time() - started)))
        stop.set()
        time.sleep(FLUSH + 3)
        metrics_text = urllib.request.urlopen(f"http://{A['admin']}/metrics").read().decode()
    finally:
        for gw in (gw_a, gw_b):
            gw.terminate()
            gw.wait()
        out_a.close()
        server.shutdown()

    flushes = [json.loads(l) for l in open(os.path.join(tmp, "a.out")) if l.startswith("[")]
    seen = {}
    for flush in flushes:
        for m in flush:
            key = m["name"]
            if key in ("http_status",):
                key += " " + m["dimensions"].get("url", "")
            seen.setdefault(key, []).append(m)
    want = {
        f"http_status http://127.0.0.1:{port}/health": 0,
        f"http_status http://127.0.0.1:{dead}/": 1,
        "http_response_time": None,
        "network.tcp.status": 0,
        "network.tcp.response_time": None,
        "host_alive_status": None,
        "process.pid_count": None,
        "nagios.hung": 3,
        "nagios.perf": 0,
        "nagios.perf.conns": 12,
    }
    failures = []
    limit = (PERIOD + FLUSH + 1) * 1000
    print(f"\n{'metric':48} {'points':>6} {'max gap s':>9} {'values':>12}")
    for key, value in want.items():
        points = sorted(seen.get(key, []), key=lambda m: m["timestamp"])
        gaps = [b["timestamp"] - a["timestamp"] for a, b in zip(points, points[1:])]
        values = sorted({m["value"] for m in points})
        print(f"{key:48} {len(points):6} {max(gaps, default=0) / 1000:9.1f} {str(values)[:12]:>12}")
        expected_points = (DURATION - PERIOD) / PERIOD
        if len(points) < expected_points * 0.95 or max(gaps, default=limit + 1) > limit:
            failures.append(f"{key}: {len(points)} points (want ~{expected_points:.0f}), max gap {max(gaps, default=0)} ms")
        if value is not None and values != [value]:
            failures.append(f"{key}: values {values}, want only {value}")
    hung_meta = {json.dumps(m.get("value_meta")) for m in seen.get("nagios.hung", [])}
    print(f"nagios.hung value_meta: {sorted(hung_meta)[:2]}")
    records = sorted(m["value"] for m in seen.get("soak_records", []))
    if records != sorted(float(n) for n in written) and records != sorted(written):
        failures.append(f"rainbow records: {len(records)} arrived of {len(written)} written")
    print(f"rainbow records: {len(written)} written, {len(records)} arrived")
    for line in metrics_text.splitlines():
        if line.startswith("statsgate_check_runs_total") and not line.endswith(" 0"):
            print(line)
    lost = {k: statistics.median(r["lost_lines"] for r in v) for k, v in rounds.items() if v}
    offered = {k: statistics.median(r["offered_lines"] for r in v) for k, v in rounds.items() if v}
    for k in lost:
        print(f"bench {k:7} checks: {len(rounds[k])} rounds, median offered {offered[k]:.0f}, median lost {lost[k]:.0f}")
    if lost.get("with", 0) > lost.get("without", 0):
        failures.append(f"bench lost more with checks ({lost['with']}) than without ({lost['without']})")
    print("\n" + ("\n".join("FAIL " + f for f in failures) if failures else "all promises kept"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
