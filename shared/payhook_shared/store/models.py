"""Tables of the store.

Deliveries and emails are *jobs*: the row is the record of work to do, and a
Redis message only carries the row's id. ``queue_name`` and ``message_id``
name the live Redis message, so a sweeper can tell a job whose message was
lost (Redis flushed, worker killed) and enqueue it again.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import (
    JSON, BigInteger, Boolean, DateTime, ForeignKey, Index, Integer, LargeBinary, SmallInteger, String, Text,
    TypeDecorator, UniqueConstraint, func, text, true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from ..events import selects


def utcnow() -> dt.datetime:
    """The current time, timezone-aware in UTC."""
    return dt.datetime.now(dt.timezone.utc)


class UTCDateTime(TypeDecorator):
    """A timestamp stored in UTC and always read back timezone-aware.

    SQLite keeps no zone, so naive values read from it are UTC by contract.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(dt.timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


# Integer on SQLite so the column aliases ROWID and autoincrements.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    type_annotation_map = {dt.datetime: UTCDateTime(), dict[str, Any]: JSON(), list[str]: JSON()}


class JobState(str, enum.Enum):
    """Life of a delivery or an email."""

    PENDING = "pending"      # waiting for next_attempt_at
    SENDING = "sending"      # claimed by a worker until lease_until
    DONE = "done"            # delivered / sent
    DEAD = "dead"            # gave up; kept for inspection and retry
    SUPPRESSED = "suppressed"  # an email not sent: its merchant's cap on customer emails was reached


class Merchant(Base):
    __tablename__ = "merchants"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    notification_email: Mapped[str | None] = mapped_column(String(320))
    callback_token: Mapped[str] = mapped_column(String(64))
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # A disabled merchant's API keys are refused; its callbacks are still recorded.
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # Bumped by PostgreSQL triggers when anything ingest reads of the merchant or its endpoints changes.
    config_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    endpoints: Mapped[list[Endpoint]] = relationship(back_populates="merchant", order_by="Endpoint.id")


class ApiKey(Base):
    """An API key, stored as its SHA-256 only. No merchant means an admin key."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[str | None] = mapped_column(ForeignKey("merchants.id"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(200), default="")
    # The key's last four characters, to tell keys apart in a list; far too few to use.
    hint: Mapped[str] = mapped_column(String(8), default="", server_default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # Refreshed at most once a minute, so using a key costs no write per request.
    last_used_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]


class Endpoint(Base):
    __tablename__ = "endpoints"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str] = mapped_column(String(500), default="")
    secret: Mapped[str] = mapped_column(String(100))
    previous_secret: Mapped[str | None] = mapped_column(String(100))
    previous_secret_expires_at: Mapped[dt.datetime | None]
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # None: every event type; otherwise the list of types sent to this endpoint.
    event_types: Mapped[list[str] | None] = mapped_column(JSON)
    # Health: failures in a row, since when it has failed without a success, and the circuit.
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    failing_since: Mapped[dt.datetime | None]
    circuit_open_until: Mapped[dt.datetime | None]
    disabled_at: Mapped[dt.datetime | None]
    disabled_reason: Mapped[str | None] = mapped_column(String(200))
    # Caps the delivery-worker enforces across all its processes; None means unlimited.
    rate_limit_per_second: Mapped[int | None] = mapped_column(Integer)
    max_in_flight: Mapped[int | None] = mapped_column(Integer)
    # Sent with every webhook to the endpoint, after Payhook's own (see payhook_shared.endpoint_headers).
    custom_headers: Mapped[dict[str, str] | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    merchant: Mapped[Merchant] = relationship(back_populates="endpoints")

    def accepts(self, event_type: str) -> bool:
        """Whether this endpoint's filter lets ``event_type`` through."""
        return self.enabled and (not self.event_types or selects(self.event_types, event_type))

    def signing_secrets(self, now: dt.datetime | None = None) -> list[str]:
        """The secrets that sign now: the current one, plus the previous one in its grace window."""
        now = now or utcnow()
        active = [self.secret]
        if self.previous_secret and self.previous_secret_expires_at and self.previous_secret_expires_at > now:
            active.append(self.previous_secret)
        return active


class Source(Base):
    """An inbound gateway source: where a provider posts, and the secrets its signatures are checked with.

    ``secret`` verifies now; ``previous_secret`` too until ``previous_secret_expires_at``,
    so a provider (or the merchant) can switch secrets without one refused callback.
    """

    __tablename__ = "sources"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"), index=True)
    provider: Mapped[str] = mapped_column(String(30))
    description: Mapped[str] = mapped_column(String(500), default="")
    callback_token: Mapped[str] = mapped_column(String(64))
    secret: Mapped[str] = mapped_column(String(500))
    previous_secret: Mapped[str | None] = mapped_column(String(500))
    previous_secret_expires_at: Mapped[dt.datetime | None]
    # Provider settings: the generic ``hmac`` scheme's header, algorithm, encoding, …; IP allowlist overrides.
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    ip_allowlist_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    merchant: Mapped[Merchant] = relationship()

    def verifying_secrets(self, now: dt.datetime | None = None) -> list[str]:
        """The secrets a signature may be made with now: the current one, plus the previous one in its window."""
        now = now or utcnow()
        active = [self.secret]
        if self.previous_secret and self.previous_secret_expires_at and self.previous_secret_expires_at > now:
            active.append(self.previous_secret)
        return active


class Event(Base):
    """One payment callback or event, normalised, with its raw payload verbatim."""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("merchant_id", "dedupe_key", name="uq_events_merchant_dedupe"),
        Index("ix_events_merchant_id_id", "merchant_id", "id"),
        Index("ix_events_received_at", "received_at"),
        # The console finds a payment by its receipt or reference.
        Index("ix_events_receipt", "receipt"),
        Index("ix_events_reference", "reference"),
        # The events API finds an event by the provider's own key (see payhook_shared.provider_keys).
        Index("ix_events_provider_key", "provider_key"),
        # Lists of one type or one status, newest first, a page at a time (migration 0014e).
        Index("ix_events_type_id", "type", "id"),
        Index("ix_events_status_id", "status", "id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    provider: Mapped[str] = mapped_column(String(40))
    type: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20))
    amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    receipt: Mapped[str | None] = mapped_column(String(100))
    reference: Mapped[str | None] = mapped_column(String(200))
    provider_ids: Mapped[dict[str, Any]] = mapped_column(default=dict)
    phone: Mapped[str | None] = mapped_column(String(100))
    result_code: Mapped[str | None] = mapped_column(String(40))
    result_desc: Mapped[str | None] = mapped_column(Text)
    occurred_at: Mapped[dt.datetime | None]
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    priority: Mapped[int] = mapped_column(SmallInteger)
    dedupe_key: Mapped[str] = mapped_column(String(300))
    customer_email: Mapped[str | None] = mapped_column(String(320))
    # Provider fields that have no column of their own (metadata items, parameters).
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    raw_payload: Mapped[str] = mapped_column(Text)
    # The provider's own key for the event (CheckoutRequestID, TransID, ConversationID, a gateway's event id).
    provider_key: Mapped[str | None] = mapped_column(String(200))
    # How Payhook learned of it (``events.SOURCES``: callback, query, payhook): ``data.source`` of its webhook.
    # Nullable so that a process older than the column can still record during an upgrade (migration 0015s).
    source: Mapped[str | None] = mapped_column(String(16), server_default="callback")

    deliveries: Mapped[list[Delivery]] = relationship(back_populates="event", order_by="Delivery.id")


