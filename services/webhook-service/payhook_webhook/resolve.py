"""Resolving B2C, B2B and reversal QueueTimeOuts with Daraja's Transaction Status (docs/mpesa.md#reconciliation).

A result that arrives as a QueueTimeOut is recorded as usual (status ``unknown``: the transaction may still
complete) and, in the same write, starts a *status check* (``StatusCheck``, written by ingest).
``RECONCILE_AFTER`` seconds later the reconciler asks Daraja's Transaction Status about the transaction,
named by its OriginatorConversationID, with the merchant's initiator name and security credential. Daraja
acknowledges at once and posts its answer later to the merchant's own status-result URL, where it is
recorded like any callback (``mpesa.transaction_status``) and wakes the check (``answered``). The check
then finds that answer by the ids of the acknowledgement: a final ``TransactionStatus`` becomes the
``mpesa.<kind>.resolved`` event that references the original (``details.original_event_id``), with
``data.source`` ``query``, delivered and prioritised like any event; its dedupe key names the original, so
there is one however often it is recorded. An answer that settles nothing (the query's own QueueTimeOut, a
refused query, a transaction still in progress), or none by the time the check looks again, is asked
again, backing off; Daraja unreachable, failing or rate-limiting is waited out. After
``RECONCILE_MAX_CHECKS`` queries without a final answer, or ``RECONCILE_MAX_AGE`` after the QueueTimeOut,
the check ends ``unknown``: the merchant gets ``payhook.transaction.unresolved`` and
``payhook_transactions_unresolved_total`` (and its alert) counts it. A merchant that gave Payhook no
initiator name and security credential is not followed (``skipped``).

Checks are claimed as payment intents are (``reconcile.py``): one conditional ``UPDATE`` per row moves
``next_check_at`` past a lease and counts the claim in ``checks``, which fences what follows, so two
processes never ask about one transaction at once, and the state, all in the row, survives restarts.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable

from flask import Flask, current_app
from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError

from payhook_shared import notices, operational
from payhook_shared.callbacks import mpesa
from payhook_shared.daraja.credentials import DarajaCredentials
from payhook_shared.daraja.errors import CredentialsError, DarajaAuthError, DarajaError, DarajaRejected
from payhook_shared.events import SUCCEEDED, NormalisedEvent
from payhook_shared.logs import bind
from payhook_shared.store import Event, Merchant, StatusCheck, StatusCheckState
from payhook_shared.store.models import utcnow

from . import metrics
from .errors import ProfileChanged, StoreUnavailable
from .priority_rules import classify, rules_of
from .reconcile import Policy, claim_due
from .services import daraja
from .services.merchants import callback_urls

log = logging.getLogger(__name__)

#: What Payhook's queries say in Daraja's ``Remarks`` (2 to 100 characters).
REMARKS = "Payhook QueueTimeOut follow-up"
#: The callback kinds that answer a Transaction Status query: recording one wakes the check waiting for it.
ANSWER_KINDS = frozenset({"status-result", "status-timeout"})


@dataclasses.dataclass(frozen=True)
class _Claim:
    id: str
    merchant_id: str
    event_id: str
    event_type: str
    originator_conversation_id: str
    created_at: dt.datetime
    checks: int
    queries: int
    query_originator_id: str | None
    query_conversation_id: str | None


class StatusChecks:
    """Works the due status checks; the reconciler's loop runs ``tick`` in every web process.

    ``clock`` gives the current time (``utcnow``; tests move their own).
    """

    def __init__(self, app: Flask, policy: Policy, clock: Callable[[], dt.datetime] = utcnow):
        self.app = app
        self.policy = policy
        self.clock = clock

    def tick(self) -> int:
        """Claim and work up to ``reconcile.CLAIM_BATCH`` due checks; returns how many were claimed."""
        with self.app.app_context():
            claims = self._claim()
            for claim in claims:
                with bind(merchant_id=claim.merchant_id, event_id=claim.event_id):
                    self._check(claim)
        return len(claims)

    # -- claiming ---------------------------------------------------------------------------------

    def _claim(self) -> list[_Claim]:
        return [_Claim(*row) for row in claim_due(
            self.app.extensions["payhook.store"], StatusCheck, StatusCheckState.PENDING.value, self.policy,
            self.clock(),
            (StatusCheck.id, StatusCheck.merchant_id, StatusCheck.event_id, StatusCheck.event_type,
             StatusCheck.originator_conversation_id, StatusCheck.created_at, StatusCheck.checks,
             StatusCheck.queries, StatusCheck.query_originator_id, StatusCheck.query_conversation_id))]

    def _mine(self, claim: _Claim):
        """The UPDATE of ``claim``'s check, if still pending and still this claim's (no later one took it)."""
        return update(StatusCheck).where(StatusCheck.id == claim.id,
                                         StatusCheck.state == StatusCheckState.PENDING.value,
                                         StatusCheck.checks == claim.checks)

    # -- checking ---------------------------------------------------------------------------------

    def _check(self, claim: _Claim) -> None:
        now = self.clock()
        reason = "no Transaction Status query could be made"
        if claim.query_originator_id is not None:
            answer = self._answer(claim)
            status = mpesa.status_outcome(answer) if answer is not None else None
            if status is not None:
                self._resolve(claim, answer, status, now)
                return
            reason = _unsettled(answer)
            metrics.STATUS_CHECKS.labels("unsettled" if answer is not None else "no_answer").inc()
            if claim.queries >= self.policy.max_checks:
                self._give_up(claim, now, reason)
                return
        if (now - claim.created_at).total_seconds() >= self.policy.max_age:
            self._give_up(claim, now, reason)
            return
        self._ask(claim, now)

    def _answer(self, claim: _Claim) -> Event | None:
        """The recorded answer to the claim's last query: its result, else its QueueTimeOut, else ``None``."""
        keys = mpesa.status_answer_keys(claim.query_conversation_id, claim.query_originator_id or "")
        with self.app.extensions["payhook.store"].read() as session:
            found = session.scalars(select(Event).where(Event.merchant_id == claim.merchant_id,
                                                        Event.dedupe_key.in_(keys))).all()
        return min(found, key=lambda e: keys.index(e.dedupe_key)) if found else None

    def answered(self, kind: str, merchant_id: str, event: NormalisedEvent) -> None:
        """Wake the check waiting for ``event`` if it answers a Transaction Status query, so it is looked at now.

        ``receive`` calls it for every new M-Pesa callback of ``kind``. Best effort: a check not woken is
        looked at when it is next due.
        """
        if kind not in ANSWER_KINDS:
            return
        now = utcnow()
        originator = event.provider_ids.get("OriginatorConversationID")
        try:
            with self.app.extensions["payhook.store"].write() as session:
                session.execute(update(StatusCheck).where(
                    StatusCheck.merchant_id == merchant_id, StatusCheck.query_originator_id == originator,
                    StatusCheck.state == StatusCheckState.PENDING.value, StatusCheck.next_check_at > now)
                    .values(next_check_at=now))
        except SQLAlchemyError as exc:
            log.warning("could not wake the status check of %s (%s); it is looked at when due", originator,
                        type(exc).__name__)

    def _ask(self, claim: _Claim, now: dt.datetime) -> None:
        """Ask Daraja's Transaction Status about the claim's transaction; its answer comes to the status-result URL."""
        store = self.app.extensions["payhook.store"]
        try:
            with store.read() as session:
                row = daraja.stored_credentials(session, claim.merchant_id)
                creds = DarajaCredentials.from_row(row, daraja.cipher()) if row is not None else None
        except CredentialsError as exc:
            # Keys that cannot decrypt are the operator's to fix: wait for them, as for an unreachable Daraja.
            self._wait(claim, now, "no_credentials", str(exc))
            return
        if creds is None or not (creds.initiator_name and creds.security_credential):
            self._skip(claim, now)
            return
        merchant = self.app.extensions["payhook.merchants"].get(claim.merchant_id)
        urls = callback_urls(self.app.extensions["payhook.settings"].public_base_url, merchant)
        try:
            ack = daraja.client().transaction_status(
                creds, "", urls["status-result"], urls["status-timeout"], remarks=REMARKS,
                original_conversation_id=claim.originator_conversation_id)
        except DarajaError as exc:
            self._wait(claim, now, _outcome(exc), exc.message)
            return
        query_originator = str(ack.get("OriginatorConversationID") or "")
        if not query_originator:
            self._wait(claim, now, "unavailable", "Daraja's acknowledgement names no OriginatorConversationID")
            return
        queries = claim.queries + 1
        with store.write() as session:
            session.execute(self._mine(claim).values(
                queries=queries, query_originator_id=query_originator[:100],
                query_conversation_id=str(ack.get("ConversationID") or "")[:100] or None,
                next_check_at=now + dt.timedelta(seconds=self.policy.delay(queries))))
        metrics.STATUS_CHECKS.labels("asked").inc()
        log.info("asked Daraja's Transaction Status about %s %s (query %d)", claim.event_type,
                 claim.originator_conversation_id, queries)

    def _wait(self, claim: _Claim, now: dt.datetime, outcome: str, reason: str) -> None:
        """Daraja could not be asked this time: ask again later (the age limit ends it in ``_check``)."""
        metrics.STATUS_CHECKS.labels(outcome).inc()
        delay = self.policy.delay(claim.checks)
        log.info("Transaction Status of %s %s not asked (%s: %s); trying again in %.0fs", claim.event_type,
                 claim.originator_conversation_id, outcome, reason[:200], delay)
        with self.app.extensions["payhook.store"].write() as session:
            session.execute(self._mine(claim).values(next_check_at=now + dt.timedelta(seconds=delay)))

    def _skip(self, claim: _Claim, now: dt.datetime) -> None:
        """The merchant gave no initiator name and security credential: the QueueTimeOut stays as it came."""
        with self.app.extensions["payhook.store"].write() as session:
            session.execute(self._mine(claim).values(state=StatusCheckState.SKIPPED.value, next_check_at=None,
                                                     resolved_at=now))
        metrics.STATUS_CHECKS.labels("skipped").inc()
        log.info("%s %s timed out; not followed: the merchant's Daraja credentials have no initiator name and "
                 "security credential", claim.event_type, claim.originator_conversation_id)

    def _resolve(self, claim: _Claim, answer: Event, status: str, now: dt.datetime) -> None:
        """Record the ``mpesa.<kind>.resolved`` event from ``answer`` and settle the check with it."""
        store = self.app.extensions["payhook.store"]
        with store.read() as session:
            original = session.get(Event, claim.event_id)
        if original is None:
            self._give_up(claim, now, "the QueueTimeOut event is no longer stored")
            return
        event = mpesa.resolution(original, original.id, answer, answer.id, status, claim.queries)
        try:
            event_id, duplicate = _record(claim.merchant_id, event, answer.raw_payload.encode())
        except (SQLAlchemyError, StoreUnavailable) as exc:
            # The claim's lease brings it back, and the answer is still there then.
            log.warning("could not record the resolution of %s (%s); its lease brings it back", claim.event_id,
                        type(exc).__name__)
            metrics.STATUS_CHECKS.labels("store_error").inc()
            return
        with store.write() as session:
            session.execute(self._mine(claim).values(state=StatusCheckState.RESOLVED.value, status=status,
                                                     resolution_event_id=event_id, resolved_at=now,
                                                     next_check_at=None))
        metrics.STATUS_CHECKS.labels("duplicate" if duplicate else "resolved").inc()
        log.info("resolved %s %s by Transaction Status: %s (%s)", claim.event_type, claim.originator_conversation_id,
                 status, event_id)

    def _give_up(self, claim: _Claim, now: dt.datetime, reason: str) -> None:
        """End the check ``unknown`` and tell the merchant (``payhook.transaction.unresolved``), in one transaction."""
        broker = self.app.extensions["payhook.broker"]
        with self.app.extensions["payhook.store"].write() as session:
            ended = session.execute(self._mine(claim).values(state=StatusCheckState.UNKNOWN.value, resolved_at=now,
                                                             next_check_at=None)).rowcount
            if not ended:
                return
            timed_out = session.scalar(select(Event.received_at).where(Event.id == claim.event_id))
            event = operational.transaction_unresolved(
                check_id=claim.id, event_id=claim.event_id, event_type=claim.event_type,
                originator_conversation_id=claim.originator_conversation_id,
                timed_out_at=timed_out or claim.created_at, queries=claim.queries, reason=reason[:500], at=now)
            messages = operational.stage(session, claim.merchant_id, event, about_endpoint_id=None, now=now)
            email = notices.transaction_unresolved(session.get(Merchant, claim.merchant_id), event, None)
            if email is not None and (message := notices.stage(session, email)) is not None:
                messages.append(message)
        try:
            broker.enqueue_many(messages, [])
        except Exception:
            log.warning("could not enqueue %d message(s); the sweeper will", len(messages), exc_info=True)
        metrics.TRANSACTIONS_UNRESOLVED.labels(claim.event_type).inc()
        log.warning("%s %s unresolved after %d Transaction Status queries: %s", claim.event_type,
                    claim.originator_conversation_id, claim.queries, reason[:200])


