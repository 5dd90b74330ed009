"""The event catalog: every type of webhook Payhook sends, with a JSON Schema of its body and an example.

One entry per type Payhook can emit. Gateways pass through the provider's own
type (``stripe.<type>``), and ``api``, ``standard-webhooks`` and ``hmac``
events keep the type their sender gave, so those families are entries whose
``type`` is a pattern (``stripe.*``, ``*``); ``entry_for`` finds the entry
of a delivered body, exact types first.

Each example is a provider payload (``examples/``) run through the real
normaliser, so an example is what that provider's callback really becomes;
``payhook.*`` examples come from the same builders the delivery-worker uses.
The schemas are JSON Schema 2020-12, the dialect of OpenAPI 3.1; a test
validates every body the test suite's receivers get against them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import fnmatch
import json
import types
from importlib import resources
from typing import Any

from .. import ids, operational
from ..callbacks import mpesa, sources
from ..callbacks.gateways import FLUTTERWAVE, HMAC, PAYSTACK, STANDARD_WEBHOOKS, STRIPE
from ..errors import PayhookError
from ..events import CALLBACK, PAYHOOK, QUERY, STATUSES, SUCCEEDED, TEST_PREFIX, TEST_TYPE, NormalisedEvent, webhook_body

API = "api"
MPESA = mpesa.PROVIDER


class UnknownType(PayhookError):
    """No catalog entry describes this event type."""


@dataclasses.dataclass(frozen=True)
class EventType:
    """One type (or family of types) of webhook."""

    type: str
    provider: str
    description: str
    #: The M-Pesa callback kind, or the gateway, whose normaliser builds the example; ``None`` for ``payhook.*``.
    source: str | None
    #: The example's provider payload (a file in ``examples/``), or the builder's arguments for ``payhook.*``.
    example_payload: str | None = None
    #: JSON Schema of ``data.details`` when the type fixes it.
    details_schema: dict[str, Any] | None = None
    #: Only to endpoints that list the type in ``event_types``.
    opt_in: bool = False
    #: The ``data.source`` values its webhooks carry (``events.SOURCES``).
    data_sources: tuple[str, ...] = (CALLBACK,)

    @property
    def is_family(self) -> bool:
        """Whether ``type`` is a pattern rather than one type."""
        return "*" in self.type

    def payload(self) -> dict[str, Any]:
        """The example's provider payload."""
        if self.example_payload is None:
            return {}
        if self.example_payload.endswith(".json"):
            return json.loads(resources.files(__package__).joinpath("examples", self.example_payload).read_text())
        return json.loads(self.example_payload)

    @property
    def example_type(self) -> str:
        """The type the example carries: the entry's own, or for a family the example's."""
        return example_event(self).type if self.is_family else self.type

    def data_schema(self) -> dict[str, Any]:
        """JSON Schema of the webhook body's ``data`` for this type."""
        return _data_schema(self.provider, self.details_schema, self.data_sources)

    def body_schema(self) -> dict[str, Any]:
        """JSON Schema of the whole webhook body for this type."""
        kind = ({"type": "string", "pattern": _pattern(self.type)} if self.is_family
                else {"type": "string", "const": self.type})
        return {
            "type": "object",
            "required": ["id", "type", "created_at", "test", "data"],
            "additionalProperties": False,
            "properties": {
                "id": {"type": "string", "pattern": "^evt_[0-9a-f]+$", "description": "the event's id; "
                       "also the `webhook-id` header, the same on every attempt"},
                "type": kind,
                "created_at": {"type": "string", "format": "date-time",
                               "description": "when Payhook received or raised the event"},
                "test": {"type": "boolean", "description": "true for a test event, never a real payment"},
                "data": self.data_schema(),
            },
        }

    def as_json(self, api_normaliser: Any = None) -> dict[str, Any]:
        """The entry as ``GET /v1/event-types`` lists it, with its example body (see ``example_event``)."""
        return {"type": self.type, "provider": self.provider, "description": self.description,
                "opt_in": self.opt_in, "schema": self.data_schema(),
                "example": example_body(self, api_normaliser)}


