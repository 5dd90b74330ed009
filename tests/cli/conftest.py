"""The real stack for the CLI's tests: the webhook-service under gunicorn, and ``payhook`` in subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from support import free_port, wait_until

BIN = Path(sys.executable).parent


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture
def web_server(database_url, redis_url, tmp_path):
    """Start webhook-services as production runs them (gunicorn, gevent): ``start(**env) -> base URL``.

    Each call is one more server (replica) on the same store and Redis; ``start.processes`` are their gunicorns.
    """
    started = []

    def start(workers: int = 1, **env: str) -> str:
        port = free_port()
        environ = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url, "BIND": f"127.0.0.1:{port}",
                   "WEB_WORKERS": str(workers), "LOG_FORMAT": "text", "STREAM_HEARTBEAT_SECONDS": "1",
                   "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / f"multiproc-{port}"), **env}
        with (tmp_path / f"web-{port}.log").open("wb") as log:
            proc = subprocess.Popen([str(BIN / "payhook-webhook-service")], env=environ, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        started.append(proc)
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: _ready(f"{base}/health/ready"), timeout=30, what="the webhook-service ready")
        return base

    start.processes = started
    yield start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in started:
        proc.wait(30)


class Listening:
    """A running ``payhook listen --json``: its printed secret and its forwarded lines."""

    def __init__(self, proc: subprocess.Popen, output: Path):
        self.proc = proc
        self.output = output

    def lines(self) -> list[dict]:
        return [json.loads(line) for line in self.output.read_text().splitlines() if line.startswith("{")]

    @property
    def secret(self) -> str:
        return wait_until(lambda: next((d["secret"] for d in self.lines() if "secret" in d), None),
                          what="the listener's secret")

    def forwarded(self) -> list[dict]:
        return [d for d in self.lines() if "status" in d]

    def stop(self, sig: int = signal.SIGINT) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(10)


@pytest.fixture
def listen(tmp_path):
    """Start ``payhook listen --json`` in a subprocess: ``listen(api_url, api_key, forward_to, *args)``."""
    running = []

    def start(api_url: str, api_key: str, forward_to: str, *args: str) -> Listening:
        output = tmp_path / f"listen-{len(running)}.out"
        env = {**os.environ, "PAYHOOK_API_URL": api_url, "PAYHOOK_API_KEY": api_key,
               "XDG_STATE_HOME": str(tmp_path / "state")}
        with output.open("wb") as out, (tmp_path / f"listen-{len(running)}.err").open("wb") as err:
            proc = subprocess.Popen([str(BIN / "payhook"), "listen", "--forward-to", forward_to, "--json", *args],
                                    env=env, stdout=out, stderr=err)
        listening = Listening(proc, output)
        running.append(listening)
        return listening

    yield start
    for listening in running:
        if listening.proc.poll() is None:
            listening.proc.kill()
            listening.proc.wait(10)
