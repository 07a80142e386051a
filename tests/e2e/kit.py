#!/usr/bin/env python3
"""End-to-end server kit for statsgate: the real Keystone 25.0.0 and monasca-api 11.0.0 on 127.0.0.1.

Stdlib only (it drives a separate venv). See README.md next to this file.

    kit.py install   [--venv DIR] [--constraints PATH]
    kit.py start     [--venv DIR] --workdir DIR [--token-expiration S] [--token-cache-time S]
                     [--tls-cert PEM --tls-key PEM --tls-ca PEM]
    kit.py serve-cert --workdir DIR --server keystone|monasca --cert PEM --key PEM
    kit.py stop      --workdir DIR
    kit.py published --workdir DIR [--envelopes]
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
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DEFAULT_VENV = HERE / ".venv"
DEFAULT_CONSTRAINTS = REPO.parent / "shared/reference/openstack-2024.1-monasca-constraints.txt"
# influxdb: monasca-api builds its InfluxDB metrics repository at start-up and imports it there
# (the constraints file was frozen from a venv that had it).
PINS = {"keystone": "25.0.0", "monasca-api": "11.0.0", "gunicorn": "21.2.0", "influxdb": "5.3.1"}
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
    if re.search(r"command '[^']*\b(gcc|cc)' failed: No such file|unable to execute '[^']*\b(gcc|cc)'|"
                 r"\b(gcc|cc): (command )?not found", output):
        hints.append("C compiler missing: apt-get install build-essential")
    if re.search(r"openssl/\w+\.h: No such file", output):
        hints.append("OpenSSL headers missing (scrypt): apt-get install libssl-dev")
    return hints


def install(venv, constraints):
    venv = Path(venv).resolve()
    constraints = Path(constraints).resolve()
    if not constraints.is_file():
        raise KitError(f"constraints file not found: {constraints} (pass --constraints PATH)")
    if sys.version_info[:2] != (3, 11):
        # The constraints were resolved for 3.11; monasca-api also imports distutils (gone in 3.12).
        raise KitError(f"needs Python 3.11 to create the venv, this is {sys.version.split()[0]}")
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



# ------------------------------------------------------------------------------------ helpers

# Never go through a proxy: everything the kit talks to is on 127.0.0.1.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def trust(ca_file):
    """Verify the servers' HTTPS against ca_file (the test CA) from now on, host names included."""
    global _OPENER
    context = ssl.create_default_context(cafile=str(ca_file))
    _OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                          urllib.request.HTTPSHandler(context=context))