def _pattern(family: str) -> str:
    return "^" + fnmatch.translate(family).removeprefix("(?s:").removesuffix(")\\Z") + "$"


_TEXT = {"type": ["string", "null"]}
_TIME = {"type": ["string", "null"], "format": "date-time"}


def _data_schema(provider: str, details: dict[str, Any] | None, data_sources: tuple[str, ...]) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["merchant_id", "provider", "status", "source", "amount", "amount_minor", "currency", "receipt",
                     "reference", "provider_ids", "phone", "result_code", "result_desc", "occurred_at",
                     "customer_email", "details", "raw"],
        "properties": {
            "merchant_id": {"type": "string"},
            "provider": {"type": "string", "const": provider},
            "status": {"type": "string", "enum": list(STATUSES)},
            "source": {"type": "string", "enum": list(data_sources),
                       "description": "how Payhook learned of it: callback (sent to Payhook), query (Payhook asked "
                                      "the provider), payhook (Payhook's own event)"},
            "amount": {"type": ["string", "null"], "pattern": r"^-?[0-9]+(\.[0-9]+)?$",
                       "description": "major units as an exact decimal string, e.g. \"10.50\""},
            "amount_minor": {"type": ["integer", "null"], "description": "the amount in the currency's minor units"},
            "currency": {"type": ["string", "null"], "pattern": "^[A-Z]{3}$"},
            "receipt": _TEXT,
            "reference": _TEXT,
            "provider_ids": {"type": "object", "description": "the provider's own ids for the payment"},
            "phone": {**_TEXT, "description": "masked unless the merchant's settings keep it"},
            "result_code": _TEXT,
            "result_desc": _TEXT,
            "occurred_at": _TIME,
            "customer_email": _TEXT,
            "details": details or {"type": "object", "description": "provider fields without a column of their own"},
            "raw": {"description": "the provider's payload verbatim (JSON), or its text"},
        },
    }


def _details(required: dict[str, Any], about_endpoint: bool = True) -> dict[str, Any]:
    endpoint = {"endpoint_id": {"type": "string"}, "endpoint_url": {"type": "string",
                "description": "without credentials, query or fragment"}, "endpoint_description": {"type": "string"}}
    properties = {**(endpoint if about_endpoint else {}), **required}
    return {"type": "object", "required": list(properties), "properties": properties, "additionalProperties": False}


_MPESA = [
    (mpesa.STK_PUSH, "stk", "mpesa_stk_success.json",
     "Lipa na M-Pesa Online (STK push) result: the customer paid, cancelled or timed out.", False),
    (mpesa.C2B_VALIDATION, "c2b-validation", "mpesa_c2b_validation.json",
     "C2B validation request and Payhook's decision; not a payment (opt-in).", True),
    (mpesa.C2B_CONFIRMATION, "c2b-confirmation", "mpesa_c2b_confirmation_plain.json",
     "C2B confirmation: money paid to the merchant's paybill or till.", False),
    (mpesa.B2C, "b2c-result", "mpesa_b2c_result_success.json",
     "B2C payment result or queue timeout (timeouts have status unknown).", False),
    (mpesa.B2B, "b2b-result", "mpesa_b2b_result_success.json",
     "B2B payment result or queue timeout (timeouts have status unknown).", False),
    (mpesa.REVERSAL, "reversal-result", "mpesa_reversal_result_success.json",
     "Transaction reversal result or queue timeout.", False),
    (mpesa.TRANSACTION_STATUS, "status-result", "mpesa_transaction_status_result.json",
     "Transaction status query result or queue timeout.", False),
    (mpesa.ACCOUNT_BALANCE, "balance-result", "mpesa_account_balance_result.json",
     "Account balance query result (details.accounts) or queue timeout.", False),
]