def _outcome(exc: DarajaError) -> str:
    return "rejected" if isinstance(exc, (DarajaRejected, DarajaAuthError)) else "unavailable"


def _unsettled(answer: Event | None) -> str:
    """Why the last query settled nothing, for the log and ``payhook.transaction.unresolved``'s ``reason``."""
    if answer is None:
        return "no Transaction Status result came"
    if answer.status != SUCCEEDED:
        return f"Transaction Status answered {answer.result_code}: {answer.result_desc or ''}".strip()
    return f"Transaction Status says {(answer.details or {}).get('TransactionStatus')!r}"


def _record(merchant_id: str, event: NormalisedEvent, raw: bytes) -> tuple[str, bool]:
    """Record ``event`` for the merchant as ingest records a callback; its id and whether it was there already."""
    directory = current_app.extensions["payhook.merchants"]
    recorder = current_app.extensions["payhook.recorder"]
    merchant = directory.get(merchant_id)
    try:
        recorded = recorder.record(merchant, event, raw, classify(event, rules=rules_of(merchant)))
    except ProfileChanged:
        # The cached merchant was stale and nothing was written: read it again and record once more.
        directory.forget(merchant_id)
        merchant = directory.get(merchant_id)
        recorded = recorder.record(merchant, event, raw, classify(event, rules=rules_of(merchant)))
    return recorded.event_id, recorded.duplicate
