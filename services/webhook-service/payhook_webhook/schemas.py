"""Input schemas of the JSON API (``/v1``) and the console, and reading an API request through one.

The console validates its forms with the same schemas, so both refuse the same input.

Every refusal is a 400 whose message names the offending field, e.g.
``url: must be an absolute http(s) URL``.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from flask import current_app, request
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from payhook_shared import catalog, endpoint_headers, money, ssrf
from payhook_shared.addresses import EmailAddress
from payhook_shared.callbacks import parse_json
from payhook_shared.callbacks.base import load as load_schema
from payhook_shared.callbacks.gateways import HMAC, PROVIDERS
from payhook_shared.daraja.client import MAX_STK_AMOUNT, normalise_phone
from payhook_shared.daraja.credentials import ENVIRONMENTS
from payhook_shared.errors import DecodeError, UnsafeURL
from payhook_shared.merchant_settings import MAX_PRIORITY_RULES, PriorityRuleSchema
from payhook_shared.priority import Priority
from payhook_shared.store import IntentState

from .errors import InvalidPayload, UnsupportedMediaType
from .params import TimeField

MAX_URL_LENGTH = 2048
DEFAULT_GRACE_SECONDS = 24 * 3600
MAX_GRACE_SECONDS = 7 * 24 * 3600
DEFAULT_PAGE = 50
MAX_PAGE = 100
# Per endpoint: attempts started per second, and attempts under way at once.
MAX_ENDPOINT_LIMIT = 10_000


def validate_endpoint_url(url: str) -> str:
    """Check that ``url`` may be a webhook endpoint; return it unchanged.

    The one place endpoint URLs are judged, including which hosts may be
    called: a host resolving to a private, loopback, link-local or metadata
    address is refused unless ``ENDPOINT_ALLOWLIST`` names it (the
    delivery-worker checks again, after resolving, at every attempt).

    Raises:
      ValidationError: naming what is wrong with the URL.
    """
    if len(url) > MAX_URL_LENGTH:
        raise ValidationError(f"must be at most {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise ValidationError("must not contain whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValidationError(f"is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError("must be an absolute http(s) URL, such as https://shop.example/webhooks")
    if parts.username is not None or parts.password is not None:
        raise ValidationError("must not contain credentials; authenticate with the webhook signature")
    if port == 0:
        raise ValidationError("port must be 1 to 65535")
    try:
        ssrf.check_url(url, current_app.extensions["payhook.settings"].endpoint_allowlist, unresolvable_ok=True)
    except UnsafeURL as exc:
        raise ValidationError(str(exc)) from None
    return url


def validate_event_type(event_type: str) -> str:
    """Check that an endpoint may list ``event_type`` (``catalog.check_selectable``); return it unchanged."""
    try:
        catalog.check_selectable(event_type)
    except catalog.UnknownType as exc:
        raise ValidationError(str(exc)) from None
    return event_type


def validate_custom_headers(headers: dict[str, str]) -> dict[str, str]:
    """Check an endpoint's custom headers (``endpoint_headers.problems``); return them unchanged."""
    found = endpoint_headers.problems(headers)
    if found:
        raise ValidationError(found)
    return headers


def _event_types(**options: Any) -> fields.List:
    return fields.List(fields.String(validate=[validate.Length(1, 100), validate_event_type]), allow_none=True,
                       validate=validate.Length(1, 100), **options)


def _custom_headers(**options: Any) -> fields.Dict:
    # Values are checked with their names (the messages name the header), so the inner field takes any string.
    return fields.Dict(keys=fields.String(), values=fields.String(), allow_none=True,
                       validate=validate_custom_headers, **options)


