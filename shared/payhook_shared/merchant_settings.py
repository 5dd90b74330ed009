"""A merchant's settings: one schema for ``Merchant.settings``, and the readers that apply it.

The document; every section is optional, and a missing one means the defaults::

    {"priority_rules": [{"event_type": "mpesa.stk_push", "status": "failed", "priority": "normal"}],
     "retry": {"profile": "aggressive"},
     "notifications": {"payment_received": {"enabled": true, "recipients": ["books@shop.test"]},
                       "payment_failed": {"enabled": true},
                       "receipt": {"enabled": true, "fallback_email": "buyer@demo.test"}},
     "retention": {"raw_payload_days": 30, "events_days": 365},
     "c2b_validation": {"mode": "forward", "forward_url": "https://shop.test/validate", "fallback": "reject"}}

``SettingsSchema`` validates what the API and the console save, including a
``forward_url``'s host against the SSRF guard. The services read settings back
through the same schemas (``priority_rules``, ``retry_schedule``, ``notice`` and
``retention``): a value stored some other way that the schema refuses counts as
unset, so a bad setting never costs an event, a delivery or an email. The
webhook-service applies ``c2b_validation`` itself, with its own fallback for
settings it cannot use.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from . import money, ssrf
from .addresses import EmailAddress
from .errors import UnsafeURL
from .events import STATUSES
from .priority import Priority

log = logging.getLogger(__name__)

# Notices a merchant can turn on or off, and whether each is on when the merchant has said nothing.
RECEIPT = "receipt"
PAYMENT_RECEIVED = "payment_received"
PAYMENT_FAILED = "payment_failed"
ENDPOINT_FAILING = "endpoint_failing"
ENDPOINT_DISABLED = "endpoint_disabled"
PAYMENT_UNRESOLVED = "payment_unresolved"
TRANSACTION_UNRESOLVED = "transaction_unresolved"
NOTICE_DEFAULTS = {
    RECEIPT: True,
    PAYMENT_RECEIVED: True,
    PAYMENT_FAILED: False,
    ENDPOINT_FAILING: True,
    ENDPOINT_DISABLED: True,
    PAYMENT_UNRESOLVED: True,
    TRANSACTION_UNRESOLVED: True,
}
MAX_RECIPIENTS = 10

#: Retry schedules a merchant can choose: seconds before each retry after the first, immediate attempt.
#: ``standard`` is the delivery-worker's ``RETRY_SCHEDULE``, so an installation can tune it.
RETRY_PROFILES: dict[str, tuple[float, ...] | None] = {
    "standard": None,
    # Seventeen retries, dense at first, over the same ~27 h as the standard schedule.
    "aggressive": (5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 3600, 7200, 7200, 14400, 14400, 21600, 21600),
    # Six retries spread over ~41 h: for endpoints that rate-limit or go down for maintenance.
    "gentle": (60, 900, 3600, 14400, 43200, 86400),
    # Three retries within 15 s: demos and tests.
    "fast": (2, 4, 8),
}
MAX_SCHEDULE_STEPS = 30
MAX_RETRY_DELAY = 7 * 24 * 3600

#: Bounds for a merchant's own retention periods, in days.
MIN_RETENTION_DAYS = 1
MAX_RETENTION_DAYS = 730

MAX_PRIORITY_RULES = 50
SECTIONS = ("priority_rules", "retry", "notifications", "retention", "c2b_validation")

#: C2B validation: how each request is decided, and what applies when that cannot be done.
C2B_MODES = ("accept_all", "rules", "forward")
C2B_FALLBACKS = ("accept", "reject")
C2B_CURRENCY = "KES"
DEFAULT_FORWARD_TIMEOUT = 3.0
# Safaricom waits about 8 s; leave room for recording the request and answering.
MAX_FORWARD_TIMEOUT = 6.0
MAX_PATTERN_LENGTH = 500
MAX_SHORTCODES = 100
MAX_URL_LENGTH = 2048


class PriorityLabel(fields.Field):
    """A priority given as ``"urgent"``/``"high"``/``"normal"``/``"low"`` (or 0–3); loads as that label."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ValidationError("must be one of urgent, high, normal, low")
        try:
            return Priority.parse(value).label
        except ValueError:
            raise ValidationError("must be one of urgent, high, normal, low") from None

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else Priority.parse(value).label