_RESOLVED = [
    (mpesa.B2C_RESOLVED, "A B2C payment whose result came as a QueueTimeOut, settled by Payhook's Transaction Status "
                         "query: details.original_event_id is the mpesa.b2c event it resolves."),
    (mpesa.B2B_RESOLVED, "A B2B payment whose result came as a QueueTimeOut, settled by Payhook's Transaction Status "
                         "query: details.original_event_id is the mpesa.b2b event it resolves."),
    (mpesa.REVERSAL_RESOLVED, "A reversal whose result came as a QueueTimeOut, settled by Payhook's Transaction "
                              "Status query: details.original_event_id is the mpesa.reversal event it resolves."),
]
_RESOLVED_DETAILS = {
    "type": "object",
    "required": ["original_event_id", "status_event_id", "queries", "TransactionStatus"],
    "properties": {
        "original_event_id": {"type": "string", "description": "the QueueTimeOut event this resolves"},
        "status_event_id": {"type": "string", "description": "the mpesa.transaction_status event that settled it"},
        "queries": {"type": "integer", "description": "Transaction Status queries Payhook made"},
        "TransactionStatus": {"type": "string", "description": "Daraja's word: Completed, Failed, …"},
    },
    "description": "the Transaction Status result's parameters, and the ids above",
}
#: The resolutions' example: a QueueTimeOut (this file) answered by the Transaction Status result of the entry.
_TIMEOUT_EXAMPLE = "mpesa_queue_timeout.json"
_EXAMPLE_ORIGINAL_ID, _EXAMPLE_STATUS_ID = "evt_0123456789abcde0", "evt_0123456789abcde1"

_GATEWAYS = [
    ("stripe.payment_intent.succeeded", STRIPE, "stripe_payment_intent_succeeded.json",
     "Stripe: a payment intent succeeded."),
    ("stripe.payment_intent.payment_failed", STRIPE, "stripe_payment_intent_payment_failed.json",
     "Stripe: a payment attempt failed."),
    ("stripe.charge.refunded", STRIPE, "stripe_charge_refunded.json", "Stripe: a charge was refunded."),
    ("stripe.charge.dispute.created", STRIPE, "stripe_charge_dispute_created.json",
     "Stripe: the customer disputed a charge."),
    ("stripe.*", STRIPE, "stripe_customer_created.json",
     "Stripe: any other Stripe event, passed through with Stripe's type."),
    ("paystack.charge.success", PAYSTACK, "paystack_charge_success.json", "Paystack: a charge succeeded."),
    ("paystack.transfer.success", PAYSTACK, "paystack_transfer_success.json", "Paystack: a transfer went through."),
    ("paystack.transfer.failed", PAYSTACK, "paystack_transfer_failed.json", "Paystack: a transfer failed."),
    ("paystack.refund.processed", PAYSTACK, "paystack_refund_processed.json", "Paystack: a refund was processed."),
    ("paystack.*", PAYSTACK, '{"event": "subscription.create", "data": {"id": 1234, "status": "active"}}',
     "Paystack: any other Paystack event, passed through with Paystack's type."),
    ("flutterwave.charge.completed", FLUTTERWAVE, "flutterwave_charge_completed.json",
     "Flutterwave: a charge completed (status says whether it succeeded)."),
    ("flutterwave.*", FLUTTERWAVE, '{"event": "transfer.completed", "data": {"id": 2345, "status": "SUCCESSFUL"}}',
     "Flutterwave: any other Flutterwave event, passed through with Flutterwave's type."),
]

_GENERIC_EXAMPLE = ('{"type": "%s", "id": "msg_2Kx9", "data": {"status": "succeeded", "amount": "1500.00", '
                    '"currency": "KES"}, "customer_email": "buyer@example.com"}')

