"""X-Request-ID: echoed and logged when it is a short token, replaced otherwise, never able to forge log fields."""

from __future__ import annotations

import io
import logging
import re
import shutil

import pytest

from payhook_webhook.app import create_app

GENERATED = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture
def logging_app(tmp_path, sqlite_template, redis_url):
    # SQLite only: the store plays no part in reading a header.
    shutil.copy(sqlite_template, tmp_path / "payhook.db")
    app = create_app({"database_url": f"sqlite:///{tmp_path / 'payhook.db'}", "redis_url": redis_url,
                      "log_format": "text"})
    # A route that logs one line, to see what a request's correlation id does to it.
    app.add_url_rule("/log-probe", "log_probe", lambda: (logging.getLogger("probe").warning("probe line"), "")[1])
    # The service's own handler (text format, correlation filter), written somewhere the test can read.
    app.log_lines = io.StringIO()
    [handler] = logging.getLogger().handlers
    handler.setStream(app.log_lines)
    yield app
    app.extensions["payhook.store"].dispose()


def _probe_line(app, header: str):
    response = app.test_client().get("/log-probe", headers={"X-Request-ID": header})
    lines = [line for line in app.log_lines.getvalue().splitlines() if "probe line" in line]
    assert len(lines) == 1, lines
    return response.headers["X-Request-ID"], lines[0]


@pytest.mark.parametrize("header", ["req-42", "0a1b.c_D-e", "r" * 128])
def test_a_short_token_is_echoed_and_logged(logging_app, header):
    echoed, line = _probe_line(logging_app, header)
    assert echoed == header and line.endswith(f"probe line correlation_id={header}")


@pytest.mark.parametrize("header", ["", "r" * 129, "ok merchant_id=mch_forged event_id=evt_forged",
                                    "x=1", "caf\u00e9", "a\tb", "\"quoted\""])
def test_anything_else_is_replaced_and_cannot_forge_log_fields(logging_app, header):
    echoed, line = _probe_line(logging_app, header)
    assert GENERATED.match(echoed)
    assert line.endswith(f"probe line correlation_id={echoed}")
    assert "forged" not in line and line.count("=") == 1