class StrictBoolean(fields.Boolean):
    """``true`` or ``false`` only: a stored ``"no"`` must not read as a choice."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise ValidationError("must be true or false")
        return value


class PriorityRuleSchema(Schema):
    """One priority override; every condition given must hold, and a rule with none matches every event."""

    event_type = fields.String(validate=validate.Length(1, 100))
    status = fields.String(validate=validate.OneOf(STATUSES))
    min_amount_minor = fields.Integer(strict=True, validate=validate.Range(min=0))
    priority = PriorityLabel(required=True)


class RetrySchema(Schema):
    """A named retry profile, or an explicit schedule (seconds before each retry), which wins over it."""

    profile = fields.String(validate=validate.OneOf(list(RETRY_PROFILES)))
    schedule = fields.List(fields.Float(validate=validate.Range(0, MAX_RETRY_DELAY)),
                           validate=validate.Length(max=MAX_SCHEDULE_STEPS))


class NoticeSchema(Schema):
    """Whether a merchant notice is sent, and to whom (default: the merchant's notification email)."""

    enabled = StrictBoolean()
    recipients = fields.List(EmailAddress(), validate=validate.Length(1, MAX_RECIPIENTS))


class ReceiptNoticeSchema(Schema):
    """Whether buyers get receipts; ``fallback_email`` (demos) receives those of payments naming no buyer."""

    enabled = StrictBoolean()
    fallback_email = EmailAddress()


class NotificationsSchema(Schema):
    """One preference per kind of notice."""

    payment_received = fields.Nested(NoticeSchema)
    payment_failed = fields.Nested(NoticeSchema)
    receipt = fields.Nested(ReceiptNoticeSchema)
    endpoint_failing = fields.Nested(NoticeSchema)
    endpoint_disabled = fields.Nested(NoticeSchema)
    payment_unresolved = fields.Nested(NoticeSchema)
    transaction_unresolved = fields.Nested(NoticeSchema)


class RetentionSchema(Schema):
    """The merchant's own retention periods, in days; a missing one is the installation's default."""

    raw_payload_days = fields.Integer(strict=True, validate=validate.Range(MIN_RETENTION_DAYS, MAX_RETENTION_DAYS))
    events_days = fields.Integer(strict=True, validate=validate.Range(MIN_RETENTION_DAYS, MAX_RETENTION_DAYS))

    @validates_schema
    def _raw_within_events(self, data: dict[str, Any], **kwargs: Any) -> None:
        raw, events = data.get("raw_payload_days"), data.get("events_days")
        if raw is not None and events is not None and raw > events:
            raise ValidationError("must not exceed events_days: a deleted event takes its raw payload with it",
                                  "raw_payload_days")


class KesAmount(fields.Field):
    """An amount in KES (``"10"``, ``150000``, ``"99.50"``); loads as its exact text, ``"10.00"``."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if not isinstance(value, (str, int, float)):
            raise ValidationError("must be an amount in KES, such as 10 or 99.50")
        try:
            return str(money.format_amount(money.to_minor(value, C2B_CURRENCY), C2B_CURRENCY))
        except money.AmountError as exc:
            raise ValidationError(f"must be an amount in KES: {exc}") from None


class Seconds(fields.Float):
    """A number of seconds: ``true`` is not one."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        if isinstance(value, bool):
            raise ValidationError("must be a number of seconds")
        return super()._deserialize(value, attr, data, **kwargs)


class Shortcode(fields.String):
    """A paybill or till number, given as digits or a number; loads as its digits."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        text = super()._deserialize(value, attr, data, **kwargs)
        if not re.fullmatch(r"[0-9]{5,10}", text):
            raise ValidationError("must be a shortcode of 5 to 10 digits")
        return text


def _regex(text: str) -> None:
    try:
        re.compile(text)
    except re.error as exc:
        raise ValidationError(f"is not a valid regular expression: {exc}") from None


def _forward_url(url: str) -> None:
    """The URL's form; where its host leads is checked by ``SettingsSchema`` against the allowlist."""
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise ValidationError("must not contain whitespace or control characters")
    try:
        ssrf.split_url(url)
    except UnsafeURL:
        raise ValidationError("must be an absolute http(s) URL, such as https://shop.example/validate") from None
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        raise ValidationError("must not contain credentials")


class C2BValidationSchema(Schema):
    """How C2B validation requests are decided: accept all, by rules, or by the merchant's own URL."""

    mode = fields.String(validate=validate.OneOf(C2B_MODES))
    min_amount = KesAmount()
    max_amount = KesAmount()
    account_pattern = fields.String(validate=[validate.Length(1, MAX_PATTERN_LENGTH), _regex])
    shortcodes = fields.List(Shortcode(), validate=validate.Length(1, MAX_SHORTCODES))
    require_name = StrictBoolean()
    forward_url = fields.String(validate=[validate.Length(max=MAX_URL_LENGTH), _forward_url])
    forward_timeout = Seconds(validate=validate.Range(min=0, max=MAX_FORWARD_TIMEOUT, min_inclusive=False))
    fallback = fields.String(validate=validate.OneOf(C2B_FALLBACKS))

    @validates_schema
    def _consistent(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("mode") == "forward" and not data.get("forward_url"):
            raise ValidationError("is required in mode forward", "forward_url")
        low, high = data.get("min_amount"), data.get("max_amount")
        if low is not None and high is not None and money.to_minor(low, C2B_CURRENCY) > money.to_minor(
                high, C2B_CURRENCY):
            raise ValidationError("must not exceed max_amount", "min_amount")


class SettingsSchema(Schema):
    """The whole document. For a change, each section given replaces the stored one; ``null`` removes it.

    ``allow`` lists the non-public networks a ``c2b_validation.forward_url`` may lead
    to (the service's ``ENDPOINT_ALLOWLIST``); any other private or loopback host is refused.
    """

    priority_rules = fields.List(fields.Nested(PriorityRuleSchema), allow_none=True,
                                 validate=validate.Length(max=MAX_PRIORITY_RULES))
    retry = fields.Nested(RetrySchema, allow_none=True)
    notifications = fields.Nested(NotificationsSchema, allow_none=True)
    retention = fields.Nested(RetentionSchema, allow_none=True)
    c2b_validation = fields.Nested(C2BValidationSchema, allow_none=True)

    def __init__(self, *, allow: Iterable[str | ssrf.Network] = (), **kwargs: Any):
        super().__init__(**kwargs)
        self.allow = tuple(allow)

    @validates_schema
    def _forward_url_is_safe(self, data: dict[str, Any], **kwargs: Any) -> None:
        url = (data.get("c2b_validation") or {}).get("forward_url")
        if not url:
            return
        try:
            # A host without DNS yet may be set; every forward checks again after resolving.
            ssrf.check_url(url, self.allow, unresolvable_ok=True)
        except UnsafeURL as exc:
            raise ValidationError({"forward_url": [str(exc)]}, "c2b_validation") from None


@functools.cache
def _schema(cls: type[Schema]) -> Schema:
    # One instance per schema: loading keeps no state on it, and building one per callback costs more than the load.
    return cls()


def _lenient(schema: Schema, data: Any) -> dict[str, Any]:
    """``data`` loaded by ``schema``, leaving out each field the schema refuses."""
    if not isinstance(data, Mapping) or not data:
        return {}
    data = dict(data)
    while True:
        try:
            return schema.load(data)
        except ValidationError as exc:
            refused = set(exc.messages) & set(data) if isinstance(exc.messages, dict) else set()
            if not refused:
                return {}
            log.warning("ignoring stored merchant settings the schema refuses: %s", sorted(refused))
            data = {k: v for k, v in data.items() if k not in refused}


def _section(settings: Mapping[str, Any] | None, name: str) -> Any:
    return (settings or {}).get(name) if isinstance(settings, Mapping) else None


def priority_rules(settings: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The merchant's valid priority rules, in order, with ``priority`` as a label."""
    rules = _section(settings, "priority_rules")
    if not isinstance(rules, list):
        return []
    schema = _schema(PriorityRuleSchema)
    valid = []
    for rule in rules:
        try:
            valid.append(schema.load(rule))
        except ValidationError:
            log.warning("ignoring a stored priority rule the schema refuses: %r", rule)
    return valid


def retry(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """The merchant's valid retry choice (``profile`` and/or ``schedule``)."""
    return _lenient(_schema(RetrySchema), _section(settings, "retry"))


def retry_schedule(settings: Mapping[str, Any] | None, default: Sequence[float]) -> tuple[float, ...]:
    """Seconds before each retry: the merchant's schedule, else its profile's, else ``default``."""
    chosen = retry(settings)
    if "schedule" in chosen:
        return tuple(chosen["schedule"])
    profile = RETRY_PROFILES.get(chosen.get("profile", "standard"))
    return tuple(profile) if profile is not None else tuple(default)


def notifications(settings: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The merchant's valid notice preferences, by kind (kinds not chosen are absent)."""
    stored = _section(settings, "notifications")
    if not isinstance(stored, Mapping):
        return {}
    schemas = _schema(NotificationsSchema).fields
    out = {}
    for kind, field in schemas.items():
        chosen = _lenient(field.schema, stored.get(kind))
        if chosen:
            out[kind] = chosen
    return out


def notice(settings: Mapping[str, Any] | None, kind: str) -> dict[str, Any]:
    """The merchant's valid preference for one kind of notice (``{}`` when it chose nothing)."""
    return notifications(settings).get(kind, {})


def retention(settings: Mapping[str, Any] | None) -> dict[str, int]:
    """The merchant's valid retention periods (``raw_payload_days``, ``events_days``), where it set them."""
    return _lenient(_schema(RetentionSchema), _section(settings, "retention"))


def c2b_validation(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """The merchant's valid C2B validation settings (``{}``: accept all)."""
    return _lenient(_schema(C2BValidationSchema), _section(settings, "c2b_validation"))


def view(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """Every section as the services read it: what the API shows and the console edits."""
    return {"priority_rules": priority_rules(settings), "retry": retry(settings),
            "notifications": notifications(settings), "retention": retention(settings),
            "c2b_validation": c2b_validation(settings)}


def load(changes: Any, allow: Iterable[str | ssrf.Network] = ()) -> dict[str, Any]:
    """Validate a change to the settings (any of the sections); ``allow`` as for ``SettingsSchema``.

    Raises:
      ValidationError: naming each offending field.
    """
    return SettingsSchema(allow=allow).load(changes)


def merged(stored: Mapping[str, Any] | None, changes: Mapping[str, Any]) -> dict[str, Any]:
    """A new settings document: ``stored`` with each section in ``changes`` replaced, or removed when empty.

    A new dict, because a JSON column is not change-tracked in place.
    """
    out = dict(stored or {})
    for name, value in changes.items():
        if value in (None, [], {}):
            out.pop(name, None)
        else:
            out[name] = value
    return out