class PriorityField(fields.Field):
    """A priority given as ``"urgent"``/``"high"``/``"normal"``/``"low"`` (or 0–3); loads as ``Priority``."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Priority:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ValidationError("must be one of urgent, high, normal, low")
        try:
            return Priority.parse(value)
        except ValueError:
            raise ValidationError("must be one of urgent, high, normal, low") from None

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else Priority.parse(value).label


class MerchantCreateSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(1, 200))
    notification_email = EmailAddress(allow_none=True, load_default=None)
    priority_rules = fields.List(fields.Nested(PriorityRuleSchema), allow_none=True, load_default=None,
                                 validate=validate.Length(max=MAX_PRIORITY_RULES))


class MerchantUpdateSchema(Schema):
    name = fields.String(validate=validate.Length(1, 200))
    notification_email = EmailAddress(allow_none=True)
    priority_rules = fields.List(fields.Nested(PriorityRuleSchema), allow_none=True,
                                 validate=validate.Length(max=MAX_PRIORITY_RULES))
    enabled = fields.Boolean()


class EndpointCreateSchema(Schema):
    """A new endpoint; the API and the console both validate it here. ``null`` limits mean unlimited."""

    url = fields.String(required=True, validate=validate_endpoint_url)
    description = fields.String(load_default="", validate=validate.Length(max=500))
    event_types = _event_types(load_default=None)
    enabled = fields.Boolean(load_default=True)
    rate_limit_per_second = fields.Integer(strict=True, allow_none=True, load_default=None,
                                           validate=validate.Range(1, MAX_ENDPOINT_LIMIT))
    max_in_flight = fields.Integer(strict=True, allow_none=True, load_default=None,
                                   validate=validate.Range(1, MAX_ENDPOINT_LIMIT))
    custom_headers = _custom_headers(load_default=None)


class EndpointUpdateSchema(Schema):
    """A change to an endpoint: the fields given replace the stored ones."""

    url = fields.String(validate=validate_endpoint_url)
    description = fields.String(validate=validate.Length(max=500))
    event_types = _event_types()
    enabled = fields.Boolean()
    rate_limit_per_second = fields.Integer(strict=True, allow_none=True,
                                           validate=validate.Range(1, MAX_ENDPOINT_LIMIT))
    max_in_flight = fields.Integer(strict=True, allow_none=True, validate=validate.Range(1, MAX_ENDPOINT_LIMIT))
    custom_headers = _custom_headers()

    #: Every field, in the order the console's endpoint form shows them.
    FIELDS = ("url", "description", "event_types", "enabled", "rate_limit_per_second", "max_in_flight",
              "custom_headers")


class RotateSecretSchema(Schema):
    grace_period_seconds = fields.Integer(strict=True, load_default=DEFAULT_GRACE_SECONDS,
                                          validate=validate.Range(0, MAX_GRACE_SECONDS))


class EndpointTestSchema(Schema):
    type = fields.String(required=True, validate=validate.Length(1, 100))


class PageQuerySchema(Schema):
    limit = fields.Integer(load_default=DEFAULT_PAGE, validate=validate.Range(1, MAX_PAGE))
    after = fields.String(load_default=None, validate=validate.Length(1, 40))


class EventCreateSchema(Schema):
    type = fields.String(required=True, validate=[
        validate.Length(1, 100),
        validate.Regexp(r"^[A-Za-z0-9_.:-]+$", error="may contain only letters, digits and _ . : -"),
    ])
    data = fields.Dict(keys=fields.String(), required=True)
    idempotency_key = fields.String(required=True, validate=validate.Length(1, 200))
    priority = PriorityField(load_default=None, allow_none=True)
    customer_email = EmailAddress(load_default=None, allow_none=True)
    # Required with an admin key; a merchant key may omit it or must name its own merchant.
    merchant_id = fields.String(load_default=None, validate=validate.Length(1, 40))


_HEADER = r"^[A-Za-z0-9-]{1,100}$"


def validate_ip_entries(entries: list[str]) -> list[str]:
    """Check that every entry is an IP address or CIDR; return them unchanged."""
    for entry in entries:
        try:
            ipaddress.ip_network(entry.strip(), strict=False)
        except ValueError:
            raise ValidationError(f"{entry[:50]!r} is not an IP address or CIDR") from None
    return entries


class HmacConfigSchema(Schema):
    """How an ``hmac`` source's sender signs: which header, digest and encoding, and optionally a timestamp."""

    header = fields.String(required=True, validate=validate.Regexp(_HEADER, error="must be an HTTP header name"))
    algorithm = fields.String(load_default="sha256", validate=validate.OneOf(["sha256", "sha512"]))
    encoding = fields.String(load_default="hex", validate=validate.OneOf(["hex", "base64"]))
    prefix = fields.String(load_default="", validate=validate.Length(max=40))
    timestamp_header = fields.String(load_default=None, allow_none=True,
                                     validate=validate.Regexp(_HEADER, error="must be an HTTP header name"))
    tolerance_seconds = fields.Integer(strict=True, load_default=300, validate=validate.Range(1, 86400))


