"""The sandbox's Flask app: Daraja's endpoints and the control API over one ``Sandbox`` state."""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from . import control, routes
from .settings import Settings, load
from .state import Sandbox


def create_app(config: dict[str, Any] | Settings | None = None) -> Flask:
    """Build the sandbox app; ``config`` is its Settings, or overrides of the ``SANDBOX_*`` environment."""
    settings = config if isinstance(config, Settings) else load(**(config or {}))
    app = Flask(__name__)
    app.extensions["payhook_sandbox"] = Sandbox(settings)
    app.register_blueprint(routes.blueprint)
    app.register_blueprint(control.blueprint)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        # JSON for every error, as a client of Daraja expects, never an HTML page.
        return jsonify({"error": exc.description or exc.name}), exc.code

    @app.get("/health")
    def health():
        return jsonify({"status": "ok"})

    return app