_OPERATIONAL_DETAILS = {
    operational.ENDPOINT_FAILING: {"failures": {"type": "integer"}, "failing_since": {"type": "string",
                                   "format": "date-time"}, "last_error": _TEXT},
    operational.ENDPOINT_DISABLED: {"disabled_at": {"type": "string", "format": "date-time"},
                                    "reason": {"type": "string"}},
    operational.ENDPOINT_RECOVERED: {"failing_since": _TIME, "recovered_at": {"type": "string",
                                     "format": "date-time"}, "failures": {"type": "integer"}},
    operational.DELIVERY_DEAD: {"delivery_id": {"type": "string"}, "event_id": {"type": "string"},
                                "event_type": {"type": "string"}, "attempts": {"type": "integer"},
                                "category": {"type": "string"}, "last_status": {"type": ["integer", "null"]},
                                "last_error": _TEXT, "dead_at": {"type": "string", "format": "date-time"}},
    operational.PAYMENT_UNRESOLVED: {"intent_id": {"type": "string"}, "checkout_request_id": {"type": "string"},
                                     "account_reference": _TEXT, "pushed_at": {"type": "string", "format": "date-time"},
                                     "checks": {"type": "integer"}, "reason": {"type": "string"},
                                     "unresolved_at": {"type": "string", "format": "date-time"}},
    operational.TRANSACTION_UNRESOLVED: {"check_id": {"type": "string"}, "event_id": {"type": "string"},
                                         "event_type": {"type": "string"},
                                         "originator_conversation_id": {"type": "string"},
                                         "timed_out_at": {"type": "string", "format": "date-time"},
                                         "queries": {"type": "integer"}, "reason": {"type": "string"},
                                         "unresolved_at": {"type": "string", "format": "date-time"}},
}
_OPERATIONAL_DESCRIPTIONS = {
    operational.ENDPOINT_FAILING: "Another endpoint of yours failed repeatedly and Payhook paused deliveries "
                                  "to it (circuit open); one per incident (opt-in).",
    operational.ENDPOINT_DISABLED: "Payhook disabled another endpoint of yours (410 Gone, or failing "
                                   "continuously); webhooks to it have stopped (opt-in).",
    operational.ENDPOINT_RECOVERED: "Another endpoint of yours answered again after failing; deliveries "
                                    "resumed (opt-in).",
    operational.DELIVERY_DEAD: "A delivery to another endpoint of yours gave up and is kept as a dead letter "
                               "(opt-in).",
    operational.PAYMENT_UNRESOLVED: "An STK Push whose callback never came, and which Daraja's STK Push Query "
                                    "could not settle: its payment intent is unknown; check it with Safaricom "
                                    "(opt-in).",
    operational.TRANSACTION_UNRESOLVED: "A B2C, B2B or reversal whose result came as a QueueTimeOut, and which "
                                        "Daraja's Transaction Status could not settle: still unknown; check it "
                                        "with Safaricom (opt-in).",
}

ENTRIES: tuple[EventType, ...] = (
    # An STK result is a callback, or the reconciler's STK Push Query when the callback never came.
    *(EventType(t, MPESA, d, kind, example, opt_in=opt_in,
                data_sources=(CALLBACK, QUERY) if t == mpesa.STK_PUSH else (CALLBACK,))
      for t, kind, example, d, opt_in in _MPESA),
    *(EventType(t, MPESA, d, "status-result", "mpesa_transaction_status_result.json",
                details_schema=_RESOLVED_DETAILS, data_sources=(QUERY,)) for t, d in _RESOLVED),
    *(EventType(t, provider, d, provider, example) for t, provider, example, d in _GATEWAYS),
    EventType("*", STANDARD_WEBHOOKS, "Your own signed sender (Standard Webhooks source): the type it gave.",
              STANDARD_WEBHOOKS, _GENERIC_EXAMPLE % "invoice.paid"),
    EventType("*", HMAC, "Your own signed sender (HMAC source): the type it gave.", HMAC,
              _GENERIC_EXAMPLE % "subscription.renewed"),
    EventType("*", API, "An event recorded with POST /v1/events: the type the caller gave.", API,
              '{"type": "order.paid", "idempotency_key": "order-1042", "data": {"status": "succeeded", '
              '"amount": "2500.00", "currency": "KES"}, "customer_email": "buyer@example.com"}'),
    EventType(TEST_TYPE, "payhook", "A synthetic event an operator records to check a running stack.", None,
              details_schema={"type": "object"}, data_sources=(PAYHOOK,)),
    *(EventType(t, operational.PROVIDER, _OPERATIONAL_DESCRIPTIONS[t], None,
                details_schema=_details(_OPERATIONAL_DETAILS[t], about_endpoint=t not in operational.ABOUT_PAYMENTS),
                opt_in=True, data_sources=(PAYHOOK,)) for t in operational.TYPES),
)


