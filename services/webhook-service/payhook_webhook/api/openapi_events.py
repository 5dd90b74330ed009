"""The events API's part of ``/openapi.json``: reading events and attempts, endpoint stats, resend and replay.

``openapi.py`` merges these paths and components into the document; request
bodies are generated there from ``REQUEST_SCHEMAS``, as every other body is.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema

from .events_read import DELIVERY_STATES
from .replays import ReplaySchema, ResendSchema

REQUEST_SCHEMAS: dict[str, type[Schema]] = {"Resend": ResendSchema, "Replay": ReplaySchema}

_ID = {"type": "string", "pattern": "^[a-z]+_[0-9a-f]+$"}
_TIME = {"type": "string", "format": "date-time"}
_TEXT = {"type": "string"}
_INT = {"type": "integer"}
_SECURED = {"security": [{"apiKey": []}]}
_PAGE_PARAMS = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 50}},
    {"name": "after", "in": "query", "description": "the `next_after` of the previous page",
     "schema": {"type": "string"}},
]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _answer(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    meaning = {400: "invalid body or query; the message names the field",
               401: "missing, malformed, unknown or revoked API key",
               404: "no such resource (another merchant's answers the same)",
               415: "the body is not declared as application/json"}
    return {str(s): _answer(_ref("Error"), meaning[s]) for s in statuses}


def _param(name: str, where: str = "path", schema: dict[str, Any] | None = None,
           description: str = "") -> dict[str, Any]:
    out = {"name": name, "in": where, "required": where == "path", "schema": schema or {"type": "string"}}
    return {**out, "description": description} if description else out


def _page(item: str) -> dict[str, Any]:
    return {"type": "object", "required": ["data", "has_more", "next_after"], "properties": {
        "data": {"type": "array", "items": _ref(item)}, "has_more": {"type": "boolean"},
        "next_after": {"type": "string", "description": "pass as `after` for the next page; null on the last"}}}


def components() -> dict[str, Any]:
    """The answers' schemas (request bodies come from ``REQUEST_SCHEMAS``)."""
    window = {"type": "object", "properties": {
        "attempts": _INT, "succeeded": _INT, "success_rate": {"type": "number", "description": "percent"},
        "p50_ms": {"type": "number"}, "p95_ms": {"type": "number"}, "last_success_at": _TIME}}
    return {
        "EventSummary": {"type": "object", "properties": {
            "id": _ID, "merchant_id": _ID, "provider": _TEXT, "type": _TEXT, "status": _TEXT,
            "amount": {**_TEXT, "description": "major units as an exact decimal string, e.g. \"10.50\""},
            "amount_minor": _INT, "currency": _TEXT, "receipt": _TEXT, "reference": _TEXT,
            "provider_key": {**_TEXT, "description": "the provider's own key (CheckoutRequestID, TransID, …)"},
            "phone": _TEXT, "received_at": _TIME,
            "delivery_status": {"type": "string", "enum": [*DELIVERY_STATES, "none"]}}},
        "Attempt": {"type": "object", "properties": {
            "id": _INT, "delivery_id": _ID, "endpoint_id": _ID, "number": _INT, "started_at": _TIME,
            "duration_ms": _INT, "status_code": _INT, "category": _TEXT, "error": _TEXT,
            "response_snippet": _TEXT}},
        "DeliveryWithAttempts": {"allOf": [_ref("Delivery"), {"type": "object", "properties": {
            "attempt_log": {"type": "array", "items": _ref("Attempt")}}}]},
        "EventDetail": {"type": "object", "properties": {
            "id": _ID, "merchant_id": _ID, "type": _TEXT, "received_at": _TIME, "priority": _INT,
            "provider_key": _TEXT,
            "delivery_status": {"type": "string", "enum": [*DELIVERY_STATES, "none"]},
            "data": {"type": "object", "description": "the webhook's `data`, as delivered"},
            "raw_payload": {**_TEXT, "description": "the callback verbatim"},
            "deliveries": {"type": "array", "items": _ref("DeliveryWithAttempts")}}},
        "EndpointStats": {"type": "object", "properties": {
            "endpoint_id": _ID, "windows": {"type": "object", "properties": {"hour": window, "day": window}},
            "circuit": {"type": "object", "properties": {
                "state": {"type": "string", "enum": ["closed", "open", "half_open"]}, "open_until": _TIME,
                "consecutive_failures": _INT, "failing_since": _TIME}},
            "enabled": {"type": "boolean"}, "disabled_reason": _TEXT, "deliveries_waiting": _INT}},
        "Resent": {"type": "object", "properties": {
            "event_id": _ID, "endpoints": {"type": "object", "additionalProperties": {
                "type": "string", "enum": ["queued", "in_flight"]}}}},
        "ReplayJob": {"type": "object", "properties": {
            "id": _ID, "merchant_id": _ID, "endpoint_id": _ID,
            "state": {"type": "string", "enum": ["running", "done", "stopped"]}, "since": _TIME, "until": _TIME,
            "types": {"type": "array", "items": _TEXT}, "only_failed": {"type": "boolean"},
            "events_scanned": _INT, "deliveries_created": _INT, "deliveries_revived": _INT,
            "events_skipped": _INT, "last_event_id": _TEXT, "error": _TEXT, "created_at": _TIME,
            "finished_at": _TIME}},
    }


