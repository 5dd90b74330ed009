"""Payhook's services as real processes for the end-to-end tests: started from their console scripts with their
settings in the environment, stopped with their whole process group, and a JSON client for the API."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from cryptography.fernet import Fernet

BIN = Path(sys.executable).parent


def call(method: str, url: str, headers: dict[str, str], body: dict) -> tuple[int, dict]:
    """Send ``body`` as JSON; the status and the JSON answer (an error's too)."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method=method,
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def answers(url: str) -> bool:
    """Whether ``url`` answers 200 (a readiness probe)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def start(command: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start the console script ``command`` with ``env`` added to this environment, its output in ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen([str(BIN / command)], env={**os.environ, **env}, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    """Stop the process and its children (gunicorn's workers): SIGTERM, then SIGKILL after 20 s."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def service_envs(database_url: str, redis_url: str, tmp_path: Path, port: int, sandbox_url: str,
                 **web: str) -> tuple[dict[str, str], dict[str, str]]:
    """The environment every service process of an e2e run shares, and the web's on ``port`` (``web`` added)."""
    (tmp_path / "multiproc").mkdir()
    common = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "ENDPOINT_ALLOWLIST": "127.0.0.0/8",
              "LOG_FORMAT": "text", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "multiproc")}
    return common, {**common, "BIND": f"127.0.0.1:{port}", "WEB_WORKERS": "2",
                    "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}", "CREDENTIALS_KEYS": Fernet.generate_key().decode(),
                    "CREDENTIALS_KEY_FILE": "", "DARAJA_SANDBOX_URL": sandbox_url, "DARAJA_RATE_LIMIT": "1000", **web}
