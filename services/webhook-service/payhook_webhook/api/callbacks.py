"""Provider callback routes: ``/cb/<merchant_id>/<token>/<kind>``, one route per callback kind.

The path deliberately avoids words Safaricom refuses in callback URLs
(mpesa, safaricom, exec, cmd, sql, query, …); ids and tokens are hex and the
kinds (``stk``, ``c2b-confirmation``, ``b2c-result``, …) are chosen to match.

Every kind is recorded before it is answered (or, when the store cannot record
it, spooled: see ``spool``). C2B validation requests are recorded too, as
``mpesa.c2b.validation`` events carrying the decision: one insert is cheap next
to Safaricom's 8 s window, and it leaves a trace of every rejection. They are delivered only to endpoints that list that type, and the
confirmation, not the validation, is the payment.

A body that fails validation is answered 400 (415 when not declared JSON) and,
since Safaricom never sends it again, kept in quarantine (see ``quarantine``).
"""

from __future__ import annotations

import hmac
import logging

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy.exc import SQLAlchemyError

from payhook_shared.callbacks import parse_json
from payhook_shared.callbacks.mpesa import NORMALISERS
from payhook_shared.errors import DecodeError
from payhook_shared.logs import bind

from .. import merchants, metrics, quarantine, receive
from ..errors import InvalidPayload, NotFound, UnsupportedMediaType
from ..source_ip import enforce_mpesa_allowlist

log = logging.getLogger(__name__)

bp = Blueprint("callbacks", __name__, url_prefix="/cb")
# Every route here is an M-Pesa callback; the allowlist is off unless MPESA_IP_ALLOWLIST_ENABLED.
bp.before_request(enforce_mpesa_allowlist)

KINDS = tuple(NORMALISERS)


def _merchant(merchant_id: str, token: str) -> merchants.Profile:
    directory = current_app.extensions["payhook.merchants"]
    try:
        merchant = directory.get(merchant_id)
    except SQLAlchemyError:
        # The store cannot be read: the profile this process last read authenticates the URL, so the
        # callback can still be spooled (see ``spool``). A process that never read it answers 503.
        merchant = directory.last_known(merchant_id)
        if merchant is None:
            raise
    # Compare even when the merchant is unknown, so timing tells nothing.
    expected = merchant.callback_token if merchant else "0" * 32
    if not hmac.compare_digest(token.encode(), expected.encode()) or merchant is None:
        raise NotFound("unknown callback URL")
    return merchant


def _receive(merchant_id: str, token: str, kind: str):
    merchant = _merchant(merchant_id, token)

    def reload() -> merchants.Profile:
        # The cached merchant profile was stale and nothing was written: read it again.
        current_app.extensions["payhook.merchants"].forget(merchant_id)
        return _merchant(merchant_id, token)

    # Read whole (413 past MAX_BODY_BYTES) before any check: a refused body on this valid URL is kept.
    raw = request.get_data(cache=False)
    with bind(merchant_id=merchant.id):
        if not request.mimetype or "json" not in request.mimetype:
            message = f"expected application/json, got {request.mimetype or 'no content type'}"
            quarantine.keep(merchant.id, quarantine.MPESA, kind, raw, "content_type", message)
            raise UnsupportedMediaType(message)
        try:
            payload = parse_json(raw)
        except DecodeError as exc:
            metrics.note_invalid("json")
            quarantine.keep(merchant.id, quarantine.MPESA, kind, raw, "json", str(exc))
            raise InvalidPayload(str(exc)) from None
        try:
            received = receive.mpesa(merchant, raw, payload, kind, reload, spool_on_failure=True)
        except DecodeError as exc:
            log.info("refused %s callback: %s", kind, exc)
            metrics.note_invalid(metrics.validation_reason(exc.messages))
            quarantine.keep(merchant.id, quarantine.MPESA, kind, raw, "schema", str(exc), exc.messages)
            raise InvalidPayload(str(exc), exc.messages) from None
    if received.spooled is not None:
        metrics.note_spooled()
    elif received.recorded.duplicate:
        metrics.note_duplicate()
    return jsonify(received.answer)


def _route(kind: str):
    def view(merchant_id: str, token: str):
        return _receive(merchant_id, token, kind)

    view.__name__ = f"receive_{kind.replace('-', '_')}"
    view.__doc__ = f"The {kind} callback: validate, record, then answer as Safaricom expects."
    return view


for _kind in KINDS:
    bp.add_url_rule(f"/<merchant_id>/<token>/{_kind}", endpoint=_kind, view_func=_route(_kind), methods=["POST"])
