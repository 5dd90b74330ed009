"""The control API, ``/_sandbox/...``: what tests (and curious developers) use to steer and watch the sandbox.

Bad control requests get a 400 naming the problem, as JSON ``{"error": ...}``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

from flask import Blueprint, abort, jsonify, request

from .errors import SandboxError
from .routes import ENDPOINTS, sandbox

blueprint = Blueprint("control", __name__, url_prefix="/_sandbox")


def _json() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise SandboxError("send a JSON object")
    return body


def _number(body: dict[str, Any], name: str, low: float = 0.0, high: float = math.inf) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise SandboxError(f"{name} must be a number from {low:g} to {high:g}")
    return float(value)


def _config() -> dict[str, Any]:
    box = sandbox()
    mix = box.mix
    return {"outcomes": dict(mix.outcomes), "drop_ratio": mix.drop_ratio, "late_ratio": mix.late_ratio,
            "callback_delay": mix.callback_delay, "late_delay": mix.late_delay, "query_latency": box.query_latency,
            "token_expires_in": box.token_expires_in, "shortcodes": sorted(box.passkeys)}


@blueprint.errorhandler(SandboxError)
def _refused(exc: SandboxError):
    return jsonify({"error": str(exc)}), 400


@blueprint.get("/config")
def get_config():
    """The outcome mix and timings in force."""
    return jsonify(_config())


@blueprint.put("/config")
def put_config():
    """Change any of: outcomes ({code: weight}), drop_ratio, late_ratio, callback_delay, late_delay,
    query_latency, token_expires_in, seed."""
    body = _json()
    unknown = set(body) - {"outcomes", "drop_ratio", "late_ratio", "callback_delay", "late_delay", "query_latency",
                           "token_expires_in", "seed"}
    if unknown:
        raise SandboxError(f"unknown field(s): {', '.join(sorted(unknown))}")
    mix = sandbox().mix
    changes: dict[str, Any] = {}
    if "outcomes" in body:
        outcomes = body["outcomes"]
        if not isinstance(outcomes, dict) or not outcomes or not all(
                isinstance(code, str) and code.isdigit() and isinstance(weight, (int, float))
                and not isinstance(weight, bool) and 0 <= weight < math.inf for code, weight in outcomes.items()) \
                or not sum(outcomes.values()) > 0:
            raise SandboxError('outcomes must map result codes to weights, e.g. {"0": 8, "1032": 2}')
        changes["outcomes"] = tuple((code, float(weight)) for code, weight in outcomes.items())
    for name in ("drop_ratio", "late_ratio"):
        if (value := _number(body, name, 0, 1)) is not None:
            changes[name] = value
    for name in ("callback_delay", "late_delay"):
        if (value := _number(body, name)) is not None:
            changes[name] = value
    mix = dataclasses.replace(mix, **changes)
    if mix.drop_ratio + mix.late_ratio > 1:
        raise SandboxError("drop_ratio + late_ratio must not exceed 1")
    expires_in = _number(body, "token_expires_in", 1)
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise SandboxError("seed must be an integer")
    sandbox().configure(mix=mix, query_latency=_number(body, "query_latency"),
                        token_expires_in=None if expires_in is None else int(expires_in), seed=seed)
    return jsonify(_config())


@blueprint.post("/credentials")
def add_credentials():
    """Accept one more Daraja app (consumer_key, consumer_secret) and/or short code (shortcode, passkey)."""
    body = _json()
    fields = ("consumer_key", "consumer_secret", "shortcode", "passkey")
    if any(body.get(f) is not None and not isinstance(body[f], str) for f in fields):
        raise SandboxError(f"{', '.join(fields)} must be strings")
    if (body.get("consumer_key") is None) != (body.get("consumer_secret") is None) \
            or (body.get("shortcode") is None) != (body.get("passkey") is None) \
            or all(body.get(f) is None for f in fields):
        raise SandboxError("send consumer_key with consumer_secret, and/or shortcode with passkey")
    sandbox().add_credentials(*(body.get(f) for f in fields))
    return jsonify(_config()), 201


@blueprint.post("/faults")
def add_fault():
    """Answer the next ``count`` requests to ``endpoint`` (any Daraja endpoint if absent) with ``status``."""
    body = _json()
    status, count, endpoint = body.get("status"), body.get("count", 1), body.get("endpoint")
    if not isinstance(status, int) or isinstance(status, bool) or not 400 <= status <= 599:
        raise SandboxError("status must be an HTTP error status such as 500 or 429")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise SandboxError("count must be a positive integer")
    names = sorted(set(ENDPOINTS.values()))
    if endpoint is not None and endpoint not in names:
        raise SandboxError(f"endpoint must be one of {', '.join(names)}")
    sandbox().add_fault(status, count, endpoint)
    return jsonify({"status": status, "count": count, "endpoint": endpoint}), 201


@blueprint.delete("/faults")
def clear_faults():
    """Forget the faults not yet served."""
    sandbox().clear_faults()
    return "", 204


@blueprint.get("/counters")
def counters():
    """Tokens issued, requests per endpoint, queries per CheckoutRequestID (and most at once), callbacks."""
    return jsonify(sandbox().counters())


@blueprint.get("/callbacks")
def callbacks():
    """The callbacks sent or tried (the last 1,000): kind, URL, the receiver's status, body."""
    return jsonify(sandbox().callbacks())


@blueprint.get("/stk")
def pushes():
    """Every STK Push accepted: its result code, fate, whether final, and its callback's state."""
    return jsonify(sandbox().all_pushes())


@blueprint.post("/stk/<checkout_id>/callback")
def send_callback(checkout_id: str):
    """Send an STK Push's callback now: the late callback of a dropped push, or a duplicate."""
    box = sandbox()
    push = box.find_push(checkout_id)
    if push is None:
        abort(404, f"no STK Push {checkout_id}")
    if time.monotonic() < push.final_at:
        raise SandboxError(f"STK Push {checkout_id} is not final yet")
    status = box.send_push_now(push)
    return jsonify({"CheckoutRequestID": checkout_id, "status": status, "callback": push.callback})


@blueprint.post("/reset")
def reset():
    """Back to the start: the settings' credentials and mix, no tokens, transactions, faults or counts."""
    sandbox().reset()
    return "", 204
