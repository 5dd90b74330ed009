"""Every console script answers ``--help`` and ``--version`` and exits 0 without connecting to anything.

The real installed scripts run in subprocesses, with every URL (database, Redis, SMTP) pointing at one
listening socket of the test's own: any connection attempt, or a process that keeps running (consuming
queues, serving HTTP), fails the test.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import pytest

from support import free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def console_scripts() -> dict[str, str]:
    """Every ``[project.scripts]`` entry of every service (with its package's version), so a new one is
    covered without editing this."""
    scripts = {}
    for pyproject in sorted(ROOT.glob("services/*/pyproject.toml")):
        project = tomllib.loads(pyproject.read_text())["project"]
        scripts.update(dict.fromkeys(project.get("scripts", {}), project["version"]))
    return scripts


class Tripwire:
    """A listening socket that counts the connections made to it."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()


@pytest.fixture(scope="module")
def tripwire():
    wire = Tripwire()
    yield wire
    wire.sock.close()


def run(args: list[str], tripwire: Tripwire) -> subprocess.CompletedProcess:
    health_port = free_port()
    env = {**os.environ, "DATABASE_URL": f"postgresql://payhook:x@127.0.0.1:{tripwire.port}/payhook",
           "REDIS_URL": f"redis://127.0.0.1:{tripwire.port}/0", "SMTP_URL": f"smtp://127.0.0.1:{tripwire.port}",
           "HEALTH_PORT": str(health_port), "BIND": f"127.0.0.1:{free_port()}"}
    result = subprocess.run([str(BIN / args[0]), *args[1:]], env=env, capture_output=True, text=True, timeout=30)
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", health_port)) != 0, f"{args} left a health server behind"
    return result


def test_the_services_declare_the_documented_entry_points():
    assert {"payhook-webhook-service", "payhook-delivery-worker", "payhook-mail-worker",
            "payhook-deliveries"} <= set(console_scripts())


@pytest.mark.parametrize("script", console_scripts())
def test_help_answers_without_connecting(script, tripwire):
    before = tripwire.connections
    result = run([script, "--help"], tripwire)
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout.lower() and script in result.stdout, result.stdout
    assert tripwire.connections == before, f"{script} --help connected to a backend"


@pytest.mark.parametrize("script", console_scripts())
def test_version_answers_without_connecting(script, tripwire):
    before = tripwire.connections
    result = run([script, "--version"], tripwire)
    assert result.returncode == 0, result.stderr
    assert script in result.stdout and console_scripts()[script] in result.stdout, result.stdout
    assert tripwire.connections == before, f"{script} --version connected to a backend"


def test_subcommand_help_of_the_dead_letters_cli_answers_without_connecting(tripwire):
    before = tripwire.connections
    result = run(["payhook-deliveries", "dead", "list", "--help"], tripwire)
    assert result.returncode == 0, result.stderr
    assert "--merchant" in result.stdout
    assert tripwire.connections == before
