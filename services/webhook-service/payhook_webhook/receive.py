"""Validating and recording one provider callback body: the path a live callback and a reprocessed one share.

The routes (``api.callbacks``, ``api.inbound``) authenticate the URL, read and parse the body, then call
here; ``quarantine.reprocess`` calls here with a kept body. Either way the event is recorded by the same
ingest write, so one made by a reprocess is deduplicated against one that arrived meanwhile. A live M-Pesa
callback the store cannot record is spooled instead, and ``drain`` records it here later.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from flask import current_app
from sqlalchemy.exc import SQLAlchemyError

from payhook_shared.callbacks import sources
from payhook_shared.callbacks.mpesa import NORMALISERS, load_c2b_validation
from payhook_shared.events import CALLBACK
from payhook_shared.logs import bind

from . import c2b, ingest, merchants, spool
from .priority_rules import classify, rules_of
from .errors import ProfileChanged

log = logging.getLogger(__name__)

ACCEPTED = {"ResultCode": 0, "ResultDesc": "Accepted"}
# What Safaricom expects from a C2B confirmation URL.
CONFIRMED = {"ResultCode": 0, "ResultDesc": "Success"}


@dataclasses.dataclass
class Received:
    """A callback recorded (``recorded``) or, the store having failed, spooled (``spooled``, its spool entry id)."""

    answer: dict[str, Any]
    recorded: ingest.Recorded | None
    spooled: str | None = None


def _record(merchant: merchants.Profile, event, raw: bytes) -> ingest.Recorded:
    return current_app.extensions["payhook.recorder"].record(merchant, event, raw,
                                                            classify(event, rules=rules_of(merchant)))


def _mpesa(merchant: merchants.Profile, raw: bytes, payload: dict, kind: str, decision: c2b.Decision | None,
           details: dict[str, str], source: str, spool_on_failure: bool) -> Received:
    with bind(merchant_id=merchant.id):
        event = NORMALISERS[kind](payload)
        event.details.update(details)
        event.source = source
        answer = CONFIRMED if kind == "c2b-confirmation" else ACCEPTED
        if kind == "c2b-validation":
            if decision is None:
                decision = c2b.decide(merchant.settings, load_c2b_validation(payload), raw,
                                      current_app.extensions["payhook.http"],
                                      current_app.extensions["payhook.settings"].endpoint_allowlist)
            event.details.update(decision.details())
            answer = decision.answer()
        try:
            recorded = _record(merchant, event, raw)
        except SQLAlchemyError as exc:
            if not spool_on_failure:
                raise
            return Received(answer, None, spool.put(merchant.id, kind, raw, decision, exc))
        if recorded.duplicate:
            with bind(event_id=recorded.event_id):
                log.info("duplicate %s callback for %s", kind, recorded.event_id)
        else:
            # A Transaction Status answer wakes the status check waiting for it (``resolve.py``).
            current_app.extensions["payhook.status_checks"].answered(kind, merchant.id, event)
    return Received(answer, recorded)


def mpesa(merchant: merchants.Profile, raw: bytes, payload: dict, kind: str,
          reload: Callable[[], merchants.Profile], *, decision: c2b.Decision | None = None,
          details: dict[str, str] | None = None, source: str = CALLBACK, spool_on_failure: bool = False) -> Received:
    """Validate the parsed M-Pesa ``kind`` callback ``payload`` (``raw`` as received) and record it for ``merchant``.

    ``reload`` reads the merchant again when its cached profile proves stale (nothing was written then).
    ``decision`` is a C2B validation's decision made already (when it was spooled), so it is not made twice;
    ``details`` are added to the event's (a drained callback's ``spooled_at``); ``source`` is its ``data.source``
    (``query`` for the reconciler's answer from Daraja).
    With ``spool_on_failure``, a callback the store cannot record goes to the spool (``spool.put``) and is
    answered all the same; without, the store's error is raised.

    Raises:
      DecodeError: the payload does not match the kind's schema; nothing is recorded.
      StoreUnavailable: neither the store nor the spool took it.
    """
    try:
        return _mpesa(merchant, raw, payload, kind, decision, details or {}, source, spool_on_failure)
    except ProfileChanged:
        return _mpesa(reload(), raw, payload, kind, decision, details or {}, source, spool_on_failure)


def gateway(provider: str, source_id: str, merchant_id: str, raw: bytes, payload: dict,
            message_id: str | None) -> ingest.Recorded:
    """Validate a verified gateway ``payload`` from source ``source_id`` and record it for its merchant.

    Raises:
      DecodeError: naming the field that is missing or unusable; nothing is recorded.
    """
    directory = current_app.extensions["payhook.merchants"]
    merchant = directory.get(merchant_id)
    with bind(merchant_id=merchant.id):
        event = sources.normalise(provider, payload, raw, message_id)
        event.details["source_id"] = source_id
        try:
            recorded = _record(merchant, event, raw)
        except ProfileChanged:
            # The cached merchant was stale and nothing was written: read it again and record once more.
            directory.forget(merchant.id)
            recorded = _record(directory.get(merchant.id), event, raw)
        if recorded.duplicate:
            log.info("duplicate %s callback for %s", provider, recorded.event_id)
    return recorded