# Phone-suffix search on PostgreSQL: a suffix of the number is a prefix of its reverse, which a
# B-tree answers (text_pattern_ops: prefix LIKE whatever the collation). SQLite has no reverse()
# and scans; its stores are small.
Index("ix_events_phone_reversed", func.reverse(Event.phone).label("phone_reversed"),
      postgresql_ops={"phone_reversed": "text_pattern_ops"}).ddl_if(dialect="postgresql")

_DEAD_ONLY = text(f"state = '{JobState.DEAD.value}'")


class _Job:
    state: Mapped[str] = mapped_column(String(16), default=JobState.PENDING.value)
    priority: Mapped[int] = mapped_column(SmallInteger)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    lease_until: Mapped[dt.datetime | None]
    queue_name: Mapped[str | None] = mapped_column(String(64))
    message_id: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Delivery(_Job, Base):
    """One event to one endpoint, with every attempt made."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "endpoint_id", name="uq_deliveries_event_endpoint"),
        Index("ix_deliveries_due", "state", "next_attempt_at"),
        Index("ix_deliveries_endpoint_id_id", "endpoint_id", "id"),
        Index("ix_deliveries_state_dead_at", "state", "dead_at"),
        # The console's overview counts deliveries of the last 24 hours.
        Index("ix_deliveries_delivered_at", "delivered_at"),
        # Dead letters, newest first, for everyone and per merchant: partial, so a few percent of the rows.
        Index("ix_deliveries_dead_id", "id", postgresql_where=_DEAD_ONLY, sqlite_where=_DEAD_ONLY),
        Index("ix_deliveries_dead_merchant_id_id", "merchant_id", "id", postgresql_where=_DEAD_ONLY,
              sqlite_where=_DEAD_ONLY),
        # Events with a dead delivery, newest first (GET /v1/events?delivery=dead), for everyone and per merchant.
        Index("ix_deliveries_dead_event_id", "event_id", postgresql_where=_DEAD_ONLY, sqlite_where=_DEAD_ONLY),
        Index("ix_deliveries_dead_merchant_id_event_id", "merchant_id", "event_id", postgresql_where=_DEAD_ONLY,
              sqlite_where=_DEAD_ONLY),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id"))
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("endpoints.id"))
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"), index=True)
    last_status: Mapped[int | None] = mapped_column(SmallInteger)
    last_category: Mapped[str | None] = mapped_column(String(20))
    # Attempts made before the current retry round; an operator's retry starts a fresh schedule.
    round_start: Mapped[int] = mapped_column(Integer, default=0)
    dead_at: Mapped[dt.datetime | None]
    delivered_at: Mapped[dt.datetime | None]

    event: Mapped[Event] = relationship(back_populates="deliveries")
    endpoint: Mapped[Endpoint] = relationship()
    attempt_log: Mapped[list[DeliveryAttempt]] = relationship(order_by="DeliveryAttempt.id")


_FAILED_ONLY = text("category <> 'success'")


class DeliveryAttempt(Base):
    __tablename__ = "delivery_attempts"
    __table_args__ = (
        # An endpoint's recent attempts (newest first, keyset by time then id) and its stats over a window.
        Index("ix_delivery_attempts_endpoint_started", "endpoint_id", "started_at", "id"),
        # Its failed attempts, a few percent of them: partial, so "recent failures" never reads the successes.
        Index("ix_delivery_attempts_endpoint_failed", "endpoint_id", "started_at", "id",
              postgresql_where=_FAILED_ONLY, sqlite_where=_FAILED_ONLY),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("deliveries.id"), index=True)
    # Copied from the delivery, so an endpoint's attempts are read without a join through every delivery.
    endpoint_id: Mapped[str | None] = mapped_column(String(40))
    number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[dt.datetime]
    duration_ms: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(SmallInteger)
    category: Mapped[str] = mapped_column(String(20))
    error: Mapped[str | None] = mapped_column(Text)
    response_snippet: Mapped[str | None] = mapped_column(Text)


class Replay(_Job, Base):
    """A replay: every matching event of a range delivered to one endpoint, a batch per message.

    The row is the job (claimed like a delivery), and its progress: ``cursor``
    is the last event id handled, written in the same transaction as that
    batch's deliveries, so a worker that dies mid-batch leaves the batch undone
    and the next claim starts it again. ``state`` is ``done`` once every event
    of the range is handled.
    """

    __tablename__ = "replays"
    __table_args__ = (Index("ix_replays_endpoint_id_id", "endpoint_id", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("endpoints.id"))
    since: Mapped[dt.datetime]
    until: Mapped[dt.datetime | None]
    types: Mapped[list[str] | None] = mapped_column(JSON)
    only_failed: Mapped[bool] = mapped_column(Boolean, default=False)
    # The key that asked for it (an API key or a sign-in link), for the audit trail.
    requested_by: Mapped[str] = mapped_column(String(40), default="")
    cursor: Mapped[str | None] = mapped_column(String(40))
    # Events looked at, deliveries created, dead deliveries revived, events skipped (delivered or not wanted).
    scanned: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[int] = mapped_column(Integer, default=0)
    revived: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    finished_at: Mapped[dt.datetime | None]


class Email(_Job, Base):
    """One outbound email; ``dedupe_key`` stops the same notice being queued twice."""

    __tablename__ = "emails"
    __table_args__ = (
        Index("ix_emails_due", "state", "next_attempt_at"),
        Index("ix_emails_event_id", "event_id"),
        # The mail-worker counts a merchant's receipts sent in the last hour against its cap.
        Index("ix_emails_merchant_sent", "merchant_id", "template", "sent_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[str | None] = mapped_column(ForeignKey("merchants.id"), index=True)
    event_id: Mapped[str | None] = mapped_column(ForeignKey("events.id"))
    template: Mapped[str] = mapped_column(String(60))
    recipients: Mapped[list[str]] = mapped_column(JSON)
    context: Mapped[dict[str, Any]] = mapped_column(default=dict)
    dedupe_key: Mapped[str] = mapped_column(String(300), unique=True)
    sent_at: Mapped[dt.datetime | None]


class AuditEntry(Base):
    """One operator or merchant action taken in the console: who (API key), what, on which row, when."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_at", "at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    api_key_id: Mapped[str] = mapped_column(String(40))
    # The merchant whose key acted; None for an admin key.
    merchant_id: Mapped[str | None] = mapped_column(String(40))
    action: Mapped[str] = mapped_column(String(40))
    target: Mapped[str] = mapped_column(String(200), default="")
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class SignInLink(Base):
    """A single-use console sign-in link, emailed on request; only its token's SHA-256 is stored.

    The webhook-service records the link without a token; the mail-worker mints
    the token when it sends the email (``payhook_shared.sign_in``), so the token
    exists only in that email.

    ``merchant_id`` names the merchant the link signs in to; None signs in an
    operator. ``used_at`` is set by the one request that consumes the link.
    """

    __tablename__ = "sign_in_links"
    __table_args__ = (Index("ix_sign_in_links_expires_at", "expires_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    # None until the mail-worker mints the token, as it sends the email.
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    email: Mapped[str] = mapped_column(String(320))
    merchant_id: Mapped[str | None] = mapped_column(ForeignKey("merchants.id"))
    requested_from: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None]


class ConsoleSession(Base):
    """A console session; the cookie holds a random token and the store only its SHA-256.

    Opened by an API key (``api_key_id``) or an emailed link (``sign_in_link_id``
    and its ``email``; no foreign key, as retention deletes spent links). Every
    console request needs the row: sign-out deletes it, revoking the key deletes
    every session the key opened, and it is refused after ``expires_at``.
    """

    __tablename__ = "console_sessions"
    __table_args__ = (Index("ix_console_sessions_expires_at", "expires_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    api_key_id: Mapped[str | None] = mapped_column(ForeignKey("api_keys.id"), index=True)
    sign_in_link_id: Mapped[str | None] = mapped_column(String(40))
    email: Mapped[str | None] = mapped_column(String(320))
    # The merchant the session sees; None for an operator (admin key or operator link).
    merchant_id: Mapped[str | None] = mapped_column(String(40))
    address: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]


class QuarantineState(str, enum.Enum):
    """Life of a quarantined callback."""

    QUARANTINED = "quarantined"  # kept, waiting for its cause to be fixed and a reprocess
    RESOLVED = "resolved"        # reprocessed into an event (``event_id``)


class QuarantinedCallback(Base):
    """A provider callback that came on a valid callback URL but failed validation, kept to be reprocessed.

    Safaricom does not retry a callback it got a 400 for: this row is the only copy. ``body`` is the
    raw bytes as received (JSON or not, at most the body limit); ``headers`` only those that help to
    understand it, never a signature or secret. ``event_id`` names the event a reprocess recorded (or
    found already recorded); it is no foreign key, so retention may purge the event first.
    """

    __tablename__ = "quarantined_callbacks"
    __table_args__ = (
        Index("ix_quarantined_callbacks_merchant_id_id", "merchant_id", "id"),
        Index("ix_quarantined_callbacks_state_id", "state", "id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    # "mpesa" with the callback kind (stk, b2c-result, ...), or a gateway source's provider with "webhook".
    provider: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(40))
    source_id: Mapped[str | None] = mapped_column(String(40))
    # The gateway's delivery id its verified signature carried, for the event's dedupe key.
    message_id: Mapped[str | None] = mapped_column(Text)
    content_type: Mapped[str] = mapped_column(String(200), default="")
    headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    # Why it failed: "schema", "json" or "content_type"; the message, and marshmallow's messages by field.
    reason: Mapped[str] = mapped_column(String(40))
    error: Mapped[str] = mapped_column(Text)
    error_fields: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), default=QuarantineState.QUARANTINED.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_attempt_at: Mapped[dt.datetime | None]
    resolved_at: Mapped[dt.datetime | None]
    event_id: Mapped[str | None] = mapped_column(String(40))


class DarajaCredential(Base):
    """A merchant's Daraja app and shortcode; the secret fields are Fernet ciphertext (``payhook_shared.daraja``).

    ``version`` grows with every change: the access token cached in Redis is keyed by it, so new
    credentials never use a token the old ones fetched. Nothing here is ever shown back in the clear.
    """

    __tablename__ = "daraja_credentials"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"), unique=True)
    environment: Mapped[str] = mapped_column(String(16))
    shortcode: Mapped[str] = mapped_column(String(20))
    consumer_key_enc: Mapped[str] = mapped_column(Text)
    consumer_secret_enc: Mapped[str] = mapped_column(Text)
    passkey_enc: Mapped[str | None] = mapped_column(Text)
    initiator_name_enc: Mapped[str | None] = mapped_column(Text)
    security_credential_enc: Mapped[str | None] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class IntentState(str, enum.Enum):
    """Life of a payment intent (an STK Push awaiting its callback)."""

    PENDING = "pending"      # pushed; no callback yet
    COMPLETED = "completed"  # the callback said paid (ResultCode 0)
    FAILED = "failed"        # the callback said not paid (cancelled, timed out, insufficient funds, …)
    UNKNOWN = "unknown"      # reconciliation could not tell


class PaymentIntent(Base):
    """An STK Push Payhook made (``source`` ``api``) or a merchant registered (``registered``), until its callback.

    ``amount_minor`` is in cents (``payhook_shared.money``); ``phone`` is kept masked. The STK
    callback for ``checkout_request_id`` settles it in the same transaction that records the event
    (``event_id``, ``result_code``). ``next_check_at``, ``checks`` and ``last_checked_at`` are the
    reconciler's: when to ask Daraja about an intent whose callback never came.
    """

    __tablename__ = "payment_intents"
    __table_args__ = (
        UniqueConstraint("merchant_id", "idempotency_key", name="uq_payment_intents_merchant_idempotency"),
        Index("ix_payment_intents_merchant_id_id", "merchant_id", "id"),
        Index("ix_payment_intents_state_next_check_at", "state", "next_check_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    checkout_request_id: Mapped[str] = mapped_column(String(100), unique=True)
    merchant_request_id: Mapped[str | None] = mapped_column(String(100))
    amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3), default="KES")
    phone: Mapped[str | None] = mapped_column(String(20))
    account_reference: Mapped[str | None] = mapped_column(String(40))
    description: Mapped[str | None] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16), default=IntentState.PENDING.value)
    source: Mapped[str] = mapped_column(String(16))
    idempotency_key: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    next_check_at: Mapped[dt.datetime | None]
    checks: Mapped[int] = mapped_column(Integer, default=0)
    last_checked_at: Mapped[dt.datetime | None]
    resolved_at: Mapped[dt.datetime | None]
    result_code: Mapped[str | None] = mapped_column(String(40))
    event_id: Mapped[str | None] = mapped_column(String(40))


