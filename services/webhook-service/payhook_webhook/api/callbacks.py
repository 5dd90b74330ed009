"""Provider callback routes: ``/cb/<merchant_id>/<token>/<kind>``, one route per callback kind.

The path deliberately avoids words Safaricom refuses in callback URLs
(mpesa, safaricom, exec, cmd, sql, query, …); ids and tokens are hex and the
kinds (``stk``, ``c2b-confirmation``, ``b2c-result``, …) are chosen to match.

Every kind is recorded before it is answered. C2B validation requests are
recorded too, as ``mpesa.c2b.validation`` events carrying the decision: one
insert is cheap next to Safaricom's 8 s window, and it leaves a trace of every
rejection. They are delivered only to endpoints that list that type, and the
confirmation, not the validation, is the payment.
"""

from __future__ import annotations

import hmac
import logging

from flask import Blueprint, current_app, jsonify, request

from payhook_shared.callbacks import parse_json
from payhook_shared.callbacks.mpesa import NORMALISERS, load_c2b_validation
from payhook_shared.errors import DecodeError
from payhook_shared.logs import bind

from .. import c2b, merchants, metrics
from ..priority_rules import classify, rules_of
from ..errors import InvalidPayload, NotFound, ProfileChanged, UnsupportedMediaType
from ..source_ip import enforce_mpesa_allowlist

log = logging.getLogger(__name__)

bp = Blueprint("callbacks", __name__, url_prefix="/cb")
# Every route here is an M-Pesa callback; the allowlist is off unless MPESA_IP_ALLOWLIST_ENABLED.
bp.before_request(enforce_mpesa_allowlist)

ACCEPTED = {"ResultCode": 0, "ResultDesc": "Accepted"}
# What Safaricom expects from a C2B confirmation URL.
CONFIRMED = {"ResultCode": 0, "ResultDesc": "Success"}
KINDS = tuple(NORMALISERS)


def _merchant(merchant_id: str, token: str) -> merchants.Profile:
    merchant = current_app.extensions["payhook.merchants"].get(merchant_id)
    # Compare even when the merchant is unknown, so timing tells nothing.
    expected = merchant.callback_token if merchant else "0" * 32
    if not hmac.compare_digest(token.encode(), expected.encode()) or merchant is None:
        raise NotFound("unknown callback URL")
    return merchant


def _json_body() -> tuple[bytes, dict]:
    if not request.mimetype or "json" not in request.mimetype:
        raise UnsupportedMediaType(f"expected application/json, got {request.mimetype or 'no content type'}")
    raw = request.get_data(cache=False)
    try:
        return raw, parse_json(raw)
    except DecodeError as exc:
        metrics.note_invalid("json")
        raise InvalidPayload(str(exc)) from None


def _receive(merchant_id: str, token: str, kind: str):
    merchant = _merchant(merchant_id, token)
    raw, payload = _json_body()
    try:
        return _record(merchant, raw, payload, kind)
    except ProfileChanged:
        # The cached merchant profile was stale and nothing was written: read it again, go once more.
        current_app.extensions["payhook.merchants"].forget(merchant_id)
        return _record(_merchant(merchant_id, token), raw, payload, kind)


def _record(merchant: merchants.Profile, raw: bytes, payload: dict, kind: str):
    with bind(merchant_id=merchant.id):
        try:
            event = NORMALISERS[kind](payload)
        except DecodeError as exc:
            log.info("refused %s callback: %s", kind, exc)
            metrics.note_invalid(metrics.validation_reason(exc.messages))
            raise InvalidPayload(str(exc), exc.messages) from None
        answer = CONFIRMED if kind == "c2b-confirmation" else ACCEPTED
        if kind == "c2b-validation":
            decision = c2b.decide(merchant.settings, load_c2b_validation(payload), raw,
                                  current_app.extensions["payhook.http"],
                                  current_app.extensions["payhook.settings"].endpoint_allowlist)
            event.details.update(decision.details())
            answer = decision.answer()
        recorded = current_app.extensions["payhook.recorder"].record(
            merchant, event, raw, classify(event, rules=rules_of(merchant)))
        if recorded.duplicate:
            metrics.note_duplicate()
            with bind(event_id=recorded.event_id):
                log.info("duplicate %s callback for %s", kind, recorded.event_id)
    return jsonify(answer)


def _route(kind: str):
    def view(merchant_id: str, token: str):
        return _receive(merchant_id, token, kind)

    view.__name__ = f"receive_{kind.replace('-', '_')}"
    view.__doc__ = f"The {kind} callback: validate, record, then answer as Safaricom expects."
    return view


for _kind in KINDS:
    bp.add_url_rule(f"/<merchant_id>/<token>/{_kind}", endpoint=_kind, view_func=_route(_kind), methods=["POST"])
