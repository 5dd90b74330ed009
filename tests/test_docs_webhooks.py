"""docs/webhooks.md's verification snippets, run against a webhook the real delivery-worker delivered.

The Python and Node snippets are taken from the page itself, so the page cannot drift from what
works: one M-Pesa callback travels through the real webhook-service and delivery-worker to a real
receiver, and the body and headers it got are replayed, byte for byte, to each snippet's server.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from factories import fixture_bytes, merchant_with_endpoints, stk_url
from support import free_port, serving

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "webhooks.md"
NODE_CACHE = ROOT / "var" / "docs-node"  # var/ is local state (gitignored; `make clean` removes it)
SNIPPET = re.compile(r"<!-- snippet: (?P<name>[\w-]+)[^>]*-->\s*```\w+\n(?P<code>.*?)```", re.S)


def snippet(name: str) -> str:
    """The code block marked ``<!-- snippet: name -->`` in docs/webhooks.md."""
    found = {m["name"]: m["code"] for m in SNIPPET.finditer(PAGE.read_text(encoding="utf-8"))}
    assert name in found, f"docs/webhooks.md has no snippet {name!r} (found {sorted(found)})"
    return found[name]


def test_the_page_marks_its_three_snippets():
    for name in ("verify-python", "verify-node", "verify-php"):
        assert "verify(" in snippet(name)


@pytest.fixture
def delivered(client, store, receiver, delivery_worker):
    """(the endpoint's secret, the webhook as the receiver got it) for one STK callback."""
    merchant, [endpoint] = merchant_with_endpoints(store, receiver.url)
    delivery_worker()
    response = client.post(stk_url(merchant), data=fixture_bytes("mpesa/stk_success.json"),
                           content_type="application/json")
    assert response.status_code == 200
    [webhook] = receiver.wait_for(1)
    return endpoint.secret, webhook


def post(port: int, path: str, body: bytes, headers: dict[str, str]) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path, body=body, headers=headers)
        return conn.getresponse().status
    finally:
        conn.close()


def replayed(webhook) -> dict[str, str]:
    """The headers a merchant's server gets (the transport's own are set again by the client)."""
    return {k: v for k, v in webhook.headers.items() if k not in {"host", "content-length", "connection",
                                                                  "accept-encoding"}}


def test_python_snippet_verifies_a_delivered_webhook(delivered, tmp_path, monkeypatch, caplog):
    secret, webhook = delivered
    module = tmp_path / "payhook_snippet.py"
    module.write_text(snippet("verify-python"), encoding="utf-8")
    monkeypatch.setenv("PAYHOOK_WEBHOOK_SECRET", secret)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("payhook_snippet", None)
    import payhook_snippet

    server = make_server("127.0.0.1", 0, payhook_snippet.app, threaded=True)
    thread = serving(server)
    thread.start()
    try:
        with caplog.at_level(logging.WARNING, logger="payhook_snippet"):
            assert post(server.port, "/webhooks/payhook", webhook.body, replayed(webhook)) == 204
        event_id = webhook.headers["webhook-id"]
        assert f"payhook event {event_id} mpesa.stk_push succeeded" in caplog.text
        tampered = webhook.body.replace(b'"1.00"', b'"9.00"')
        assert tampered != webhook.body
        assert post(server.port, "/webhooks/payhook", tampered, replayed(webhook)) == 400
    finally:
        server.shutdown()
        sys.modules.pop("payhook_snippet", None)


@pytest.fixture(scope="session")
def node_modules():
    """``standardwebhooks`` from npm, installed once into var/docs-node (reused by later runs)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("the Node snippet needs node and npm on PATH")
    modules = NODE_CACHE / "node_modules"
    if not (modules / "standardwebhooks" / "package.json").exists():
        NODE_CACHE.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--silent", "--prefix", str(NODE_CACHE),
                               "standardwebhooks@1"], capture_output=True, text=True, timeout=180)
        if done.returncode != 0:
            pytest.skip(f"npm could not install standardwebhooks (registry unreachable?): {done.stderr[-300:]}")
    return node, modules


def test_node_snippet_verifies_a_delivered_webhook(node_modules, delivered, tmp_path):
    node, modules = node_modules
    secret, webhook = delivered
    script = tmp_path / "server.js"
    script.write_text(snippet("verify-node"), encoding="utf-8")
    port = free_port()
    env = {**os.environ, "NODE_PATH": str(modules), "PORT": str(port), "PAYHOOK_WEBHOOK_SECRET": secret}
    server = subprocess.Popen([node, str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                status = post(port, "/webhooks/payhook", webhook.body, replayed(webhook))
                break
            except ConnectionRefusedError:
                assert server.poll() is None, f"node exited: {server.stderr.read()}"
                assert time.monotonic() < deadline, "the Node snippet did not listen within 15 s"
                time.sleep(0.1)
        assert status == 204
        tampered = webhook.body.replace(b'"1.00"', b'"9.00"')
        assert post(port, "/webhooks/payhook", tampered, replayed(webhook)) == 400
    finally:
        server.terminate()
        out, err = server.communicate(timeout=10)
    event_id = webhook.headers["webhook-id"]
    assert f"payhook event {event_id} mpesa.stk_push succeeded" in out, err