class StatusCheckState(str, enum.Enum):
    """Life of a Transaction Status follow-up of a QueueTimeOut."""

    PENDING = "pending"    # the transaction's outcome is not known yet
    RESOLVED = "resolved"  # a Transaction Status result settled it: ``status``, ``resolution_event_id``
    UNKNOWN = "unknown"    # no final answer in time (payhook.transaction.unresolved sent)
    SKIPPED = "skipped"    # the merchant gave Payhook no initiator name and security credential to ask with


class StatusCheck(Base):
    """A B2C, B2B or reversal whose result came as a QueueTimeOut (``unknown``), followed with Transaction Status.

    Ingest records it with the QueueTimeOut event (``event_id``), in the same write. The reconciler then
    asks Daraja about the transaction (by ``originator_conversation_id``), the answer arriving on the
    merchant's status-result URL, until one settles it (``status``, and the ``mpesa.<kind>.resolved`` event
    ``resolution_event_id``). ``next_check_at``, ``checks`` and ``last_checked_at`` are the reconciler's
    claims, as on payment intents; ``queries`` counts the queries Daraja acknowledged, and
    ``query_originator_id`` and ``query_conversation_id`` name the last one, whose answer it looks for.
    """

    __tablename__ = "status_checks"
    __table_args__ = (
        Index("ix_status_checks_state_next_check_at", "state", "next_check_at"),
        # A status result arriving finds the check waiting for it.
        Index("ix_status_checks_merchant_query", "merchant_id", "query_originator_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    event_id: Mapped[str] = mapped_column(String(40), unique=True)
    event_type: Mapped[str] = mapped_column(String(100))
    originator_conversation_id: Mapped[str] = mapped_column(String(100))
    conversation_id: Mapped[str | None] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(16), default=StatusCheckState.PENDING.value)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    next_check_at: Mapped[dt.datetime | None]
    checks: Mapped[int] = mapped_column(Integer, default=0)
    last_checked_at: Mapped[dt.datetime | None]
    queries: Mapped[int] = mapped_column(Integer, default=0)
    query_originator_id: Mapped[str | None] = mapped_column(String(100))
    query_conversation_id: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str | None] = mapped_column(String(20))
    resolution_event_id: Mapped[str | None] = mapped_column(String(40))
    resolved_at: Mapped[dt.datetime | None]
