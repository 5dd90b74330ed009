"""Callback URL tokens never reach the webhook-service's own log lines, error reports or metric labels.

The app logs to stderr through the handler ``payhook_shared.logs.configure`` installs, as in production;
the tests read what it wrote. gunicorn's logs are covered in ``test_gunicorn_gevent``.
"""

from __future__ import annotations

import json

import pytest
from flask import request

from factories import callback_url, fixture_bytes, merchant_with_endpoints, make_source
from payhook_webhook import receive


@pytest.fixture(params=["json", "text"])
def request_format(request) -> str:
    """The LOG_FORMAT under test."""
    return request.param


@pytest.fixture
def logged_app(request_format, database_url, redis_url):
    """Call it to build the app, logging in ``LOG_FORMAT`` json or text to the stderr of that moment."""
    from payhook_webhook.app import create_app

    apps = []

    def build():
        apps.append(create_app({"database_url": database_url, "redis_url": redis_url, "log_format": request_format,
                                "log_level": "DEBUG", "endpoint_allowlist": ("127.0.0.0/8",)}))
        return apps[-1].test_client()

    yield build
    for app in apps:
        app.extensions["payhook.store"].dispose()


def test_tokens_are_redacted_from_log_lines_and_tracebacks(logged_app, request_format, store, capfd, monkeypatch):
    # Built while capfd captures, so its log handler writes where the test reads.
    logged_client = logged_app()
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    source, source_path = make_source(store, merchant, "paystack", "sk_test_secret")
    url = callback_url(merchant, "stk")
    assert logged_client.post(url, data=fixture_bytes("mpesa/stk_success.json"),
                              content_type="application/json").status_code == 200
    assert logged_client.post(url, data=b'{"Body": {}}', content_type="application/json").status_code == 400
    assert logged_client.post(source_path, data=b"{}",
                              content_type="application/json").status_code == 401

    def broken(*_args, **_kwargs):
        raise RuntimeError(f"classification failed for {request.path}")

    # An unexpected failure in the view: Flask logs "Exception on <path> [POST]" and the traceback.
    monkeypatch.setattr(receive, "classify", broken)
    assert logged_client.post(url, data=fixture_bytes("mpesa/stk_cancelled_1032.json"),
                              content_type="application/json").status_code == 500
    metrics = logged_client.get("/metrics").get_data(as_text=True)

    logged = capfd.readouterr().err
    assert f"Exception on /cb/{merchant.id}/[redacted]/stk [POST]" in logged, logged
    assert f"classification failed for /cb/{merchant.id}/[redacted]/stk" in logged, logged
    for token in (merchant.callback_token, source.callback_token):
        assert token not in logged, logged
        assert token not in metrics
    assert 'route="/cb/<merchant_id>/<token>/stk"' in metrics
    if request_format == "json":  # the traceback, scrubbed, is still the record's exc_info field
        record = json.loads(next(line for line in logged.splitlines() if "Exception on" in line))
        assert "RuntimeError: classification failed for /cb/" in record["exc_info"]
