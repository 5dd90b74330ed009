"""Provider callback routes: ``/cb/<merchant_id>/<token>/<kind>``.

The path deliberately avoids words Safaricom refuses in callback URLs
(mpesa, safaricom, exec, cmd, sql, query, …); ids and tokens are hex.
"""

from __future__ import annotations

import hmac
import logging

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy.orm import selectinload

from payhook_shared.callbacks import parse_json
from payhook_shared.callbacks.mpesa import normalise_stk
from payhook_shared.errors import DecodeError
from payhook_shared.logs import bind
from payhook_shared.store import Merchant

from .. import ingest
from ..classify import classify, rules_of
from ..errors import InvalidPayload, NotFound, UnsupportedMediaType
from ..source_ip import enforce_mpesa_allowlist

log = logging.getLogger(__name__)

bp = Blueprint("callbacks", __name__, url_prefix="/cb")
# Every route here is an M-Pesa callback; the allowlist is off unless MPESA_IP_ALLOWLIST_ENABLED.
bp.before_request(enforce_mpesa_allowlist)

ACCEPTED = {"ResultCode": 0, "ResultDesc": "Accepted"}


def _merchant(merchant_id: str, token: str) -> Merchant:
    store = current_app.extensions["payhook.store"]
    with store.read() as session:
        merchant = session.get(Merchant, merchant_id, options=[selectinload(Merchant.endpoints)])
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
        raise InvalidPayload(str(exc)) from None


@bp.post("/<merchant_id>/<token>/stk")
def stk_result(merchant_id: str, token: str):
    """STK Push (M-Pesa Express) result callback."""
    merchant = _merchant(merchant_id, token)
    raw, payload = _json_body()
    with bind(merchant_id=merchant.id):
        try:
            event = normalise_stk(payload)
        except DecodeError as exc:
            log.info("refused STK callback: %s", exc)
            raise InvalidPayload(str(exc), exc.messages) from None
        recorded = ingest.record(
            current_app.extensions["payhook.store"], current_app.extensions["payhook.broker"],
            merchant, event, raw, classify(event, rules=rules_of(merchant)),
        )
        if recorded.duplicate:
            log.info("duplicate STK callback for %s", recorded.event_id)
    return jsonify(ACCEPTED)
