"""Code that runs INSIDE the server venv (imported by gunicorn and by monasca-api), not by kit.py.

    gunicorn ... 'e2e_servers:keystone_app()'   env OS_KEYSTONE_CONFIG_FILES=<keystone.conf>
    gunicorn ... 'e2e_servers:monasca_app()'    env STATSGATE_E2E_MONASCA_CONF, STATSGATE_E2E_MONASCA_PASTE
    [messaging] driver = <this dir>|e2e_servers:Publisher   env STATSGATE_E2E_WORKDIR
"""

import json
import os
import sys
import threading
import time


def keystone_app():
    # Keystone parses sys.argv with oslo.config and dies on gunicorn's flags.
    del sys.argv[1:]
    from keystone.server import wsgi
    return wsgi.initialize_public_application()


def monasca_app():
    conf = os.environ["STATSGATE_E2E_MONASCA_CONF"]
    paste_ini = os.environ["STATSGATE_E2E_MONASCA_PASTE"]
    # monasca_api.config.parse_args() throws its argv away when sys.argv mentions gunicorn
    # (and then only looks in ~/.monasca, /etc/monasca ...), so hide gunicorn from it.
    sys.argv = ["monasca-api"]
    from monasca_api import config
    config.parse_args(["--config-file", conf])
    from paste import deploy
    return deploy.loadapp("config:" + paste_ini)


_lock = threading.Lock()  # gthread: up to 4 requests publish at once


class Publisher:
    """Stands in for monasca-api's Kafka publisher (loaded through `[messaging] driver`).

    Appends every message (a JSON string `{"metric", "meta": {"tenantId", "region"},
    "creation_time"}`) of topic `metrics` to <workdir>/published.jsonl, one per line; other
    topics go to published-<topic>.jsonl. While <workdir>/fault exists it raises what the
    Kafka publisher raises (monasca-api then answers 500); while <workdir>/delay holds a
    number, it first sleeps that many seconds.
    """

    def __init__(self, topic):
        self._workdir = os.environ["STATSGATE_E2E_WORKDIR"]
        name = "published.jsonl" if topic == "metrics" else f"published-{topic}.jsonl"
        self._path = os.path.join(self._workdir, name)

    def send_message(self, messages):
        delay = _read_number(os.path.join(self._workdir, "delay"))
        if delay:
            time.sleep(delay)
        if os.path.exists(os.path.join(self._workdir, "fault")):
            from monasca_api.common.messaging import exceptions
            raise exceptions.MessageQueueException("statsgate e2e kit: fault injected")
        if not isinstance(messages, list):
            messages = [messages]
        lines = []
        for m in messages:
            if isinstance(m, bytes):
                m = m.decode("utf-8")
            if not isinstance(m, str):
                m = json.dumps(m)
            lines.append(m.replace("\n", " ") + "\n")  # JSON never has raw newlines; be safe
        with _lock, open(self._path, "a", encoding="utf-8") as f:
            f.write("".join(lines))


def _read_number(path):
    try:
        with open(path, encoding="utf-8") as f:
            return float(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0
