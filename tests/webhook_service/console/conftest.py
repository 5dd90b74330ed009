"""A real console server on a free port and Debian's chromium driven by Playwright.

The browser tests use SQLite only: the console's queries run on both databases
in test_console_forms.py, and one browser pass keeps the suite fast.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from support import free_port, serving

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = Path(__file__).resolve().parents[3] / "docs" / "screenshots"


class ConsoleServer:
    """The real webhook-service app (console included) served by werkzeug in a thread."""

    def __init__(self, app, port: int):
        self.app = app
        self.port = port
        self.server = make_server("127.0.0.1", self.port, app, threaded=True)
        self.thread = serving(self.server)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ConsoleServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(10)


@pytest.fixture
def console_app_with(database_url, redis_url):
    """Build the webhook-service app (console included) on the test store, with setting overrides."""
    from payhook_webhook.app import create_app

    apps = []

    def build(**overrides):
        app = create_app({"database_url": database_url, "redis_url": redis_url, "log_format": "text",
                          "console_cookie_secure": False, **overrides})
        app.config["TESTING"] = True
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.extensions["payhook.store"].dispose()


@pytest.fixture
def console_app(console_app_with):
    """The webhook-service app with its console, cookies allowed over plain HTTP."""
    return console_app_with()


@pytest.fixture
def console_server(database_url, redis_url):
    """The webhook-service with its console, on a free port, for a browser to visit; emailed sign-in
    links point at it."""
    from payhook_webhook.app import create_app

    port = free_port()
    app = create_app({"database_url": database_url, "redis_url": redis_url, "log_format": "text",
                      "console_cookie_secure": False, "public_base_url": "http://127.0.0.1:8640",
                      "console_public_url": f"http://127.0.0.1:{port}"})
    server = ConsoleServer(app, port).start()
    yield server
    server.stop()
    app.extensions["payhook.store"].dispose()


@pytest.fixture(scope="session")
def chromium():
    """Debian's chromium under Playwright (never Playwright's own browser download)."""
    if shutil.which("chromium") is None or not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (scripts/ensure-chromium.sh installs it as root on Debian)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    playwright = sync_api.sync_playwright().start()
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()
    playwright.stop()


@pytest.fixture
def page(chromium):
    """A fresh browser context (no cookies) and page; every dialog it opens is recorded and dismissed."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.dialogs = []

    def _dialog(dialog):
        page.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", _dialog)
    yield page
    context.close()


@pytest.fixture
def screenshot(tmp_path):
    """``screenshot(page, name)`` takes a full-page PNG.

    It lands in docs/screenshots/ (committed, shown in the README) when
    PAYHOOK_SCREENSHOTS=1, as `make screenshots` sets; otherwise in the test's
    temporary folder, so a test run never changes the working tree.
    """
    folder = SCREENSHOTS if os.environ.get("PAYHOOK_SCREENSHOTS") == "1" else tmp_path
    folder.mkdir(parents=True, exist_ok=True)

    def take(page, name: str) -> None:
        page.screenshot(path=str(folder / f"{name}.png"), full_page=True)

    return take