def paths() -> dict[str, Any]:
    """The events API's paths, by path and method."""
    endpoint, event, delivery = _param("endpoint_id"), _param("event_id"), _param("delivery_id")
    filters = [_param(name, "query", description=text) for name, text in (
        ("merchant_id", "admin keys"), ("type", ""), ("status", ""), ("provider", ""),
        ("receipt", "M-Pesa receipt or a gateway's receipt"),
        ("reference", "the provider's own key: CheckoutRequestID, TransID, ConversationID, a gateway's event id"),
        ("bill_ref", "a C2B payment's account number"), ("phone_suffix", "the phone number's last digits"))]
    filters += [_param(n, "query", _TIME, "received at or after / before") for n in ("since", "until")]
    filters.append(_param("delivery", "query", {"type": "string", "enum": list(DELIVERY_STATES)}))
    return {
        "/v1/events": {"get": {**_SECURED, "summary": "List events, newest first, by filters",
                               "parameters": _PAGE_PARAMS + filters,
                               "responses": {"200": _answer(_page("EventSummary"), "one page"),
                                             **_errors(400, 401, 404)}}},
        "/v1/events/{event_id}": {"parameters": [event], "get": {
            **_SECURED, "summary": "An event: webhook data, raw payload, deliveries with attempts",
            "responses": {"200": _answer(_ref("EventDetail"), "the event"), **_errors(401, 404)}}},
        "/v1/events/{event_id}/deliveries": {"parameters": [event], "get": {
            **_SECURED, "summary": "An event's deliveries with their state",
            "responses": {"200": _answer({"type": "object", "properties": {
                "data": {"type": "array", "items": _ref("Delivery")}}}, "the deliveries"), **_errors(401, 404)}}},
        "/v1/events/{event_id}/resend": {"parameters": [event], "post": {
            **_SECURED, "summary": "Deliver the event again (same webhook-id), to one endpoint or all",
            "requestBody": {"required": False, "content": {"application/json": {"schema": _ref("Resend")}}},
            "responses": {"202": _answer(_ref("Resent"), "queued"), **_errors(400, 401, 404, 415)}}},
        "/v1/deliveries/{delivery_id}/attempts": {"parameters": [delivery], "get": {
            **_SECURED, "summary": "Every attempt of a delivery, oldest first",
            "responses": {"200": _answer({"type": "object", "properties": {
                "data": {"type": "array", "items": _ref("Attempt")}}}, "the attempts"), **_errors(401, 404)}}},
        "/v1/endpoints/{endpoint_id}/attempts": {"parameters": [endpoint], "get": {
            **_SECURED, "summary": "An endpoint's attempts, newest first",
            "parameters": _PAGE_PARAMS + [_param("outcome", "query",
                                                 description="success, failure or an attempt category")],
            "responses": {"200": _answer(_page("Attempt"), "one page"), **_errors(400, 401, 404)}}},
        "/v1/endpoints/{endpoint_id}/stats": {"parameters": [endpoint], "get": {
            **_SECURED, "summary": "An endpoint's attempts, success rate and latency; circuit; waiting",
            "responses": {"200": _answer(_ref("EndpointStats"), "the stats"), **_errors(401, 404)}}},
        "/v1/endpoints/{endpoint_id}/replay": {"parameters": [endpoint], "post": {
            **_SECURED, "summary": "Deliver every matching event of a range to this endpoint, in the background",
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("Replay")}}},
            "responses": {"202": _answer(_ref("ReplayJob"), "started"), **_errors(400, 401, 404, 415)}}},
        "/v1/endpoints/{endpoint_id}/replays": {"parameters": [endpoint], "get": {
            **_SECURED, "summary": "An endpoint's replays, newest first", "parameters": _PAGE_PARAMS,
            "responses": {"200": _answer(_page("ReplayJob"), "one page"), **_errors(400, 401, 404)}}},
        "/v1/replays/{replay_id}": {"parameters": [_param("replay_id")], "get": {
            **_SECURED, "summary": "A replay and its progress",
            "responses": {"200": _answer(_ref("ReplayJob"), "the replay"), **_errors(401, 404)}}},
    }
