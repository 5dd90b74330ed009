"""Reconciliation: asking Daraja about STK Pushes whose callback never came (docs/mpesa.md#reconciliation).

A payment intent still ``pending`` ``RECONCILE_AFTER`` seconds after it was made is queried with STK Push
Query. A final answer (a ``ResultCode``) becomes the STK event the callback would have made, with the
same dedupe key (``stk:<CheckoutRequestID>``) and ``data.source`` ``"query"``, recorded through
``receive.mpesa`` like a live callback: its deliveries, priority and emails follow, ingest settles the
intent in the same write, and a real callback arriving later is a duplicate. While Daraja says the
payment is still being processed (``500.001.1001``), or cannot be asked (unreachable, 5xx, 429, timeouts,
Payhook's own rate limit), the intent waits, backing off. It ends ``unknown`` when Daraja still says
"processing" after ``RECONCILE_MAX_CHECKS`` queries, or when ``RECONCILE_MAX_AGE`` has passed without a
final answer: the merchant then gets the operational webhook ``payhook.payment.unresolved``, and the
``payhook_payments_unresolved_total`` counter (and its alert) counts it.

Every web process runs a ``Reconciler``; there is no leader. Each intent is *claimed* before its query
by one conditional ``UPDATE`` (still pending and due) that moves its ``next_check_at`` past a lease and
counts the check, so two processes never query one intent at once, and an intent whose process died
mid-check is due again when the lease ends. The state is all in the intent's row, so restarts lose
nothing. The check number the claim wrote fences what follows: a process whose lease ran out cannot
overwrite the next claimer's outcome.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from flask import Flask
from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from payhook_shared import notices, operational
from payhook_shared.callbacks import mpesa
from payhook_shared.daraja.errors import CredentialsError, DarajaError, DarajaRejected
from payhook_shared.logs import bind
from payhook_shared.money import format_amount
from payhook_shared.errors import DecodeError
from payhook_shared.events import QUERY, SUCCEEDED
from payhook_shared.store import Event, IntentState, Merchant, PaymentIntent, Store
from payhook_shared.store.models import utcnow

from . import metrics, receive
from .errors import InvalidPayload, StoreUnavailable
from .services import daraja

log = logging.getLogger(__name__)

#: Daraja's STK Push Query answer while the customer has not finished: ask again later.
STILL_PROCESSING = "500.001.1001"
#: Intents claimed per look; the rest wait for the next one.
CLAIM_BATCH = 20


@dataclasses.dataclass(frozen=True)
class Policy:
    """When to query and when to give up (the ``RECONCILE_*`` settings)."""

    after: float
    max_checks: int
    max_age: float
    backoff: float
    backoff_max: float
    lease: float

    def delay(self, checks: int) -> float:
        """Seconds before the next query, after ``checks`` queries that gave no final answer."""
        return min(self.backoff * 2 ** max(checks - 1, 0), self.backoff_max)


def policy_of(settings: Any) -> Policy:
    """The reconciliation policy of the webhook-service's ``settings``.

    The lease outlasts one query however slow: a wait for another process's token, OAuth, then the query.
    """
    lease = 2 * (settings.daraja_connect_timeout + settings.daraja_read_timeout) + 10
    return Policy(settings.reconcile_after, settings.reconcile_max_checks, settings.reconcile_max_age,
                  settings.reconcile_backoff, settings.reconcile_backoff_max, lease)


@dataclasses.dataclass(frozen=True)
class _Claim:
    id: str
    merchant_id: str
    checkout_request_id: str
    merchant_request_id: str | None
    amount_minor: int | None
    account_reference: str | None
    created_at: dt.datetime
    checks: int



def _due(model: type, pending: str, now: dt.datetime, after: float):
    """Pending and due: ``next_check_at`` passed, or (never set) ``after`` seconds old."""
    first = now - dt.timedelta(seconds=after)
    return and_(model.state == pending,
                or_(model.next_check_at <= now, and_(model.next_check_at.is_(None), model.created_at <= first)))


def claim_due(store: Store, model: type, pending: str, policy: Policy, now: dt.datetime,
              columns: tuple) -> list[Any]:
    """Claim up to ``CLAIM_BATCH`` due rows of ``model`` (payment intents, status checks) for ``policy.lease``.

    Each claim pushes ``next_check_at`` to the lease's end and counts a check; returns ``columns`` of the
    rows this process claimed.
    """
    with store.read() as session:
        candidates = session.scalars(select(model.id).where(_due(model, pending, now, policy.after))
                                     .order_by(model.next_check_at).limit(CLAIM_BATCH)).all()
    claimed = []
    lease_end = now + dt.timedelta(seconds=policy.lease)
    for row_id in candidates:
        # The condition is evaluated again under the row's lock: of two processes, one claims it.
        stmt = (update(model).where(model.id == row_id, _due(model, pending, now, policy.after))
                .values(next_check_at=lease_end, checks=model.checks + 1, last_checked_at=now)
                .returning(*columns))
        with store.write() as session:
            row = session.execute(stmt).one_or_none()
        if row is not None:
            claimed.append(row)
    return claimed

class Reconciler:
    """Queries due pending intents every ``interval`` seconds, in every web process (claims keep them apart).

    ``also`` are other ticks claimed the same way that each look runs after the intents' (the status checks
    of ``resolve.py``), each returning how many it claimed. ``clock`` gives the current time (``utcnow``;
    tests move their own).
    """

    def __init__(self, app: Flask, interval: float, policy: Policy,
                 clock: Callable[[], dt.datetime] = utcnow, also: Sequence[Callable[[], int]] = ()):
        self.app = app
        self.interval = interval
        self.policy = policy
        self.clock = clock
        self.also = tuple(also)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start looking (in a daemon thread: a greenlet under gunicorn's gevent workers)."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="reconciler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop looking; a query in progress finishes (or its lease frees the intent)."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            for tick in (self.tick, *self.also):
                try:
                    while tick() == CLAIM_BATCH and not self._stop.is_set():
                        pass
                except Exception:
                    log.exception("reconciliation tick failed; will retry")

    def tick(self) -> int:
        """Claim and check up to ``CLAIM_BATCH`` due intents; returns how many were claimed."""
        with self.app.app_context():
            claims = self._claim()
            for claim in claims:
                with bind(merchant_id=claim.merchant_id):
                    self._check(claim)
        return len(claims)

    # -- claiming ---------------------------------------------------------------------------------

    def _claim(self) -> list[_Claim]:
        return [_Claim(*row) for row in claim_due(
            self.app.extensions["payhook.store"], PaymentIntent, IntentState.PENDING.value, self.policy, self.clock(),
            (PaymentIntent.id, PaymentIntent.merchant_id, PaymentIntent.checkout_request_id,
             PaymentIntent.merchant_request_id, PaymentIntent.amount_minor, PaymentIntent.account_reference,
             PaymentIntent.created_at, PaymentIntent.checks))]

    # -- checking ---------------------------------------------------------------------------------

    def _check(self, claim: _Claim) -> None:
        store = self.app.extensions["payhook.store"]
        if self._settle_recorded(claim):
            metrics.RECONCILED.labels("settled").inc()
            return
        try:
            with store.read() as session:
                creds = daraja.merchant_credentials(session, claim.merchant_id)
            answer = daraja.client().stk_query(creds, claim.checkout_request_id)
        except (InvalidPayload, CredentialsError) as exc:
            # No credentials to ask with: nothing will change by waiting for them, but the merchant may set them.
            self._wait(claim, "no_credentials", str(exc), processing=False)
            return
        except DarajaError as exc:
            processing = exc.error_code == STILL_PROCESSING
            outcome = "processing" if processing else \
                ("rejected" if isinstance(exc, DarajaRejected) else "unavailable")
            self._wait(claim, outcome, exc.message, processing=processing)
            return
        code = answer.get("ResultCode")
        if code is None or str(code) == "":
            self._wait(claim, "processing", "Daraja's answer has no ResultCode", processing=True)
            return
        self._record(claim, answer)

    def _record(self, claim: _Claim, answer: dict[str, Any]) -> None:
        """Record Daraja's final answer as the STK event the callback would have made."""
        payload = stk_result(claim.checkout_request_id, answer.get("MerchantRequestID") or claim.merchant_request_id,
                             answer["ResultCode"], answer.get("ResultDesc"), claim.amount_minor)
        raw = json.dumps(payload).encode()
        directory = self.app.extensions["payhook.merchants"]
        merchant = directory.get(claim.merchant_id)

        def reload():
            directory.forget(claim.merchant_id)
            return directory.get(claim.merchant_id)

        try:
            received = receive.mpesa(merchant, raw, payload, "stk", reload, details={"query_checks": claim.checks},
                                     source=QUERY)
        except DecodeError as exc:
            # An answer no callback schema takes (a code or text beyond its limits): not a result to record.
            self._wait(claim, "rejected", f"Daraja's query answer is not an STK result: {exc}", processing=False)
            return
        except (SQLAlchemyError, StoreUnavailable) as exc:
            # The claim's lease brings it back; Daraja will say the same then.
            log.warning("could not record the query answer for %s (%s); its lease brings it back",
                        claim.checkout_request_id, type(exc).__name__)
            metrics.RECONCILED.labels("store_error").inc()
            return
        outcome = "duplicate" if received.recorded.duplicate else "resolved"
        if received.recorded.duplicate:
            # The callback came meanwhile and settled the intent, or (recorded while the intent was being
            # inserted, neither seeing the other) did not: settle it from that event.
            self._settle_recorded(claim)
        metrics.RECONCILED.labels(outcome).inc()
        log.info("reconciled STK Push %s by query (ResultCode %s): %s", claim.checkout_request_id,
                 answer["ResultCode"], outcome)

    def _settle_recorded(self, claim: _Claim) -> bool:
        """Settle the intent from its STK event if one is recorded already; whether there was one.

        A callback recorded while its intent was being inserted settles nothing (neither write saw the
        other), so the reconciler, finding the event, settles the intent without asking Daraja.
        """
        store = self.app.extensions["payhook.store"]
        with store.read() as session:
            event = session.execute(select(Event.id, Event.status, Event.result_code, Event.received_at).where(
                Event.merchant_id == claim.merchant_id,
                Event.dedupe_key == mpesa.stk_dedupe_key(claim.checkout_request_id))).one_or_none()
        if event is None:
            return False
        state = IntentState.COMPLETED if event.status == SUCCEEDED else IntentState.FAILED
        with store.write() as session:
            session.execute(self._mine(claim).values(state=state.value, result_code=event.result_code,
                                                     event_id=event.id, resolved_at=event.received_at))
        return True

    def _wait(self, claim: _Claim, outcome: str, reason: str, processing: bool) -> None:
        """No final answer this time: wait and ask again, or end the intent ``unknown``."""
        now = self.clock()
        metrics.RECONCILED.labels(outcome).inc()
        age = (now - claim.created_at).total_seconds()
        if (processing and claim.checks >= self.policy.max_checks) or age >= self.policy.max_age:
            self._give_up(claim, now, reason)
            return
        delay = self.policy.delay(claim.checks)
        log.info("STK Push %s not final (%s: %s); asking again in %.0fs", claim.checkout_request_id, outcome,
                 reason[:200], delay)
        with self.app.extensions["payhook.store"].write() as session:
            session.execute(self._mine(claim).values(next_check_at=now + dt.timedelta(seconds=delay)))

    def _mine(self, claim: _Claim):
        """The UPDATE of ``claim``'s intent, if still pending and still this claim's (no later check claimed it)."""
        return update(PaymentIntent).where(PaymentIntent.id == claim.id,
                                           PaymentIntent.state == IntentState.PENDING.value,
                                           PaymentIntent.checks == claim.checks)

    def _give_up(self, claim: _Claim, now: dt.datetime, reason: str) -> None:
        """End the intent ``unknown`` and tell the merchant (``payhook.payment.unresolved``), in one transaction."""
        broker = self.app.extensions["payhook.broker"]
        with self.app.extensions["payhook.store"].write() as session:
            ended = session.execute(self._mine(claim).values(state=IntentState.UNKNOWN.value, resolved_at=now,
                                                             next_check_at=None)).rowcount
            if not ended:
                return
            event = operational.payment_unresolved(
                intent_id=claim.id, checkout_request_id=claim.checkout_request_id,
                account_reference=claim.account_reference, amount_minor=claim.amount_minor,
                created_at=claim.created_at, checks=claim.checks, reason=reason[:500], at=now)
            messages = operational.stage(session, claim.merchant_id, event, about_endpoint_id=None, now=now)
            email = notices.payment_unresolved(session.get(Merchant, claim.merchant_id), event, None)
            if email is not None and (message := notices.stage(session, email)) is not None:
                messages.append(message)
        try:
            broker.enqueue_many(messages, [])
        except Exception:
            log.warning("could not enqueue %d message(s); the sweeper will", len(messages), exc_info=True)
        metrics.UNRESOLVED.inc()
        log.warning("STK Push %s unresolved after %d queries: %s", claim.checkout_request_id, claim.checks,
                    reason[:200])


def stk_result(checkout_request_id: str, merchant_request_id: str | None, result_code: Any,
               result_desc: Any, amount_minor: int | None) -> dict[str, Any]:
    """The ``stkCallback`` body Daraja's query answer stands for.

    A query carries no receipt, phone or date, only the result; a paid one gets the intent's amount.
    """
    callback: dict[str, Any] = {"MerchantRequestID": merchant_request_id or "unknown",
                                "CheckoutRequestID": checkout_request_id, "ResultCode": result_code,
                                "ResultDesc": result_desc or ""}
    if str(result_code) == "0" and amount_minor is not None:
        amount = format_amount(amount_minor, mpesa.CURRENCY)
        callback["CallbackMetadata"] = {"Item": [{"Name": "Amount", "Value": str(amount)}]}
    return {"Body": {"stkCallback": callback}}