def entry_for(event_type: str, provider: str) -> EventType:
    """The entry describing a body of ``event_type`` from ``provider``: the exact type, else its family.

    Raises:
      UnknownType: when no entry describes it.
    """
    for entry in ENTRIES:
        if entry.type == event_type and entry.provider == provider:
            return entry
    for entry in ENTRIES:
        if entry.is_family and entry.provider == provider and fnmatch.fnmatchcase(event_type, entry.type):
            return entry
    raise UnknownType(f"no event type {event_type!r} from {provider!r} in the catalog")


def selectable() -> list[str]:
    """What an endpoint's ``event_types`` may name from the catalog: every exact type and gateway family."""
    return [entry.type for entry in ENTRIES if entry.type != "*"]


def _namespaces() -> frozenset[str]:
    return frozenset(entry.type.split(".", 1)[0] for entry in ENTRIES if entry.type != "*")


def check_selectable(event_type: str) -> None:
    """Check that an endpoint may list ``event_type`` in its ``event_types``.

    Payhook's own namespaces (``mpesa.``, ``payhook.``, one per gateway) hold
    only what the catalog lists: its exact types, its gateway families
    (``stripe.*``) and the gateway types a family covers (``stripe.customer.created``).
    Any other type is one of the merchant's own senders' (``POST /v1/events``,
    Standard Webhooks and HMAC sources: the catalog's ``*`` entries), which
    the catalog cannot know in advance; a pattern is only a catalog family.

    Raises:
      UnknownType: naming the type, and what the catalog offers instead.
    """
    if any(entry.type == event_type for entry in ENTRIES if entry.type != "*"):
        return
    families = [entry.type for entry in ENTRIES if entry.is_family and entry.type != "*"]
    if "*" in event_type:
        raise UnknownType(f"{event_type[:100]!r} is not a family in the catalog; the families are "
                          f"{', '.join(families)}")
    if event_type.split(".", 1)[0] not in _namespaces():
        return
    if any(fnmatch.fnmatchcase(event_type, family) for family in families):
        return
    raise UnknownType(f"{event_type[:100]!r} is not in the catalog; GET /v1/event-types lists the types")


def by_example_type(event_type: str) -> EventType:
    """The entry whose example carries ``event_type`` (what ``POST /v1/endpoints/<id>/test`` sends).

    Raises:
      UnknownType: when no example has that type.
    """
    for entry in ENTRIES:
        if entry.example_type == event_type:
            return entry
    raise UnknownType(f"no example of event type {event_type!r}; GET /v1/event-types lists them")


_EXAMPLE_ENDPOINT = types.SimpleNamespace(id="ep_0123456789abcdef", url="https://shop.example.com/hooks/payhook",
                                          description="orders")
_EXAMPLE_TIME = dt.datetime(2026, 12, 1, 9, 30, tzinfo=dt.timezone.utc)


def example_event(entry: EventType, api_normaliser: Any = None) -> NormalisedEvent:
    """The entry's example as a ``NormalisedEvent``, built by the code that builds real ones.

    M-Pesa and gateway payloads go through their normalisers; ``payhook.*``
    events through ``operational``'s builders. ``api`` examples need the
    webhook-service's ``POST /v1/events`` normaliser, passed as ``api_normaliser``;
    without it they go through the generic one, which follows the same convention.
    """
    payload = entry.payload()
    raw = json.dumps(payload).encode()
    if entry.provider == MPESA:
        if entry.type in _RESOLVED_TYPES:
            return _resolved_example(entry.type, payload)
        return mpesa.NORMALISERS[entry.source](payload)
    if entry.provider == API:
        if api_normaliser is not None:
            return api_normaliser(payload)
        return sources.normalise(API, payload, raw)
    if entry.source is not None:
        return sources.normalise(entry.source, payload, raw)
    if entry.type == TEST_TYPE:
        return NormalisedEvent(provider="payhook", source=PAYHOOK, type=TEST_TYPE, status=SUCCEEDED,
                               dedupe_key=f"{TEST_PREFIX}example", details={"priority": "normal"})
    return _operational_example(entry.type)


