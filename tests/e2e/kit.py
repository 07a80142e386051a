#!/usr/bin/env python3
"""End-to-end server kit for statsgate: the real Keystone 25.0.0 and monasca-api 11.0.0 on 127.0.0.1.

Stdlib only (it drives a separate venv). See README.md next to this file.

    kit.py install   [--venv DIR] [--constraints PATH]
    kit.py start     [--venv DIR] --workdir DIR [--token-expiration SECONDS]
    kit.py stop      --workdir DIR
    kit.py published --workdir DIR
    kit.py smoke     [--venv DIR] [--workdir DIR] [--constraints PATH]
"""

import argparse
import hashlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DEFAULT_VENV = HERE / ".venv"
DEFAULT_CONSTRAINTS = REPO.parent / "shared/reference/openstack-2024.1-monasca-constraints.txt"
PINS = {"keystone": "25.0.0", "monasca-api": "11.0.0", "gunicorn": "21.2.0"}
STAMP = "statsgate-e2e-installed.json"  # in the venv: pins + constraints hash of the last good install

READY_TIMEOUT = 60.0
REGION = "RegionOne"
PROJECT = "service"
DOMAIN = "Default"


class KitError(Exception):
    pass


def log(msg):
    # stdout is reserved for the one JSON line; everything human goes to stderr.
    print(f"[kit] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------- install

def _venv_python(venv):
    return Path(venv) / "bin" / "python"


def _installed_versions(venv):
    py = _venv_python(venv)
    if not py.exists():
        return None
    code = (
        "import importlib.metadata as m, json\n"
        "out = {}\n"
        f"for n in {list(PINS)!r}:\n"
        "    try: out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: out[n] = None\n"
        "print(json.dumps(out))\n"
    )
    r = subprocess.run([str(py), "-c", code], capture_output=True, text=True)
    if r.returncode != 0:
        return None
    return json.loads(r.stdout)


def _build_hint(output):
    """Turn a failed source build into the apt package that is missing."""
    hints = []
    if re.search(r"Python\.h: No such file", output):
        ver = f"{sys.version_info.major}.{sys.version_info.minor}"
        hints.append(f"Python headers missing: apt-get install python{ver}-dev (or python3-dev)")
    if re.search(r"(gcc|cc|x86_64-linux-gnu-gcc)['\"]? (failed|not found)|command '.*gcc' failed|"
                 r"error: command 'gcc'|unable to execute '.*gcc'", output):
        hints.append("C compiler missing: apt-get install build-essential")
    if re.search(r"openssl/\w+\.h: No such file", output):
        hints.append("OpenSSL headers missing (scrypt): apt-get install libssl-dev")
    return hints


def install(venv, constraints):
    venv = Path(venv).resolve()
    constraints = Path(constraints).resolve()
    if not constraints.is_file():
        raise KitError(f"constraints file not found: {constraints} (pass --constraints PATH)")
    chash = hashlib.sha256(constraints.read_bytes()).hexdigest()
    want = {"pins": PINS, "constraints_sha256": chash}
    stamp = venv / STAMP
    if stamp.exists() and _installed_versions(venv) == PINS:
        try:
            if json.loads(stamp.read_text()) == want:
                log(f"venv {venv} already has {PINS}; nothing to do")
                return
        except ValueError:
            pass
    t0 = time.monotonic()
    if not _venv_python(venv).exists():
        log(f"creating venv {venv}")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    reqs = [f"{n}=={v}" for n, v in PINS.items()]
    cmd = [str(_venv_python(venv)), "-m", "pip", "install", "--disable-pip-version-check",
           "-c", str(constraints), *reqs]
    log("running: " + " ".join(cmd))
    # Tee pip's output to stderr while keeping it for the error hint.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        sys.stderr.write(line)
    if proc.wait() != 0:
        hints = _build_hint("".join(lines))
        raise KitError("pip install failed" + ("; " + "; ".join(hints) if hints else
                                                " (see pip output above)"))
    got = _installed_versions(venv)
    if got != PINS:
        raise KitError(f"after install the venv has {got}, want {PINS}")
    stamp.write_text(json.dumps(want))
    log(f"installed in {time.monotonic() - t0:.1f} s")


# ------------------------------------------------------------------------------------------- cli

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    pi = sub.add_parser("install", help="create the venv and install the pinned servers")
    pi.add_argument("--venv", default=str(DEFAULT_VENV))
    pi.add_argument("--constraints", default=str(DEFAULT_CONSTRAINTS))
    args = p.parse_args(argv)
    try:
        if args.cmd == "install":
            install(args.venv, args.constraints)
    except KitError as e:
        print(f"kit.py {args.cmd}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
