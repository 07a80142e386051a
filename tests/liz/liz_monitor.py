#!/usr/bin/env python3
"""liz-monitor (sochoa/lizmon `bin/liz-monitor` + `liz/monitor.py`, seed-apis.md §1), reproduced
without tornado or psutil so that tests can run it: the same CLI, the same URL, the same body,
the same request bytes as tornado 4.3's simple_httpclient writes them, the same schedule, the
same log lines.

What it keeps from liz-monitor:
  - `--this-host NAME --publish URL [URL ...] --interval N` (int seconds, default 1);
  - a PeriodicCallback every interval: the first run one interval after start, the next
    tick scheduled before the publishes run (tornado's `_schedule_next`), missed ticks
    skipped;
  - per destination: `ts = int(datetime.utcnow().timestamp())` (naive utcnow: shifted by
    the local UTC offset on a non-UTC host), then the CPU sample, which blocks for 1 s
    (`psutil.cpu_percent(interval=1)`), then URL = dest (+ "/" if missing) + "<host>/<ts>"
    and a synchronous POST of `json.dumps({"cpu": <float>, "mem": <float>})`;
  - tornado's request: `POST <path> HTTP/1.1`, then `Connection: close`, `Host`,
    `Content-Length`, `Content-Type: application/x-www-form-urlencoded`,
    `Accept-Encoding: gzip` in that order, the head and the body written separately;
  - its logs: `INFO:  Publish was successful to <url>`, `ERROR:  Publish failed to <url>,
    details:  HTTP <code>: <reason>`, `Error: <exception>`.

What it adds, for tests only: `--values-from-seed SEED` takes cpu and mem from a
deterministic sequence (random.Random(SEED), one decimal like psutil) instead of psutil;
`--sent-log FILE` appends one JSON line `{"url", "ts", "cpu", "mem", "status"}` per post;
`--sample-seconds S` is the CPU sample's block (1, as liz; 0 to post back to back);
`--stop-after S` exits after S seconds instead of running forever.
"""

import argparse
import json
import math
import random
import socket
import sys
import time
import warnings
from datetime import datetime
from urllib.parse import urlsplit

# datetime.utcnow() is deprecated from Python 3.12, but it is exactly what liz calls.
warnings.filterwarnings("ignore", category=DeprecationWarning)


class HTTPError(Exception):
    def __init__(self, code, reason):
        super().__init__("HTTP %d: %s" % (code, reason))


def post(url, body, timeout=20.0):
    """One request as tornado 4.3's simple_httpclient sends it; returns (code, reason)."""
    parsed = urlsplit(url)
    if parsed.scheme != "http":
        raise ValueError("only http:// is reproduced (got %r)" % url)
    data = body.encode("utf-8")
    path = (parsed.path or "/") + (("?" + parsed.query) if parsed.query else "")
    headers = [
        ("Connection", "close"),
        ("Host", parsed.netloc.rpartition("@")[-1]),
        ("Content-Length", str(len(data))),
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Accept-Encoding", "gzip"),
    ]
    lines = ["POST %s HTTP/1.1" % path] + ["%s: %s" % h for h in headers]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    port = parsed.port or 80
    with socket.create_connection((parsed.hostname, port), timeout=timeout) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(head)
        s.sendall(data)
        answer = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
    status_line = answer.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise HTTPError(599, "Malformed HTTP response")
    return int(parts[1]), parts[2] if len(parts) > 2 else ""


class Values:
    """psutil's figures, or a deterministic sequence of them."""

    def __init__(self, seed, sample_seconds):
        self.rng = random.Random(seed) if seed is not None else None
        self.sample_seconds = sample_seconds

    def cpu(self):
        if self.rng is None:
            import psutil  # liz's own source of figures, when it is installed

            return psutil.cpu_percent(interval=1, percpu=False)
        # psutil.cpu_percent(interval=1) blocks for its sample.
        time.sleep(self.sample_seconds)
        return round(self.rng.uniform(0.0, 100.0), 1)

    def mem(self):
        if self.rng is None:
            import psutil

            return psutil.virtual_memory().percent
        return round(self.rng.uniform(10.0, 95.0), 1)


def gather_stats(values):
    # As liz/monitor.py: the timestamp is taken before the (blocking) CPU sample.
    return int(datetime.utcnow().timestamp()), {
        "cpu": values.cpu(),
        "mem": values.mem(),
    }


def publish_statistics(this_host, url, values, sent_log):
    try:
        ts, data = gather_stats(values)
        data = json.dumps(data)
        if not url.endswith("/") or url == "":
            url += "/"
        url += "%s/%d" % (this_host, ts)
        status = None
        try:
            code, reason = post(url, data)
            status = code
            if code < 200 or code >= 300:
                raise HTTPError(code, reason)
            print("INFO:  Publish was successful to %s" % url, flush=True)
        except (HTTPError, OSError) as e:
            print("ERROR:  Publish failed to %s, details:  %s" % (url, e), flush=True)
        if sent_log:
            record = dict(json.loads(data), url=url, ts=ts, status=status)
            with open(sent_log, "a") as f:
                f.write(json.dumps(record) + "\n")
    except Exception as e:  # liz-monitor catches everything and prints it
        print("Error: " + str(e), flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--this-host", dest="this_host", required=True)
    parser.add_argument("--publish", dest="destinations", nargs="+", required=True)
    parser.add_argument("--interval", dest="interval_seconds", type=int, default=1)
    parser.add_argument("--values-from-seed", dest="seed", type=int, default=None)
    parser.add_argument("--sent-log", dest="sent_log", default=None)
    parser.add_argument("--sample-seconds", dest="sample_seconds", type=float, default=1.0)
    parser.add_argument("--stop-after", dest="stop_after", type=float, default=None)
    args = parser.parse_args()
    values = Values(args.seed, args.sample_seconds)
    period = args.interval_seconds
    start = time.monotonic()
    next_timeout = start + period
    while True:
        if args.stop_after is not None and next_timeout - start > args.stop_after:
            return 0
        now = time.monotonic()
        if next_timeout > now:
            time.sleep(next_timeout - now)
        # PeriodicCallback._run: the callback only queues the publishes (add_callback), then
        # _schedule_next moves to the next tick not yet past; the publishes run after it, so
        # a publish that overruns its tick is followed by the next one at once.
        now = time.monotonic()
        if next_timeout <= now:
            next_timeout += (math.floor((now - next_timeout) / period) + 1) * period
        for url in args.destinations:
            publish_statistics(args.this_host, url, values, args.sent_log)

if __name__ == "__main__":
    sys.exit(main())