class SourceCreateSchema(Schema):
    provider = fields.String(required=True, validate=validate.OneOf(PROVIDERS))
    secret = fields.String(load_default=None, allow_none=True, validate=validate.Length(8, 500))
    description = fields.String(load_default="", validate=validate.Length(max=500))
    hmac = fields.Nested(HmacConfigSchema, load_default=None, allow_none=True)
    ip_allowlist_enabled = fields.Boolean(load_default=False)
    allowed_ips = fields.List(fields.String(validate=validate.Length(1, 50)), load_default=None, allow_none=True,
                              validate=[validate.Length(1, 100), validate_ip_entries])
    enabled = fields.Boolean(load_default=True)

    @validates_schema
    def _provider_needs(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data["provider"] == HMAC and not data.get("hmac"):
            raise ValidationError("is required for provider hmac", "hmac")
        if data["provider"] != HMAC and data.get("hmac"):
            raise ValidationError("is only for provider hmac", "hmac")


class SourceUpdateSchema(Schema):
    description = fields.String(validate=validate.Length(max=500))
    hmac = fields.Nested(HmacConfigSchema)
    ip_allowlist_enabled = fields.Boolean()
    allowed_ips = fields.List(fields.String(validate=validate.Length(1, 50)), allow_none=True,
                              validate=[validate.Length(1, 100), validate_ip_entries])
    enabled = fields.Boolean()


class SourceRotateSchema(Schema):
    secret = fields.String(load_default=None, allow_none=True, validate=validate.Length(8, 500))
    grace_period_seconds = fields.Integer(strict=True, load_default=DEFAULT_GRACE_SECONDS,
                                          validate=validate.Range(0, MAX_GRACE_SECONDS))


def load(schema: Schema, payload: dict[str, Any]) -> dict[str, Any]:
    """Validate ``payload`` with ``schema``.

    Raises:
      InvalidPayload: naming every offending field.
    """
    try:
        return load_schema(schema, payload)
    except DecodeError as exc:
        raise InvalidPayload(str(exc), exc.messages) from None


def json_body(optional: bool = False) -> tuple[bytes, dict[str, Any]]:
    """The request's raw body and its one JSON object (``{}`` for an empty ``optional`` body).

    Raises:
      UnsupportedMediaType: for a body that is not declared as JSON.
      InvalidPayload: for a body that is not one JSON object.
    """
    raw = request.get_data(cache=True)
    if optional and not raw.strip():
        return raw, {}
    if not request.mimetype or "json" not in request.mimetype:
        raise UnsupportedMediaType(f"expected application/json, got {request.mimetype or 'no content type'}")
    try:
        raw.decode("utf-8")
        return raw, parse_json(raw)
    except UnicodeDecodeError:
        raise InvalidPayload("body must be JSON encoded as UTF-8") from None
    except DecodeError as exc:
        raise InvalidPayload(str(exc)) from None


def query(schema: Schema) -> dict[str, Any]:
    """The request's query string, validated by ``schema``."""
    return load(schema, request.args.to_dict())


class DeadLetterFilterSchema(Schema):
    merchant_id = fields.String(load_default=None, validate=validate.Length(1, 40))
    endpoint_id = fields.String(load_default=None, validate=validate.Length(1, 40))
    category = fields.String(load_default=None, validate=validate.Length(1, 20))
    since = TimeField(load_default=None)
    until = TimeField(load_default=None)


class DeadLetterQuerySchema(DeadLetterFilterSchema):
    limit = fields.Integer(load_default=DEFAULT_PAGE, validate=validate.Range(1, MAX_PAGE))
    after = fields.String(load_default=None, validate=validate.Length(1, 40))


class PurgeSchema(DeadLetterFilterSchema):
    # Purging is irreversible: the caller must say so.
    confirm = fields.Boolean(required=True, validate=validate.Equal(True, error="must be true to purge"))


class RecoverSchema(Schema):
    since = TimeField(required=True)


class PriorityTestSchema(Schema):
    count = fields.Integer(load_default=1, validate=validate.Range(1, 5000))


class QuarantineQuerySchema(Schema):
    merchant_id = fields.String(load_default=None, validate=validate.Length(1, 40))
    state = fields.String(load_default=None, validate=validate.OneOf(["quarantined", "resolved"]))
    limit = fields.Integer(load_default=DEFAULT_PAGE, validate=validate.Range(1, MAX_PAGE))
    after = fields.String(load_default=None, validate=validate.Length(1, 40))


# Daraja's own limits: AccountReference at most 12 characters, TransactionDesc at most 13.
MAX_ACCOUNT_REFERENCE = 12
MAX_TRANSACTION_DESC = 13
_SECRET_TEXT = r"^[\x21-\x7e]+$"


def _secret(maximum: int) -> fields.String:
    """A Daraja secret: printable ASCII without spaces; left out or null keeps the stored one."""
    return fields.String(load_default=None, allow_none=True, validate=[
        validate.Length(max=maximum),
        validate.Regexp(_SECRET_TEXT, error="must be printable ASCII without spaces"),
    ])


class DarajaCredentialsSchema(Schema):
    """A merchant's Daraja credentials; a secret field left out keeps its stored value (the consumer key and
    secret are required the first time)."""

    environment = fields.String(required=True, validate=validate.OneOf(ENVIRONMENTS))
    shortcode = fields.String(required=True, validate=validate.Regexp(r"^[0-9]{5,7}$",
                                                                       error="must be 5 to 7 digits"))
    consumer_key = _secret(200)
    consumer_secret = _secret(200)
    passkey = _secret(200)
    initiator_name = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=100))
    security_credential = _secret(2000)

    FIELDS = ("environment", "shortcode", "consumer_key", "consumer_secret", "passkey", "initiator_name",
              "security_credential")


