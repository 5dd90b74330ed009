"""Liveness, readiness and queue figures for probes and operators."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from payhook_shared.store.schema import check_schema

bp = Blueprint("health", __name__)


@bp.get("/health")
def live():
    """The process answers."""
    return jsonify(status="ok")


@bp.get("/health/ready")
def ready():
    """The store and Redis both answer and the schema is migrated for this code; until then, take no traffic."""
    checks = {}
    try:
        current_app.extensions["payhook.store"].ping()
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = type(exc).__name__
    try:
        check_schema(current_app.extensions["payhook.store"])
        checks["schema"] = "ok"
    except Exception as exc:
        checks["schema"] = type(exc).__name__
    try:
        current_app.extensions["payhook.broker"].client.ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = type(exc).__name__
    healthy = all(v == "ok" for v in checks.values())
    return jsonify(status="ok" if healthy else "unavailable", checks=checks), 200 if healthy else 503


@bp.get("/health/queue")
def queue():
    """Per queue of both families: waiting (in Redis), active, delayed, dead and completed jobs."""
    try:
        stats = current_app.extensions["payhook.queue_stats"]()
    except Exception as exc:
        return jsonify(status="unavailable", error=type(exc).__name__), 503
    return jsonify(status="ok", **stats)
