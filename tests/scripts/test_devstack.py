"""``make run`` hygiene: what scripts/devstack.py creates is owner-only, and the workers listen on loopback only."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import shlex
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from payhook_shared.store import StatusCheck
from payhook_shared.store.models import utcnow

from support import free_port, serving, wait_until

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def devstack_module():
    """scripts/devstack.py, loaded (its ``main`` not run)."""
    spec = importlib.util.spec_from_file_location("devstack", ROOT / "scripts" / "devstack.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def devstack_env() -> dict[str, str]:
    """The environment scripts/devstack.py gives every process of `make run`."""
    return dict(devstack_module().DEFAULTS)


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


def test_make_run_s_daraja_sandbox_runs_from_the_procfile_on_loopback(tmp_path):
    """The Procfile's ``sandbox`` line, with make run's environment, serves the sandbox on 127.0.0.1 only."""
    from payhook_sandbox.settings import Settings

    env = devstack_env()
    assert env["PAYHOOK_SANDBOX_PORT"] == str(Settings().port) == "8645"
    line = next(l for l in (ROOT / "Procfile").read_text().splitlines() if l.startswith("sandbox:"))
    port = free_port()
    words = [w.replace("$PAYHOOK_SANDBOX_PORT", str(port)) for w in shlex.split(line.partition(":")[2])]
    assert words[0] == "python"
    with (tmp_path / "sandbox.log").open("wb") as log:
        process = subprocess.Popen([sys.executable, *words[1:]], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, **env, "PAYHOOK_SANDBOX_PORT": str(port)})
    try:
        def listening() -> bool:
            assert process.poll() is None, (tmp_path / "sandbox.log").read_text()
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", port)) == 0
        wait_until(listening, timeout=20, what="the sandbox listening")
        outward = outward_address()
        if outward is not None:
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((outward, port), timeout=5).close()
    finally:
        process.terminate()
        process.wait(10)


def test_the_printed_stk_push_curl_works_against_the_sandbox_with_the_seeded_credentials(
        tmp_path, redis_url, daraja_sandbox):
    """``make run``'s demo merchant has the sandbox's credentials, and the STK Push ``curl`` it prints pushes."""
    from payhook_webhook.app import create_app

    sandbox = daraja_sandbox(callback_delay=0.1)
    var = tmp_path / "var"
    var.mkdir()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, **devstack_env(), "DATABASE_URL": f"sqlite:///{var}/payhook.db", "REDIS_URL": redis_url,
           "DARAJA_SANDBOX_URL": sandbox.url, "PUBLIC_BASE_URL": base}
    flask = [str(BIN / "flask"), "--app", "payhook_webhook.app"]
    subprocess.run([*flask, "migrate"], env=env, cwd=tmp_path, check=True, capture_output=True)
    for _ in range(2):  # seeding again keeps the credentials
        subprocess.run([*flask, "seed-demo", "--daraja-sandbox", "--receiver-url", "http://127.0.0.1:8641/webhooks",
                        "--out", str(var / "demo.json")], env=env, cwd=tmp_path, check=True, capture_output=True)
    demo = json.loads((var / "demo.json").read_text())
    app = create_app({"database_url": env["DATABASE_URL"], "redis_url": redis_url, "daraja_sandbox_url": sandbox.url,
                      "public_base_url": base, "credentials_key_file": str(var / "credentials.key"),
                      "log_format": "text"})
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = serving(server)
    thread.start()
    try:
        curl = devstack_module().stk_push_curl(base, demo)
        answer = json.loads(subprocess.run(["bash", "-c", curl], check=True, capture_output=True, text=True).stdout)
        assert (answer["state"], answer["merchant_id"], answer["source"]) == ("pending", demo["merchant_id"], "api")
        assert sandbox.counters()["tokens_issued"] == 1
        # The sandbox calls the demo merchant's STK URL back, which settles the intent.
        wait_until(lambda: json.loads(subprocess.run(
            ["curl", "-sS", f"{base}/v1/mpesa/intents/{answer['id']}", "-H",
             f"Authorization: Bearer {demo['admin_api_key']}"], capture_output=True, text=True).stdout)["state"]
            == "completed", what="the intent settled by its callback")

        # A B2C whose result comes as a QueueTimeOut is followed with the seeded initiator credentials.
        urls = demo["callback_urls"]
        assert sandbox.call("/mpesa/b2c/v3/paymentrequest", {
            "OriginatorConversationID": "demo-b2c-1", "InitiatorName": "testapi", "SecurityCredential": "x",
            "CommandID": "BusinessPayment", "Amount": 100, "PartyA": 174379, "PartyB": 254708374149,
            "Remarks": "SBX0T", "QueueTimeOutURL": urls["b2c-timeout"], "ResultURL": urls["b2c-result"],
            "Occassion": ""}).ok
        checks = app.extensions["payhook.status_checks"]
        checks.clock = lambda: utcnow() + dt.timedelta(seconds=app.extensions["payhook.settings"].reconcile_after + 1)


        def resolved() -> bool:
            with app.extensions["payhook.store"].read() as session:
                return session.scalar(select(StatusCheck.state)) == "resolved"

        wait_until(lambda: checks.tick() is not None and resolved(), what="the QueueTimeOut resolved")
        assert sandbox.counters()["status_queries"] == {"demo-b2c-1": 1}
    finally:
        server.shutdown()
        thread.join(10)
        app.extensions["payhook.store"].dispose()