class PhoneField(fields.Field):
    """A Safaricom number, read as 2547…/2541…, 07…/01… or +254…; loads as ``2547XXXXXXXX``."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise ValidationError("must be a phone number such as 254712345678")
        try:
            return normalise_phone(str(value))
        except ValueError as exc:
            raise ValidationError(str(exc)) from None


class ShillingsField(fields.Field):
    """An STK Push amount: whole Kenyan shillings from 1 to Daraja's ceiling, as a number or its text."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        try:
            minor = money.to_minor(value, "KES")
        except money.AmountError as exc:
            raise ValidationError(str(exc)) from None
        if minor % 100:
            raise ValidationError("must be whole shillings: STK Push takes no cents")
        if not 1 <= minor // 100 <= MAX_STK_AMOUNT:
            raise ValidationError(f"must be 1 to {MAX_STK_AMOUNT} shillings")
        return minor // 100


class StkPushSchema(Schema):
    amount = ShillingsField(required=True)
    phone = PhoneField(required=True)
    account_reference = fields.String(required=True, validate=validate.Length(1, MAX_ACCOUNT_REFERENCE))
    description = fields.String(required=True, validate=validate.Length(1, MAX_TRANSACTION_DESC))
    idempotency_key = fields.String(required=True, validate=validate.Length(1, 100))
    # Required with an admin key; a merchant key may omit it or must name its own merchant.
    merchant_id = fields.String(load_default=None, validate=validate.Length(1, 40))


class IntentRegisterSchema(Schema):
    """An STK Push the merchant made itself, for Payhook to follow: only its CheckoutRequestID is required."""

    checkout_request_id = fields.String(required=True, validate=validate.Length(1, 100))
    merchant_request_id = fields.String(load_default=None, allow_none=True, validate=validate.Length(1, 100))
    amount = ShillingsField(load_default=None, allow_none=True)
    phone = PhoneField(load_default=None, allow_none=True)
    account_reference = fields.String(load_default=None, allow_none=True,
                                      validate=validate.Length(1, MAX_ACCOUNT_REFERENCE))
    description = fields.String(load_default=None, allow_none=True, validate=validate.Length(1, 200))
    idempotency_key = fields.String(load_default=None, allow_none=True, validate=validate.Length(1, 100))
    merchant_id = fields.String(load_default=None, validate=validate.Length(1, 40))


class IntentQuerySchema(Schema):
    merchant_id = fields.String(load_default=None, validate=validate.Length(1, 40))
    state = fields.String(load_default=None, validate=validate.OneOf([s.value for s in IntentState]))
    source = fields.String(load_default=None, validate=validate.OneOf(["api", "registered"]))
    checkout_request_id = fields.String(load_default=None, validate=validate.Length(1, 100))
    account_reference = fields.String(load_default=None, validate=validate.Length(1, MAX_ACCOUNT_REFERENCE))
    since = TimeField(load_default=None)
    until = TimeField(load_default=None)
    limit = fields.Integer(load_default=DEFAULT_PAGE, validate=validate.Range(1, MAX_PAGE))
    after = fields.String(load_default=None, validate=validate.Length(1, 40))