_RESOLVED_TYPES = frozenset(t for t, _ in _RESOLVED)


def _resolved_example(event_type: str, status_payload: dict[str, Any]) -> NormalisedEvent:
    """A QueueTimeOut of the resolved type's kind, resolved by ``status_payload`` as the reconciler resolves one."""
    original_type = next(t for t, (_, resolved) in mpesa.FOLLOWED.items() if resolved == event_type)
    timeout = json.loads(resources.files(__package__).joinpath("examples", _TIMEOUT_EXAMPLE).read_text())
    original = mpesa.NORMALISERS[f"{mpesa.FOLLOWED[original_type][0]}-timeout"](timeout)
    answer = mpesa.NORMALISERS["status-result"](status_payload)
    return mpesa.resolution(original, _EXAMPLE_ORIGINAL_ID, answer, _EXAMPLE_STATUS_ID,
                            mpesa.status_outcome(answer), queries=1)


def _operational_example(event_type: str) -> NormalisedEvent:
    ep, at = _EXAMPLE_ENDPOINT, _EXAMPLE_TIME
    if event_type == operational.ENDPOINT_FAILING:
        return operational.endpoint_failing(ep, incident_started_at=at, failures=5, last_error="HTTP 503")
    if event_type == operational.ENDPOINT_DISABLED:
        return operational.endpoint_disabled(ep, disabled_at=at, reason="the endpoint answered 410 Gone")
    if event_type == operational.ENDPOINT_RECOVERED:
        return operational.endpoint_recovered(ep, failing_since=at - dt.timedelta(minutes=20), recovered_at=at,
                                              failures=7)
    if event_type == operational.PAYMENT_UNRESOLVED:
        return operational.payment_unresolved(
            intent_id="pin_0123456789abcdef", checkout_request_id="ws_CO_011220260930001234567890",
            account_reference="INV-1042", amount_minor=10000, created_at=at - dt.timedelta(hours=24), checks=6,
            reason="Daraja stk_query: The transaction is being processed (500.001.1001)", at=at)
    if event_type == operational.TRANSACTION_UNRESOLVED:
        return operational.transaction_unresolved(
            check_id="stc_0123456789abcdef", event_id="evt_0123456789abcde0", event_type=mpesa.B2C,
            originator_conversation_id="10571-7910404-1", timed_out_at=at - dt.timedelta(hours=24), queries=6,
            reason="no Transaction Status result came", at=at)
    return operational.delivery_dead(ep, delivery_id="dlv_0123456789abcdef", event_id="evt_0123456789abcdef",
                                     event_type=mpesa.STK_PUSH, attempts=8, category="server_error",
                                     last_status=500, last_error="HTTP 500", dead_at=at)


def raw_payload(entry: EventType) -> bytes:
    """The bytes a stored example keeps as its raw payload."""
    return json.dumps(entry.payload()).encode() if entry.source is not None else b"{}"


def example_body(entry: EventType, api_normaliser: Any = None) -> dict[str, Any]:
    """The webhook body a merchant would receive for the entry's example (``api_normaliser``: see ``example_event``)."""
    row = {**dataclasses.asdict(example_event(entry, api_normaliser)), "id": "evt_0123456789abcdef",
           "merchant_id": "mch_0123456789abcdef",
           "received_at": _EXAMPLE_TIME, "raw_payload": raw_payload(entry).decode()}
    return json.loads(webhook_body(types.SimpleNamespace(**row)))


def new_test_key() -> str:
    """A fresh dedupe key marking an event as a test."""
    return f"{TEST_PREFIX}{ids.new_token()}"