def http(method, url, body=None, headers=None, timeout=30):
    """One HTTP request; returns (status, headers, body bytes) for any status."""
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with _OPENER.open(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def free_ports(n):
    # Bind them all at once so the n ports differ; a tiny race with other binders remains,
    # handled by retrying the whole start when gunicorn reports "Connection in use".
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def tail(path, lines=40):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError as e:
        return f"({path}: {e})"


def _proc_stat(pid):
    """(state, pgrp) of a live process, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()  # the comm field may contain spaces
        return rest[0], int(rest[2])
    except (OSError, IndexError, ValueError):
        return None


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _marker(workdir):
    # Every server command line holds "--pid <workdir>/<name>/gunicorn.pid"; the slash keeps
    # /tmp/wd1 from matching /tmp/wd10.
    return str(workdir) + "/"


def _our_processes(pgid, marker):
    """Non-zombie processes in process group pgid whose command line holds marker (_marker()).

    Each server is started as a session leader, so its gunicorn workers share its pgid; the
    marker check keeps a recycled pid or pgid from ever pointing us at someone else."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        st = _proc_stat(entry)
        if st and st[1] == pgid and st[0] != "Z" and marker in _cmdline(entry):
            found.append(int(entry))
    return found


def _terminate(pgids, marker, grace=5.0):
    """SIGTERM what is ours in each group, then SIGKILL what is left after grace seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 3.0)):
        alive = [p for g in pgids for p in _our_processes(g, marker)]
        for pid in alive:
            try:
                os.kill(pid, sig)
                os.kill(pid, signal.SIGCONT)  # a test may have SIGSTOPped it to fake an outage
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while alive and time.monotonic() < deadline:
            time.sleep(0.1)
            alive = [p for g in pgids for p in _our_processes(g, marker)]
        if not alive:
            return []
    return alive


# ----------------------------------------------------------------------------------- keystone

class Keystone:
    """Minimal Keystone v3 admin client (re-authenticates once on 401: tokens may be short)."""

    def __init__(self, url, login):
        self.url, self._login = url, login
        self.token = login()

    def call(self, method, path, body=None):
        for attempt in (1, 2):
            status, _, data = http(method, self.url + path, body, {"X-Auth-Token": self.token})
            if status == 401 and attempt == 1:
                self.token = self._login()
                continue
            if status >= 300:
                raise KitError(f"keystone {method} {path} -> {status}: {data[:300]!r}")
            return json.loads(data) if data else None

    def find_or_create(self, kind, name, body):
        found = self.call("GET", f"/v3/{kind}s?name={urllib.parse.quote(name)}")[kind + "s"]
        if found:
            return found[0]["id"]
        return self.call("POST", f"/v3/{kind}s", {kind: body})[kind]["id"]


def password_token(keystone_url, user, password, project=PROJECT, user_domain=DOMAIN,
                   project_domain=DOMAIN):
    """Project-scoped token by password; returns (token, body) or raises."""
    body = {"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"name": user_domain}, "password": password}}},
        "scope": {"project": {"name": project, "domain": {"name": project_domain}}}}}
    status, headers, data = http("POST", keystone_url + "/auth/tokens", body)
    if status != 201:
        raise KitError(f"token for {user} -> {status}: {data[:300]!r}")
    return headers["X-Subject-Token"], json.loads(data)


def app_credential_token(keystone_url, cred_id, secret):
    body = {"auth": {"identity": {"methods": ["application_credential"],
                                  "application_credential": {"id": cred_id, "secret": secret}}}}
    status, headers, data = http("POST", keystone_url + "/auth/tokens", body)
    if status != 201:
        raise KitError(f"application credential token -> {status}: {data[:300]!r}")
    return headers["X-Subject-Token"], json.loads(data)


# -------------------------------------------------------------------------------------- start

class PortInUse(KitError):
    pass


KIT_FILES = ("keystone", "monasca", "published.jsonl", "fault", "delay", "pids")


def _write(path, text, mode=0o600):
    # Config files hold passwords: readable by us only.
    path.write_text(text)
    os.chmod(path, mode)


def _pids_file(workdir):
    return workdir / "pids"


def _read_pids(workdir):
    try:
        return json.loads(_pids_file(workdir).read_text())
    except (OSError, ValueError):
        return {}


def _server_env(extra):
    env = dict(os.environ)
    for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        env.pop(k, None)  # keystonemiddleware must reach 127.0.0.1 directly
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def _manage(venv, kconf, log_path, *args, env=None):
    """keystone-manage in the background, output appended to log_path."""
    cmd = [str(Path(venv) / "bin/keystone-manage"), "--config-file", str(kconf), *args]
    with open(log_path, "ab") as out:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=_server_env(env or {}))


def _wait_all(procs, log_path, what):
    for p in procs:
        if p.wait() != 0:
            raise KitError(f"{what} failed (exit {p.returncode}); tail of {log_path}:\n{tail(log_path)}")


def _keystone_conf(workdir, token_expiration):
    k = workdir / "keystone"
    return f"""\
[DEFAULT]
use_stderr = true
debug = false

[database]
connection = sqlite:///{k}/keystone.db

[token]
provider = fernet
expiration = {token_expiration}

[fernet_tokens]
key_repository = {k}/fernet-keys

[fernet_receipts]
key_repository = {k}/fernet-keys

[credential]
key_repository = {k}/credential-keys

[identity]
# bcrypt's minimum cost: every password token request hashes once; the default 12 costs ~0.25 s.
password_hash_rounds = 4
"""


def _monasca_conf(workdir, keystone_root, monasca_password, influx_port, token_cache_time,
                  cafile=None):
    m = workdir / "monasca"
    # keystonemiddleware (keystoneauth's session) verifies an https:// Keystone against this.
    ca_line = f"cafile = {cafile}\n" if cafile else ""
    return f"""\
[DEFAULT]
region = {REGION}
use_stderr = true
debug = false

[messaging]
driver = {HERE}|e2e_servers:Publisher

[influxdb]
# Nothing listens here: GETs answer 500, POSTs never touch it.
ip_address = 127.0.0.1
port = {influx_port}
user = monasca-api
password = unused

[database]
# Unused, but the alarm repositories are built at start-up.
connection = sqlite:///{m}/monasca.db

[security]
default_authorized_roles = monasca-user
agent_authorized_roles = monasca-agent
read_only_authorized_roles = monasca-read-only-user
delegate_authorized_roles = admin,monitoring-delegate

[keystone_authtoken]
www_authenticate_uri = {keystone_root}
auth_type = password
auth_url = {keystone_root}/v3
interface = public
region_name = {REGION}
username = monasca
password = {monasca_password}
user_domain_name = {DOMAIN}
project_name = {PROJECT}
project_domain_name = {DOMAIN}
token_cache_time = {token_cache_time}
{ca_line}"""


# As the wheel's etc/monasca/api-config.ini, less its [server:main] (gunicorn gets flags instead).
PASTE_INI = """\
[DEFAULT]
name = monasca_api

[pipeline:main]
pipeline = request_id auth api

[app:api]
paste.app_factory = monasca_api.api.server:launch

[filter:auth]
paste.filter_factory = monasca_api.healthcheck.keystone_protocol:filter_factory

[filter:request_id]
paste.filter_factory = oslo_middleware.request_id:RequestId.factory
"""


def _tls_pem(workdir, name):
    """The one PEM (certificate, then key) a TLS server of the kit serves; see serve_cert()."""
    return workdir / name / "tls.pem"


def _gunicorn(venv, workdir, name, port, app, env, extra_flags, tls=False):
    d = workdir / name
    log_path = d / f"{name}.log"
    # Certificate and key in one file, given as both: gunicorn builds its SSL context from
    # them at every accepted connection, so serve_cert() swaps what is served with one rename.
    tls_flags = ["--certfile", str(_tls_pem(workdir, name)),
                 "--keyfile", str(_tls_pem(workdir, name))] if tls else []
    cmd = [str(Path(venv) / "bin/gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "1",
           *extra_flags, *tls_flags, "--timeout", "60", "--graceful-timeout", "3",
           # The pid file puts the workdir on the command line: stop() checks for it.
           "--pid", str(d / "gunicorn.pid"), "--access-logfile", "-",
           "--chdir", str(d), "--pythonpath", str(HERE), app]
    with open(log_path, "ab") as out:
        # New session: survives our exit, and its workers share one process group.
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=_server_env(env), start_new_session=True), log_path


def _wait_ready(proc, log_path, port, url, method, want, deadline, what):
    scheme = url.split(":", 1)[0]  # gunicorn logs https:// when it serves TLS
    listening = f"Listening at: {scheme}://127.0.0.1:{port} ({proc.pid})"
    while True:
        if proc.poll() is not None:
            log_text = tail(log_path)
            # gunicorn says "Connection in use" and gives up after 5 tries of 1 s.
            cls = PortInUse if "Connection in use" in log_text else KitError
            raise cls(f"{what} exited (code {proc.returncode}); tail of {log_path}:\n{log_text}")
        # Only trust an answer once OUR gunicorn has bound the port: if someone else won the
        # port race, they might answer too.
        if listening in tail(log_path, 400):
            try:
                status, _, _ = http(method, url, timeout=5)
                if status == want:
                    return
            except OSError:
                pass
        if time.monotonic() > deadline:
            raise KitError(f"{what} not ready at {url} after {READY_TIMEOUT:.0f} s; "
                           f"tail of {log_path}:\n{tail(log_path)}")
        time.sleep(0.2)


def _read_tls(tls):
    """(cert PEM, key PEM, CA PEM) as text from their paths, or None; checked before anything starts."""
    if tls is None:
        return None
    texts = []
    for what, path, marker in zip(("--tls-cert", "--tls-key", "--tls-ca"), tls,
                                  ("CERTIFICATE-----", "PRIVATE KEY-----", "CERTIFICATE-----")):
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise KitError(f"{what} {path}: {e}") from None
        if marker not in text:
            raise KitError(f"{what} {path}: no PEM {marker.rstrip('-')} in it")
        texts.append(text if text.endswith("\n") else text + "\n")
    return tuple(texts)


def start(venv, workdir, token_expiration=3600, token_cache_time=300, tls=None):
    """tls: None (plain HTTP) or (cert, key, ca) paths: both servers then serve cert/key over
    HTTPS, and monasca-api's keystonemiddleware and the kit itself trust ca."""
    venv = Path(venv).resolve()
    workdir = Path(workdir).resolve()
    if _installed_versions(venv) != PINS:
        raise KitError(f"{venv} lacks {PINS}: run `kit.py install --venv {venv}` first")
    tls = _read_tls(tls)
    workdir.mkdir(parents=True, exist_ok=True)
    for name, pid in _read_pids(workdir).items():
        if _our_processes(pid, _marker(workdir)):
            raise KitError(f"{name} (pid {pid}) from an earlier start still runs in {workdir}; "
                           f"run `kit.py stop --workdir {workdir}` first")
    for attempt in range(1, 4):
        try:
            return _start_once(venv, workdir, token_expiration, token_cache_time, tls)
        except PortInUse as e:
            log(f"port taken under us (attempt {attempt}), retrying: {str(e).splitlines()[0]}")
    raise KitError("could not bind free ports three times in a row")


def _start_once(venv, workdir, token_expiration, token_cache_time, tls):
    t0 = time.monotonic()
    for name in KIT_FILES:  # leftovers of an earlier, stopped run
        p = workdir / name
        if p.is_dir():
            subprocess.run(["rm", "-rf", "--", str(p)], check=True)
        elif p.exists():
            p.unlink()
    kdir, mdir = workdir / "keystone", workdir / "monasca"
    kdir.mkdir(mode=0o700)
    mdir.mkdir(mode=0o700)
    kport, mport, influx_port = free_ports(3)
    scheme = "https" if tls else "http"
    keystone_root = f"{scheme}://127.0.0.1:{kport}"
    keystone_url = keystone_root + "/v3"
    monasca_url = f"{scheme}://127.0.0.1:{mport}/v2.0"
    ca_copy = None
    if tls:
        cert, key, ca = tls
        ca_copy = mdir / "ca.pem"
        _write(ca_copy, ca, 0o644)
        for d in (kdir, mdir):
            _write(_tls_pem(workdir, d.name), cert + key)
        trust(ca_copy)
    pw = {n: secrets.token_urlsafe(18) for n in ("admin", "monasca", "statsgate", "operator", "nobody")}
    kconf, mconf, paste = kdir / "keystone.conf", mdir / "monasca-api.conf", mdir / "api-config.ini"
    _write(kconf, _keystone_conf(workdir, token_expiration))
    _write(mconf, _monasca_conf(workdir, keystone_root, pw["monasca"], influx_port, token_cache_time,
                                ca_copy))
    _write(paste, PASTE_INI)
    manage_log = kdir / "keystone-manage.log"

    procs = {}  # name -> Popen of the servers we started, for cleanup on failure
    helpers = []  # keystone-manage runs, likewise

    def record():
        _pids_file(workdir).write_text(json.dumps({n: p.pid for n, p in procs.items()}))

    try:
        import pwd, grp  # noqa: E401 (only needed here)
        owner = ["--keystone-user", pwd.getpwuid(os.getuid()).pw_name,
                 "--keystone-group", grp.getgrgid(os.getgid()).gr_name]
        # Everything here is seconds of Python imports on a small box: overlap what is independent.
        # monasca-api needs nothing from Keystone until its first request.
        procs["monasca"], mlog = _gunicorn(
            venv, workdir, "monasca", mport, "e2e_servers:monasca_app()",
            {"STATSGATE_E2E_MONASCA_CONF": str(mconf), "STATSGATE_E2E_MONASCA_PASTE": str(paste),
             "STATSGATE_E2E_WORKDIR": str(workdir)},
            ["--worker-class", "gthread", "--threads", "4"], tls=bool(tls))
        record()
        db_sync = _manage(venv, kconf, manage_log, "db_sync")
        keys = [_manage(venv, kconf, manage_log, "fernet_setup", *owner),
                _manage(venv, kconf, manage_log, "credential_setup", *owner)]
        helpers += [db_sync, *keys]
        # Keystone exits at start-up without its key repositories; it reads no table until asked.
        _wait_all(keys, manage_log, "keystone-manage fernet_setup/credential_setup")
        procs["keystone"], klog = _gunicorn(
            venv, workdir, "keystone", kport, "e2e_servers:keystone_app()",
            {"OS_KEYSTONE_CONFIG_FILES": str(kconf)}, ["--worker-class", "sync"], tls=bool(tls))
        record()
        _wait_all([db_sync], manage_log, "keystone-manage db_sync")
        # Without WAL, concurrent writers (role creation) fail with "database is locked" -> 500.
        import sqlite3
        with sqlite3.connect(kdir / "keystone.db") as db:
            db.execute("PRAGMA journal_mode=WAL")
        bootstrap = _manage(venv, kconf, manage_log, "bootstrap",
                            "--bootstrap-username", "admin", "--bootstrap-project-name", "admin",
                            "--bootstrap-role-name", "admin", "--bootstrap-region-id", REGION,
                            "--bootstrap-admin-url", keystone_url,
                            "--bootstrap-public-url", keystone_url,
                            "--bootstrap-internal-url", keystone_url,
                            env={"OS_BOOTSTRAP_PASSWORD": pw["admin"]})  # not on the command line
        helpers.append(bootstrap)
        _wait_all([bootstrap], manage_log, "keystone-manage bootstrap")
        deadline = time.monotonic() + READY_TIMEOUT
        _wait_ready(procs["keystone"], klog, kport, keystone_url, "GET", 200, deadline, "keystone")
        log(f"keystone ready at {keystone_url} ({time.monotonic() - t0:.1f} s)")

        info = _provision(keystone_url, monasca_url, pw)
        _wait_ready(procs["monasca"], mlog, mport, monasca_url.replace("/v2.0", "/healthcheck"), "HEAD", 204,
                    deadline, "monasca-api")
        # Warm up (and check) the whole chain: keystonemiddleware's first validation fetches a
        # service token and discovers Keystone, which costs a second we'd rather not bill a test.
        token, _ = password_token(keystone_url, "operator", pw["operator"])
        status, _, data = http("POST", monasca_url + "/metrics", b"[]",
                               {"X-Auth-Token": token, "Content-Type": "application/json"})
        if status != 204:
            raise KitError(f"warm-up POST [] -> {status}: {data[:300]!r}; tail of {mlog}:\n{tail(mlog)}")
        log(f"monasca-api ready at {monasca_url} ({time.monotonic() - t0:.1f} s)")
    except BaseException:
        for p in helpers:
            if p.poll() is None:
                p.kill()
                p.wait()
        left = _terminate([p.pid for p in procs.values()], _marker(workdir), grace=3.0)
        for p in procs.values():
            try:
                p.wait(timeout=1)  # reap our own children
            except subprocess.TimeoutExpired:
                pass
        if left:
            log(f"WARNING: could not kill {left}")
        else:
            _pids_file(workdir).unlink(missing_ok=True)
        raise

    info.update({
        "keystone_url": keystone_url,
        "monasca_url": monasca_url,
        "region": REGION,
        "published_file": str(workdir / "published.jsonl"),
        "fault_file": str(workdir / "fault"),
        "delay_file": str(workdir / "delay"),
        "workdir": str(workdir),
        "pids": {n: p.pid for n, p in procs.items()},
        "logs": {"keystone": str(klog), "monasca": str(mlog)},
        "token_expiration": token_expiration,
        "token_cache_time": token_cache_time,
        "tls": {"ca_file": str(ca_copy),
                "served": {n: str(_tls_pem(workdir, n)) for n in ("keystone", "monasca")}}
        if tls else None,
    })
    return info


def _provision(keystone_url, monasca_url, pw):
    ks = Keystone(keystone_url.removesuffix("/v3"),
                  lambda: password_token(keystone_url, "admin", pw["admin"], project="admin")[0])
    roles = {r: ks.find_or_create("role", r, {"name": r})
             for r in ("monasca-agent", "monasca-user", "monitoring-delegate", "service", "member")}
    project_id = ks.find_or_create("project", PROJECT, {"name": PROJECT, "domain_id": "default",
                                                        "description": "statsgate e2e"})
    # user -> roles on the service project. `nobody` needs some role to get a project-scoped
    # token at all; `member` carries no monasca permission.
    grants = {"statsgate": ["monasca-agent"], "operator": ["monasca-user"], "nobody": ["member"],
              "monasca": ["service"]}
    users = {}
    for name, user_roles in grants.items():
        uid = ks.call("POST", "/v3/users", {"user": {
            "name": name, "password": pw[name], "domain_id": "default",
            "default_project_id": project_id, "enabled": True}})["user"]["id"]
        for r in user_roles:
            ks.call("PUT", f"/v3/projects/{project_id}/users/{uid}/roles/{roles[r]}")
        users[name] = {"name": name, "id": uid, "password": pw[name]}
    svc = ks.call("POST", "/v3/services", {"service": {
        "type": "monitoring", "name": "monasca", "enabled": True}})["service"]["id"]
    ks.call("POST", "/v3/endpoints", {"endpoint": {
        "service_id": svc, "interface": "public", "url": monasca_url, "region_id": REGION}})
    admin_id = ks.call("GET", "/v3/users?name=admin")["users"][0]["id"]

    # An application credential can only be made by its user, with a token of theirs.
    token, _ = password_token(keystone_url, "statsgate", pw["statsgate"])
    status, _, data = http("POST", f"{keystone_url}/users/{users['statsgate']['id']}/application_credentials",
                           {"application_credential": {"name": "statsgate-e2e",
                                                       "description": "statsgate e2e tests"}},
                           {"X-Auth-Token": token})
    if status != 201:
        raise KitError(f"application credential -> {status}: {data[:300]!r}")
    cred = json.loads(data)["application_credential"]
    del users["monasca"]  # keystonemiddleware's; tests have no use for it
    return {
        "project_name": PROJECT, "project_id": project_id,
        "project_domain_name": DOMAIN, "user_domain_name": DOMAIN,
        "users": users,
        "admin": {"name": "admin", "id": admin_id, "password": pw["admin"], "project_name": "admin"},
        "app_credential_id": cred["id"], "app_credential_secret": cred["secret"],
    }


# --------------------------------------------------------------------------- stop / published

def stop(workdir):
    workdir = Path(workdir).resolve()
    pids = _read_pids(workdir)
    if not pids:
        log(f"nothing to stop in {workdir}")
        return
    left = _terminate(list(pids.values()), _marker(workdir))
    if left:
        raise KitError(f"still alive after SIGKILL: {left}")
    _pids_file(workdir).unlink(missing_ok=True)
    log(f"stopped {pids}")


def serve_cert(workdir, server, cert, key):
    """Make a running TLS server of the kit serve another certificate from its next connection on.

    gunicorn loads --certfile/--keyfile at every accepted connection; one rename swaps both."""
    workdir = Path(workdir).resolve()
    target = _tls_pem(workdir, server)
    if not target.exists():
        raise KitError(f"{target} does not exist: was `start` given --tls-cert/--tls-key?")
    cert_text, key_text, _ = _read_tls((cert, key, cert))
    tmp = target.with_name("tls.pem.new")
    _write(tmp, cert_text + key_text)
    os.replace(tmp, target)
    log(f"{server} now serves {cert}")


def published(workdir, envelopes=False):
    path = Path(workdir).resolve() / "published.jsonl"
    out = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        lines = []
    for i, line in enumerate(lines):
        try:
            msg = json.loads(line)
        except ValueError:
            if i == len(lines) - 1:
                break  # being written right now
            raise
        out.append(msg if envelopes else msg["metric"])
    return out


# -------------------------------------------------------------------------------------- smoke

def smoke(venv, workdir, constraints):
    """install + start, then exercise the contract the Rust tests rely on; always stop."""
    import tempfile
    kit = [sys.executable, str(Path(__file__).resolve())]
    own_workdir = workdir is None
    workdir = Path(workdir or tempfile.mkdtemp(prefix="statsgate-e2e-")).resolve()

    t = time.monotonic()
    subprocess.run(kit + ["install", "--venv", venv, "--constraints", constraints], check=True)
    t_install = time.monotonic() - t

    t = time.monotonic()
    # capture_output also proves the servers do not hold on to our stdout/stderr pipes.
    r = subprocess.run(kit + ["start", "--venv", venv, "--workdir", str(workdir)],
                       capture_output=True, text=True, timeout=300)
    t_start = time.monotonic() - t
    sys.stderr.write(r.stderr)
    if r.returncode != 0:
        raise KitError(f"start failed ({r.returncode})")
    lines = r.stdout.splitlines()
    if len(lines) != 1:
        raise KitError(f"start printed {len(lines)} lines on stdout, want exactly 1")
    env = json.loads(lines[0])
    checks = 0

    def check(cond, what):
        nonlocal checks
        if not cond:
            raise KitError(f"smoke check failed: {what}")
        checks += 1
        log(f"ok: {what}")

    def post(token, body, content_type="application/json"):
        headers = {"Content-Type": content_type}
        if token:
            headers["X-Auth-Token"] = token
        return http("POST", env["monasca_url"] + "/metrics", json.dumps(body).encode(), headers)

    def metric(name):
        return {"name": name, "dimensions": {"hostname": "e2e", "service": "statsgate"},
                "timestamp": int(time.time() * 1000), "value": 1.5, "value_meta": {"k": "v"}}

    try:
        for k in ("keystone_url", "monasca_url", "region", "project_name", "project_id",
                  "project_domain_name", "user_domain_name", "users", "app_credential_id",
                  "app_credential_secret", "published_file", "fault_file", "workdir", "pids"):
            check(k in env, f"start JSON has {k}")
        u = env["users"]
        check(sorted(u) == ["nobody", "operator", "statsgate"], "users statsgate/operator/nobody")
        pids_file = json.loads((workdir / "pids").read_text())
        check(pids_file == env["pids"], "pids file matches the JSON")

        # Password token, project-scoped, as statsgate does it.
        tok, body = password_token(env["keystone_url"], "statsgate", u["statsgate"]["password"],
                                   env["project_name"], env["user_domain_name"],
                                   env["project_domain_name"])
        check([r["name"] for r in body["token"]["roles"]] == ["monasca-agent"],
              "statsgate holds only monasca-agent")
        eps = [e for s in body["token"]["catalog"] if s["type"] == "monitoring" for e in s["endpoints"]]
        check([(e["interface"], e["url"], e["region_id"]) for e in eps]
              == [("public", env["monasca_url"], env["region"])], "catalog: monitoring public endpoint")

        m1 = metric("statsgate.e2e.smoke")
        status, _, data = post(tok, [m1])
        check(status == 204, f"POST metric -> 204 (got {status} {data[:200]!r})")
        pub = published(workdir, envelopes=True)
        check(len(pub) == 1 and pub[0]["metric"] == m1, "published.jsonl holds the metric as posted")
        check(pub[0]["meta"] == {"tenantId": env["project_id"], "region": env["region"]},
              "published with tenantId = project id, region")

        status, _, data = post(tok, [m1], "application/json; charset=utf-8")
        check(status == 400, f"charset suffix -> 400 (got {status})")
        status, _, data = post(None, [m1])
        check(status == 401 and "error" in json.loads(data), f"no token -> 401 keystonemiddleware body")

        tok_nobody, _ = password_token(env["keystone_url"], "nobody", u["nobody"]["password"])
        status, _, data = post(tok_nobody, [m1])
        check(status == 401 and json.loads(data).get("title") == "Forbidden",
              f"nobody -> 401 Forbidden (got {status} {data[:200]!r})")

        Path(env["fault_file"]).touch()
        status, _, data = post(tok, [metric("statsgate.e2e.fault")])
        check(status == 500, f"fault file -> 500 (got {status})")
        Path(env["fault_file"]).unlink()
        m2 = metric("statsgate.e2e.after_fault")
        status, _, _ = post(tok, [m2])
        check(status == 204, f"fault removed -> 204 (got {status})")

        tok_ac, body = app_credential_token(env["keystone_url"], env["app_credential_id"],
                                            env["app_credential_secret"])
        check(body["token"]["project"]["id"] == env["project_id"], "app credential token is project-scoped")
        m3 = metric("statsgate.e2e.app_credential")
        status, _, _ = post(tok_ac, m3)  # a single object, not an array, is accepted too
        check(status == 204, f"app credential POST -> 204 (got {status})")

        tok_op, _ = password_token(env["keystone_url"], "operator", u["operator"]["password"])
        status, _, _ = post(tok_op, [metric("statsgate.e2e.operator")])
        check(status == 204, "operator (monasca-user) POST -> 204")

        r = subprocess.run(kit + ["published", "--workdir", str(workdir)], capture_output=True,
                           text=True, check=True)
        names = [m["name"] for m in json.loads(r.stdout)]
        check(names == ["statsgate.e2e.smoke", "statsgate.e2e.after_fault",
                        "statsgate.e2e.app_credential", "statsgate.e2e.operator"],
              f"`published` lists exactly the accepted metrics ({names})")
    finally:
        subprocess.run(kit + ["stop", "--workdir", str(workdir)], check=False)
    alive = [p for p in env["pids"].values() if _our_processes(p, _marker(workdir))]
    check(not alive, "stop left no server behind")
    if own_workdir:
        subprocess.run(["rm", "-rf", "--", str(workdir)], check=False)
    log(f"SMOKE OK: {checks} checks; install {t_install:.1f} s, start {t_start:.1f} s")


# ---------------------------------------------------------------------------------------- cli

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    venv_help = f"server virtualenv (default {DEFAULT_VENV})"
    pi = sub.add_parser("install", help="create the venv and install the pinned servers (idempotent)")
    pi.add_argument("--venv", default=str(DEFAULT_VENV), help=venv_help)
    pi.add_argument("--constraints", default=str(DEFAULT_CONSTRAINTS))
    ps = sub.add_parser("start", help="start and provision Keystone + monasca-api; print one JSON line")
    ps.add_argument("--venv", default=str(DEFAULT_VENV), help=venv_help)
    ps.add_argument("--workdir", required=True)
    ps.add_argument("--token-expiration", type=int, default=3600, metavar="SECONDS",
                    help="Keystone [token] expiration (default 3600)")
    ps.add_argument("--token-cache-time", type=int, default=300, metavar="SECONDS",
                    help="keystonemiddleware token_cache_time on monasca-api (default 300)")
    ps.add_argument("--tls-cert", metavar="PEM", help="serve both over HTTPS with this certificate "
                    "(needs --tls-key and --tls-ca)")
    ps.add_argument("--tls-key", metavar="PEM", help="the certificate's private key")
    ps.add_argument("--tls-ca", metavar="PEM", help="the CA that signed it: keystonemiddleware and "
                    "the kit verify Keystone against it")
    pt = sub.add_parser("stop", help="stop the servers recorded in WORKDIR/pids")
    pt.add_argument("--workdir", required=True)
    pc = sub.add_parser("serve-cert", help="make a TLS server of the kit serve another certificate")
    pc.add_argument("--workdir", required=True)
    pc.add_argument("--server", required=True, choices=["keystone", "monasca"])
    pc.add_argument("--cert", required=True, help="PEM certificate (chain)")
    pc.add_argument("--key", required=True, help="PEM private key")
    pp = sub.add_parser("published", help="print the published metrics as a JSON array")
    pp.add_argument("--workdir", required=True)
    pp.add_argument("--envelopes", action="store_true",
                    help="whole messages ({metric, meta, creation_time}), not just the metrics")
    pk = sub.add_parser("smoke", help="install, start, check the contract, stop")
    pk.add_argument("--venv", default=str(DEFAULT_VENV), help=venv_help)
    pk.add_argument("--workdir", help="default: a fresh temporary directory, removed on success")
    pk.add_argument("--constraints", default=str(DEFAULT_CONSTRAINTS))
    args = p.parse_args(argv)
    tls = None
    if args.cmd == "start":
        given = [args.tls_cert, args.tls_key, args.tls_ca]
        if any(given) and not all(given):
            p.error("--tls-cert, --tls-key and --tls-ca go together")
        tls = tuple(given) if all(given) else None

    # A SIGTERM while starting must still run start's cleanup (it catches BaseException).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        if args.cmd == "install":
            install(args.venv, args.constraints)
        elif args.cmd == "start":
            info = start(args.venv, args.workdir, args.token_expiration, args.token_cache_time, tls)
            print(json.dumps(info), flush=True)  # the only line on stdout
        elif args.cmd == "stop":
            stop(args.workdir)
        elif args.cmd == "serve-cert":
            serve_cert(args.workdir, args.server, args.cert, args.key)
        elif args.cmd == "published":
            print(json.dumps(published(args.workdir, args.envelopes)))
        elif args.cmd == "smoke":
            smoke(args.venv, args.workdir, args.constraints)
    except KitError as e:
        print(f"kit.py {args.cmd}: error: {e}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as e:
        print(f"kit.py {args.cmd}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
