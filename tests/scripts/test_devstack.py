"""``make run`` hygiene: what scripts/devstack.py creates is owner-only, and the workers listen on loopback only."""

from __future__ import annotations

import importlib.util
import os
import shlex
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from support import free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def devstack_env() -> dict[str, str]:
    """The environment scripts/devstack.py gives every process of `make run`."""
    spec = importlib.util.spec_from_file_location("devstack", ROOT / "scripts" / "devstack.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return dict(module.DEFAULTS)


def procfile_env(process: str) -> dict[str, str]:
    """The ``env NAME=value`` settings the Procfile adds for ``process``."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == process:
            words = shlex.split(command)
            assigned = words[1:] if words[0] == "env" else []
            return dict(w.split("=", 1) for w in assigned if "=" in w and not w.startswith("-"))
    raise AssertionError(f"no {process} in the Procfile")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.slow
def test_the_demo_file_and_the_sqlite_database_are_owner_only(tmp_path):
    var = tmp_path / "var"
    var.mkdir()
    env = {**os.environ, **devstack_env(), "DATABASE_URL": f"sqlite:///{var}/payhook.db"}
    flask = [str(BIN / "flask"), "--app", "payhook_webhook.app"]
    seed = [*flask, "seed-demo", "--receiver-url", "http://127.0.0.1:8641/webhooks", "--out", str(var / "demo.json")]
    umask = os.umask(0o022)  # a usual umask: files would be world-readable unless created owner-only
    try:
        # As `make run` prepares them, and again over files an older run left world-readable.
        for _ in range(2):
            subprocess.run([*flask, "migrate"], env=env, cwd=tmp_path, check=True, capture_output=True)
            subprocess.run(seed, env=env, cwd=tmp_path, check=True, capture_output=True)
            files = sorted(var.iterdir())
            assert {p.name for p in files} >= {"payhook.db", "demo.json"}
            assert {p.name: oct(mode(p)) for p in files} == {p.name: oct(0o600) for p in files}
            for path in files:
                path.chmod(0o644)
    finally:
        os.umask(umask)


def outward_address() -> str | None:
    """This machine's address towards other hosts (no packet is sent), or None when it has only loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = sock.getsockname()[0]
    return None if address.startswith("127.") else address


def assert_loopback_only(runtime) -> None:
    runtime.serve_health()
    try:
        host, port = runtime.health._server.server_address[:2]
        assert host == "127.0.0.1"
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        outward = outward_address()
        if outward is not None:
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((outward, port), timeout=5).close()
    finally:
        runtime.health.stop()


@pytest.mark.parametrize("process", ["delivery-urgent", "delivery", "delivery-low"])
def test_devstack_delivery_workers_serve_health_on_loopback_only(delivery_worker, process):
    from payhook_delivery.settings import Settings

    settings = Settings.from_env({**devstack_env(), **procfile_env(process)})
    assert settings.health_port and settings.health_host == "127.0.0.1"
    assert_loopback_only(delivery_worker(health_port=free_port(), health_host=settings.health_host))


def test_devstack_mail_worker_serves_health_on_loopback_only(mail_worker):
    from payhook_mail.settings import Settings

    settings = Settings.from_env({**devstack_env(), **procfile_env("mail")})
    assert settings.health_port and settings.health_host == "127.0.0.1"
    assert_loopback_only(mail_worker(health_port=free_port(), health_host=settings.health_host))


@pytest.mark.parametrize("service", ["delivery-worker", "mail-worker"])
def test_the_worker_images_serve_health_on_every_interface_for_the_probes(service):
    from payhook_delivery.settings import Settings as DeliverySettings
    from payhook_mail.settings import Settings as MailSettings

    dockerfile = (ROOT / "deploy" / "docker" / f"{service}.Dockerfile").read_text()
    assert "HEALTH_HOST=0.0.0.0" in dockerfile.split("\nFROM ")[-1]  # in the image that runs
    # Outside the images (`make run`, a worker started by hand) the default is loopback.
    assert DeliverySettings.from_env({}).health_host == MailSettings.from_env({}).health_host == "127.0.0.1"
