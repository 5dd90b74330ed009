"""``GET /openapi.json``: the OpenAPI 3.1 description of every route and of every webhook sent.

Assembled by apispec: request bodies are converted from the marshmallow
schemas that validate them (apispec's marshmallow plugin, taught Payhook's own
fields), so the document cannot drift from what the API accepts. The paths and
answers of the JSON API are maintained here; the provider callback routes all
share one contract, so each callback rule in the app is described from that
contract and its view's docstring. The ``webhooks`` section is the event
catalog (``payhook_shared.catalog``): one entry per type, with the JSON Schema
its body is validated against in the tests.
"""

from __future__ import annotations

import re
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Flask, current_app, jsonify
from marshmallow import Schema, fields

from payhook_shared import catalog
from payhook_shared import merchant_settings
from payhook_shared.addresses import MAX_LENGTH as MAX_ADDRESS_LENGTH
from payhook_shared.addresses import EmailAddress
from payhook_shared.callbacks.gateways import PROVIDERS

from ..params import TimeField
from . import openapi_events, openapi_mpesa
from .event_types import api_event
from ..schemas import (
    MAX_GRACE_SECONDS, DeadLetterFilterSchema, EndpointCreateSchema, EndpointTestSchema, EndpointUpdateSchema,
    EventCreateSchema, HmacConfigSchema, MerchantCreateSchema, MerchantUpdateSchema, PriorityField,
    PhoneField, PriorityTestSchema, PurgeSchema, RecoverSchema, ShillingsField, RotateSecretSchema, SourceCreateSchema, SourceRotateSchema,
    SourceUpdateSchema, validate_endpoint_url,
)

bp = Blueprint("openapi", __name__)

REQUEST_SCHEMAS: dict[str, type[Schema]] = {
    "MerchantCreate": MerchantCreateSchema,
    "MerchantUpdate": MerchantUpdateSchema,
    "PriorityRule": merchant_settings.PriorityRuleSchema,
    "MerchantSettings": merchant_settings.SettingsSchema,
    "RetrySettings": merchant_settings.RetrySchema,
    "NotificationSettings": merchant_settings.NotificationsSchema,
    "NoticePreference": merchant_settings.NoticeSchema,
    "ReceiptPreference": merchant_settings.ReceiptNoticeSchema,
    "RetentionSettings": merchant_settings.RetentionSchema,
    "C2BValidationSettings": merchant_settings.C2BValidationSchema,
    "EndpointCreate": EndpointCreateSchema,
    "EndpointUpdate": EndpointUpdateSchema,
    "RotateSecret": RotateSecretSchema,
    "EndpointTest": EndpointTestSchema,
    "EventCreate": EventCreateSchema,
    "DeadLetterFilter": DeadLetterFilterSchema,
    "Purge": PurgeSchema,
    "Recover": RecoverSchema,
    "PriorityTest": PriorityTestSchema,
    "HmacConfig": HmacConfigSchema,
    "SourceCreate": SourceCreateSchema,
    "SourceUpdate": SourceUpdateSchema,
    "SourceRotate": SourceRotateSchema,
    **openapi_events.REQUEST_SCHEMAS,
    **openapi_mpesa.REQUEST_SCHEMAS,
}
_PRIORITIES = ["urgent", "high", "normal", "low"]


def _payhook_fields(self: Any, field: fields.Field, **kwargs: Any) -> dict[str, Any]:
    """apispec attribute function: what the plugin cannot see in Payhook's own fields and validators."""
    if isinstance(field, (PriorityField, merchant_settings.PriorityLabel)):
        if field.allow_none:
            return {"type": ["string", "null"], "enum": [*_PRIORITIES, None]}
        return {"type": "string", "enum": _PRIORITIES}
    if isinstance(field, merchant_settings.KesAmount):
        kinds = ["string", "number", "null"] if field.allow_none else ["string", "number"]
        return {"type": kinds, "description": "an amount in KES"}
    if isinstance(field, PhoneField):
        kinds = ["string", "null"] if field.allow_none else "string"
        return {"type": kinds, "description": "a Safaricom number: 2547XXXXXXXX or 2541XXXXXXXX (07…, 01…, +254… are "
                                              "read too)"}
    if isinstance(field, ShillingsField):
        kinds = ["integer", "string", "null"] if field.allow_none else ["integer", "string"]
        return {"type": kinds, "description": "whole Kenyan shillings, at least 1"}
    if isinstance(field, TimeField):
        return {"type": ["string", "null"] if field.allow_none else "string", "format": "date-time"}
    if isinstance(field, EmailAddress):
        return {"format": "email", "maxLength": MAX_ADDRESS_LENGTH}
    if validate_endpoint_url in field.validators:
        return {"format": "uri", "description": "absolute http(s) URL without credentials"}
    return {}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` or null, as OpenAPI 3.1 (JSON Schema 2020-12) says it."""
    if "type" in schema:
        kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        return {**schema, "type": [*kinds, "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _body(name: str, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": _ref(name)}}}


def _errors(*statuses: int) -> dict[str, Any]:
    meaning = {
        400: "invalid body or query; the message names the field",
        401: "missing, malformed, unknown or revoked API key",
        403: "the key may not do this, or the merchant is disabled",
        404: "no such resource (or not the key's merchant)",
        415: "the body is not declared as application/json",
        429: "the key already holds as many live streams as STREAM_MAX_PER_KEY allows",
        503: "the store could not record the request; retry",
    }
    return {str(s): _json(_ref("Error"), meaning[s]) for s in statuses}


_ID = {"type": "string", "pattern": "^[a-z]+_[0-9a-f]+$"}
_TIME = {"type": "string", "format": "date-time"}
_PAGE_PARAMS = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 50}},
    {"name": "after", "in": "query", "description": "the last id of the previous page (its `next_after`)",
     "schema": {"type": "string"}},
]


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _page(item: str) -> dict[str, Any]:
    return {"type": "object", "required": ["data", "has_more", "next_after"], "properties": {
        "data": {"type": "array", "items": _ref(item)},
        "has_more": {"type": "boolean"},
        "next_after": {"type": ["string", "null"], "description": "pass as `after` for the next page"},
    }}


def _answer_schemas() -> dict[str, Any]:
    """JSON Schemas of what the API answers (the request schemas come from marshmallow)."""
    schemas: dict[str, Any] = {}
    schemas["Error"] = {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["code", "message"], "properties": {
            "code": {"type": "string"}, "message": {"type": "string"},
            "fields": {"type": "object", "description": "marshmallow's messages by field"},
        }}}}
    schemas["Merchant"] = {"type": "object", "properties": {
        "id": _ID, "name": {"type": "string"}, "notification_email": {"type": ["string", "null"]},
        "enabled": {"type": "boolean"}, "priority_rules": {"type": "array", "items": _ref("PriorityRule")},
        "created_at": _TIME,
    }}
    schemas["MerchantSettingsView"] = {"type": "object", "properties": {
        "merchant_id": _ID,
        "priority_rules": {"type": "array", "items": _ref("PriorityRule")},
        "retry": _ref("RetrySettings"), "notifications": _ref("NotificationSettings"),
        "retention": _ref("RetentionSettings"), "c2b_validation": _ref("C2BValidationSettings"),
    }, "description": "the sections as the services apply them; an empty one means the defaults"}
    schemas["CallbackUrls"] = {"type": "object", "properties": {
        "merchant_id": _ID,
        "callback_urls": {"type": "object", "additionalProperties": {"type": "string", "format": "uri"}},
    }}
    schemas["Endpoint"] = {"type": "object", "properties": {
        "id": _ID, "merchant_id": _ID, "url": {"type": "string", "format": "uri"},
        "description": {"type": "string"},
        "event_types": {"type": ["array", "null"], "items": {"type": "string"}},
        "enabled": {"type": "boolean"},
        "rate_limit_per_second": {"type": ["integer", "null"]},
        "max_in_flight": {"type": ["integer", "null"]},
        "custom_headers": {"type": ["object", "null"], "additionalProperties": {"type": "string"},
                           "description": "sent with every webhook after Payhook's own; values shown as set"},
        "previous_secret_expires_at": _nullable(_TIME),
        "created_at": _TIME, "updated_at": _TIME,
    }}
    schemas["EndpointWithSecret"] = {"allOf": [_ref("Endpoint"), {"type": "object", "properties": {
        "secret": {"type": "string", "description": "whsec_ signing secret; shown only in this answer"}}}]}
    schemas["EventId"] = {"type": "object", "properties": {"id": _ID}}
    schemas["Delivery"] = {"type": "object", "properties": {
        "id": _ID, "event_id": _ID, "endpoint_id": _ID, "merchant_id": _ID,
        "state": {"type": "string", "enum": ["pending", "sending", "done", "dead"]},
        "attempts": {"type": "integer"}, "priority": {"type": "integer", "minimum": 0, "maximum": 3},
        "last_status": {"type": ["integer", "null"]},
        "last_category": {"type": ["string", "null"]}, "last_error": {"type": ["string", "null"]},
        "next_attempt_at": _TIME, "dead_at": _nullable(_TIME),
        "delivered_at": _nullable(_TIME), "created_at": _TIME,
    }}
    schemas["Count"] = {"type": "object", "additionalProperties": {"type": "integer"},
                        "description": "how many rows the operation changed, e.g. {\"retried\": 3}"}
    schemas["Source"] = {"type": "object", "properties": {
        "id": _ID, "merchant_id": _ID, "provider": {"type": "string", "enum": list(PROVIDERS)},
        "description": {"type": "string"}, "callback_url": {"type": "string", "format": "uri"},
        "hmac": _nullable(_ref("HmacConfig")), "ip_allowlist_enabled": {"type": "boolean"},
        "allowed_ips": {"type": ["array", "null"], "items": {"type": "string"}},
        "enabled": {"type": "boolean"}, "previous_secret_expires_at": _nullable(_TIME),
        "created_at": _TIME, "updated_at": _TIME,
    }}
    schemas["ApiKey"] = {"type": "object", "properties": {
        "id": _ID, "merchant_id": {**_nullable(_ID), "description": "null for an admin key"},
        "label": {"type": "string"},
        "last4": {"type": ["string", "null"], "description": "the key's last four characters"},
        "created_at": _TIME, "last_used_at": {**_nullable(_TIME), "description": "to the minute"},
        "revoked_at": _nullable(_TIME),
    }, "description": "an API key as listed: never the key itself"}
    schemas["QuarantinedCallback"] = {"type": "object", "properties": {
        "id": _ID, "merchant_id": _ID,
        "provider": {"type": "string", "description": "mpesa or the source's gateway"},
        "kind": {"type": "string", "description": "the M-Pesa callback kind (stk, b2c-result, ...) or webhook"},
        "source_id": {"type": ["string", "null"]},
        "state": {"type": "string", "enum": ["quarantined", "resolved"]},
        "reason": {"type": "string", "enum": ["json", "content_type", "schema"]},
        "error": {"type": "string"}, "error_fields": {"type": ["object", "null"]},
        "attempts": {"type": "integer", "description": "reprocess attempts"},
        "content_type": {"type": "string"}, "size": {"type": "integer", "description": "body bytes"},
        "received_at": _TIME, "last_attempt_at": _nullable(_TIME),
        "resolved_at": _nullable(_TIME), "event_id": {"type": ["string", "null"]},
    }}
    schemas["QuarantinedCallbackWithBody"] = {"allOf": [_ref("QuarantinedCallback"), {"type": "object",
                                                                                        "properties": {
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        "body_text": {"type": "string", "nullable": True, "description": "the body, when it is UTF-8"},
        "body_base64": {"type": "string", "format": "byte"}}}]}
    schemas["SourceWithSecret"] = {"allOf": [_ref("Source"), {"type": "object", "properties": {
        "secret": {"type": "string", "description": "a generated secret; shown only in this answer"}}}]}
    schemas["EventType"] = {"type": "object", "required": ["type", "provider", "description", "opt_in", "schema",
                                                           "example"], "properties": {
        "type": {"type": "string", "description": "the type, or a pattern (`stripe.*`, `*`) for a family"},
        "provider": {"type": "string"}, "description": {"type": "string"},
        "opt_in": {"type": "boolean", "description": "sent only to endpoints that list the type"},
        "schema": {"type": "object", "description": "JSON Schema (2020-12) of the body's `data`"},
        "example": {"type": "object", "description": "an example webhook body"},
    }}
    schemas["EndpointTestResult"] = {"type": "object", "properties": {
        "delivered": {"type": ["boolean", "null"], "description": "null: no outcome yet (answer 202)"},
        "status": {"type": ["integer", "null"], "description": "the endpoint's HTTP status"},
        "category": {"type": ["string", "null"], "description": "success, server_error, network, …"},
        "duration_ms": {"type": ["integer", "null"]}, "error": {"type": ["string", "null"]},
        "response": {"type": ["string", "null"], "description": "the start of the endpoint's answer"},
        "event_id": _ID, "delivery_id": _ID, "endpoint_id": _ID, "type": {"type": "string"},
    }}
    schemas.update(openapi_events.components())
    schemas.update(openapi_mpesa.components())
    return schemas


def _api_paths() -> dict[str, Any]:
    secured = {"security": [{"apiKey": []}]}
    merchant = [_path_param("merchant_id")]
    endpoint = [_path_param("endpoint_id")]
    source = [_path_param("source_id")]
    return {
        "/v1/merchants": {
            "post": {**secured, "summary": "Create a merchant (admin key)", "requestBody": _body("MerchantCreate"),
                     "responses": {"201": _json({"allOf": [_ref("Merchant"), _ref("CallbackUrls")]}, "created"),
                                   **_errors(400, 401, 403, 415, 503)}},
            "get": {**secured, "summary": "List merchants (a merchant key sees its own)",
                    "parameters": _PAGE_PARAMS,
                    "responses": {"200": _json(_page("Merchant"), "one page"), **_errors(400, 401, 403)}},
        },
        "/v1/merchants/{merchant_id}": {
            "parameters": merchant,
            "get": {**secured, "summary": "Get a merchant",
                    "responses": {"200": _json(_ref("Merchant"), "the merchant"), **_errors(401, 403, 404)}},
            "patch": {**secured, "summary": "Update a merchant; `enabled` (disable/enable) needs an admin key",
                      "requestBody": _body("MerchantUpdate"),
                      "responses": {"200": _json(_ref("Merchant"), "updated"),
                                    **_errors(400, 401, 403, 404, 415, 503)}},
        },
        "/v1/merchants/{merchant_id}/settings": {
            "parameters": merchant,
            "get": {**secured,
                    "summary": "The merchant's priority rules, retry profile, notices, retention and C2B validation",
                    "responses": {"200": _json(_ref("MerchantSettingsView"), "the settings"),
                                  **_errors(401, 403, 404)}},
            "patch": {**secured, "summary": "Replace the sections given; `null` returns a section to the defaults",
                      "requestBody": _body("MerchantSettings"),
                      "responses": {"200": _json(_ref("MerchantSettingsView"), "updated"),
                                    **_errors(400, 401, 403, 404, 415, 503)}},
        },
        "/v1/merchants/{merchant_id}/callback-urls": {
            "parameters": merchant,
            "get": {**secured, "summary": "The merchant's callback URLs by kind",
                    "responses": {"200": _json(_ref("CallbackUrls"), "the URLs"), **_errors(401, 403, 404)}},
        },
        "/v1/merchants/{merchant_id}/endpoints": {
            "parameters": merchant,
            "post": {**secured, "summary": "Add a webhook endpoint (its secret is shown once)",
                     "requestBody": _body("EndpointCreate"),
                     "responses": {"201": _json(_ref("EndpointWithSecret"), "created"),
                                   **_errors(400, 401, 403, 404, 415, 503)}},
            "get": {**secured, "summary": "List the merchant's endpoints", "parameters": _PAGE_PARAMS,
                    "responses": {"200": _json(_page("Endpoint"), "one page"), **_errors(400, 401, 403, 404)}},
        },
        "/v1/endpoints/{endpoint_id}": {
            "parameters": endpoint,
            "get": {**secured, "summary": "Get an endpoint (never its secret)",
                    "responses": {"200": _json(_ref("Endpoint"), "the endpoint"), **_errors(401, 403, 404)}},
            "patch": {**secured, "summary": "Update an endpoint; `enabled: false` disables it",
                      "requestBody": _body("EndpointUpdate"),
                      "responses": {"200": _json(_ref("Endpoint"), "updated"),
                                    **_errors(400, 401, 403, 404, 415, 503)}},
        },
        "/v1/endpoints/{endpoint_id}/rotate-secret": {
            "parameters": endpoint,
            "post": {**secured,
                     "summary": "New signing secret (shown once); the old one keeps signing for the grace "
                                f"period (default 86400 s, at most {MAX_GRACE_SECONDS} s)",
                     "requestBody": _body("RotateSecret", required=False),
                     "responses": {"200": _json(_ref("EndpointWithSecret"), "rotated"),
                                   **_errors(400, 401, 403, 404, 415, 503)}},
        },
        "/v1/endpoints/{endpoint_id}/test": {
            "parameters": endpoint,
            "post": {**secured, "summary": "Send one example event of `type`, marked test, to this endpoint only; "
                                           "answers with the attempt's outcome",
                     "requestBody": _body("EndpointTest"),
                     "responses": {"200": _json(_ref("EndpointTestResult"), "the attempt's outcome"),
                                   "202": _json(_ref("EndpointTestResult"),
                                                "no outcome within ENDPOINT_TEST_WAIT; look up delivery_id"),
                                   **_errors(400, 401, 404, 415, 503)}},
        },
        "/v1/event-types": {
            "get": {**secured, "summary": "Every type of webhook Payhook sends, with its schema and an example",
                    "responses": {"200": _json({"type": "object", "properties": {
                        "data": {"type": "array", "items": _ref("EventType")}}}, "the catalog"),
                        **_errors(401)}},
        },
        "/v1/api-keys": {
            "get": {**secured, "summary": "List every API key, revoked ones included (admin key)",
                    "parameters": _PAGE_PARAMS,
                    "responses": {"200": _json(_page("ApiKey"), "one page"), **_errors(400, 401, 403)}},
        },
        "/v1/api-keys/{key_id}": {
            "parameters": [_path_param("key_id")],
            "delete": {**secured, "summary": "Revoke an API key at once and end the console sessions it opened "
                                             "(admin key)",
                       "responses": {"200": _json(_ref("ApiKey"), "revoked (or revoked already)"),
                                     **_errors(401, 403, 404, 503)}},
        },
        "/v1/events": {
            "post": {**secured, "summary": "Record a payment event (idempotent on idempotency_key)",
                     "requestBody": _body("EventCreate"),
                     "responses": {"201": _json(_ref("EventId"), "recorded"),
                                   "200": _json(_ref("EventId"), "a repeat: the first event's id, nothing new"),
                                   **_errors(400, 401, 403, 404, 415, 503)}},
        },
        "/v1/stream": {
            "get": {**secured, "summary": "The merchant's events as Server-Sent Events, each as it is recorded "
                                          "(docs/api.md: Live stream)",
                    "parameters": [
                        {"name": "types", "in": "query", "description": "comma-separated event types (default: all)",
                         "schema": {"type": "string"}},
                        {"name": "merchant_id", "in": "query", "description": "required with an admin key",
                         "schema": {"type": "string"}},
                        {"name": "Last-Event-ID", "in": "header",
                         "description": "resume after this event (the last `id:` received)",
                         "schema": {"type": "string"}}],
                    "responses": {"200": {"description": "a stream of `id:` (event id), `event:` (type) and "
                                                         "`data: {id, type, headers, body}` frames, and heartbeats",
                                          "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                                  **_errors(400, 401, 403, 404, 429)}},
        },
        "/v1/dead-letters": {
            "get": {**secured, "summary": "List dead letters, newest first (a merchant key sees its own)",
                    "parameters": _PAGE_PARAMS + [
                        {"name": n, "in": "query", "schema": {"type": "string"}}
                        for n in ("merchant_id", "endpoint_id", "category")] + [
                        {"name": n, "in": "query", "schema": _TIME} for n in ("since", "until")],
                    "responses": {"200": _json(_page("Delivery"), "one page"), **_errors(400, 401, 404)}},
        },
        "/v1/dead-letters/retry": {
            "post": {**secured, "summary": "Retry every dead letter matching the filters",
                     "requestBody": _body("DeadLetterFilter", required=False),
                     "responses": {"200": _json(_ref("Count"), "{\"retried\": n}"), **_errors(400, 401, 404, 415)}},
        },
        "/v1/dead-letters/purge": {
            "post": {**secured, "summary": "Delete every dead letter matching the filters (confirm: true)",
                     "requestBody": _body("Purge"),
                     "responses": {"200": _json(_ref("Count"), "{\"purged\": n}"), **_errors(400, 401, 404, 415)}},
        },
        "/v1/deliveries/{delivery_id}": {
            "parameters": [_path_param("delivery_id")],
            "get": {**secured, "summary": "A delivery with every attempt",
                    "responses": {"200": _json(_ref("Delivery"), "the delivery"), **_errors(401, 404)}},
        },
        "/v1/deliveries/{delivery_id}/retry": {
            "parameters": [_path_param("delivery_id")],
            "post": {**secured, "summary": "Retry one dead letter now, with a fresh schedule",
                     "responses": {"200": _json(_ref("Count"), "{\"retried\": 1} (0 if it was not dead)"),
                                   **_errors(401, 404)}},
        },
        "/v1/endpoints/{endpoint_id}/recover": {
            "parameters": endpoint,
            "post": {**secured, "summary": "Re-deliver every failed delivery of the endpoint since a time",
                     "requestBody": _body("Recover"),
                     "responses": {"200": _json(_ref("Count"), "{\"recovered\": n}"),
                                   **_errors(400, 401, 404, 415)}},
        },
        "/test/priority/{merchant_id}/{level}": {
            "parameters": [_path_param("merchant_id"), {**_path_param("level"), "schema": {
                "type": "string", "enum": _PRIORITIES}}],
            "post": {**secured, "summary": "Record synthetic payhook.test events at a priority (admin key)",
                     "requestBody": _body("PriorityTest", required=False),
                     "responses": {"200": {"description": "the events' ids and receive times"},
                                   **_errors(400, 401, 403, 404, 415)}},
        },
        "/v1/merchants/{merchant_id}/sources": {
            "parameters": merchant,
            "post": {**secured, "summary": "Add an inbound gateway source (a generated secret is shown once)",
                     "requestBody": _body("SourceCreate"),
                     "responses": {"201": _json(_ref("SourceWithSecret"), "created"),
                                   **_errors(400, 401, 403, 404, 415, 503)}},
            "get": {**secured, "summary": "List the merchant's inbound sources", "parameters": _PAGE_PARAMS,
                    "responses": {"200": _json(_page("Source"), "one page"), **_errors(400, 401, 403, 404)}},
        },
        "/v1/sources/{source_id}": {
            "parameters": source,
            "get": {**secured, "summary": "Get a source (never its secret)",
                    "responses": {"200": _json(_ref("Source"), "the source"), **_errors(401, 403, 404)}},
            "patch": {**secured, "summary": "Update a source; `enabled: false` disables it",
                      "requestBody": _body("SourceUpdate"),
                      "responses": {"200": _json(_ref("Source"), "updated"),
                                    **_errors(400, 401, 403, 404, 415, 503)}},
        },
        "/v1/sources/{source_id}/rotate-secret": {
            "parameters": source,
            "post": {**secured, "summary": "New verifying secret; the old one still verifies for the grace period",
                     "requestBody": _body("SourceRotate", required=False),
                     "responses": {"200": _json(_ref("SourceWithSecret"), "rotated"),
                                   **_errors(400, 401, 403, 404, 415, 503)}},
        },
        "/v1/quarantine": {
            "get": {**secured, "summary": "List quarantined callbacks, newest first (a merchant key sees its own)",
                    "parameters": _PAGE_PARAMS + [
                        {"name": "merchant_id", "in": "query", "schema": {"type": "string"}},
                        {"name": "state", "in": "query", "schema": {"type": "string",
                                                                    "enum": ["quarantined", "resolved"]}}],
                    "responses": {"200": _json(_page("QuarantinedCallback"), "one page"), **_errors(400, 401, 404)}},
        },
        "/v1/quarantine/{quarantine_id}": {
            "parameters": [_path_param("quarantine_id")],
            "get": {**secured, "summary": "A quarantined callback with its headers and raw body",
                    "responses": {"200": _json(_ref("QuarantinedCallbackWithBody"), "the callback"),
                                  **_errors(401, 404)}},
        },
        "/v1/quarantine/{quarantine_id}/reprocess": {
            "parameters": [_path_param("quarantine_id")],
            "post": {**secured, "summary": "Validate and record a quarantined callback again, as a live one",
                     "responses": {"200": _json(_ref("QuarantinedCallback"),
                                                "`resolved` with its event_id, or still `quarantined` with the "
                                                "new error"), **_errors(401, 404, 503)}},
        },
        "/in/{source_id}/{token}": {
            "parameters": [_path_param("source_id"), _path_param("token")],
            "post": {"summary": "A gateway callback (Stripe, Paystack, Flutterwave, Standard Webhooks, HMAC)",
                     "description": "Verified on the raw bytes with the source's secret(s) before parsing.",
                     "requestBody": {"required": True,
                                     "content": {"application/json": {"schema": {"type": "object"}}}},
                     "responses": {
                         "200": _json(_ref("EventId"), "recorded (or a repeat)"),
                         "401": _json(_ref("Error"), "missing, malformed or wrong signature, or a stale "
                                                     "timestamp; `code` says which"),
                         "403": _json(_ref("Error"), "source address outside the source's IP allowlist"),
                         **_errors(400, 404, 415, 503)}},
        },
        "/health": {"get": {"summary": "Liveness", "responses": {"200": {"description": "the process answers"}}}},
        "/health/ready": {"get": {"summary": "Readiness: the store and Redis answer, the schema is migrated",
                                  "responses": {"200": {"description": "ready"}, "503": {
                                      "description": "the store or Redis does not answer, or the schema is behind"}}}},
        "/health/queue": {"get": {"summary": "Per queue: waiting, active, delayed, dead and completed jobs",
                                  "responses": {"200": {"description": "the figures (cached a few seconds)"},
                                                "503": {"description": "the store or Redis does not answer"}}}},
        "/metrics": {"get": {"summary": "Prometheus metrics of every process, and queue and store gauges",
                             "responses": {"200": {"description": "Prometheus text format",
                                                   "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/openapi.json": {"get": {"summary": "This document",
                                  "responses": {"200": {"description": "OpenAPI 3.1 document"}}}},
    }


_CONVERTER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def openapi_path(rule: str) -> str:
    """A Flask rule as an OpenAPI path: ``/cb/<merchant_id>/<token>/stk`` → ``/cb/{merchant_id}/{token}/stk``."""
    return _CONVERTER.sub(r"{\1}", rule)


def _callback_paths(app: Flask) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint.split(".")[0] != "callbacks":
            continue
        view = app.view_functions[rule.endpoint]
        operation = {
            "summary": (view.__doc__ or rule.endpoint).strip().splitlines()[0],
            "description": "Provider callback; the URL's token authenticates it. With the M-Pesa IP allowlist "
                           "on, sources outside it get 403.",
            "parameters": [_path_param(name) for name in sorted(rule.arguments)],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
            "responses": {
                "200": _json({"type": "object", "properties": {"ResultCode": {"type": "integer"},
                                                               "ResultDesc": {"type": "string"}}},
                             "recorded (or a repeat)"),
                **_errors(400, 404, 415, 503),
                "403": _json(_ref("Error"), "source address not in the M-Pesa IP allowlist"),
            },
        }
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(openapi_path(rule.rule), {})[method.lower()] = operation
    return paths


_SIGNATURE_HEADERS = [
    {"name": "webhook-id", "in": "header", "required": True, "schema": {"type": "string"},
     "description": "the event's id, the same on every attempt: deduplicate on it"},
    {"name": "webhook-timestamp", "in": "header", "required": True, "schema": {"type": "string"},
     "description": "Unix seconds when this attempt was signed"},
    {"name": "webhook-signature", "in": "header", "required": True, "schema": {"type": "string"},
     "description": "`v1,<base64 HMAC-SHA256>` (Standard Webhooks), one per active secret"},
]


def _schema_name(schema: Any) -> str:
    """The component name of a marshmallow schema class or instance (its ``REQUEST_SCHEMAS`` name)."""
    cls = schema if isinstance(schema, type) else type(schema)
    return next(name for name, known in REQUEST_SCHEMAS.items() if known is cls)


def _webhooks() -> dict[str, Any]:
    """The ``webhooks`` section: every catalog entry, keyed by its type (and provider, for the ``*`` families)."""
    out: dict[str, Any] = {}
    for entry in catalog.ENTRIES:
        name = entry.type if entry.type != "*" else f"* ({entry.provider})"
        out[name] = {"post": {
            "summary": entry.description,
            "description": ("Sent only to endpoints whose `event_types` list it. " if entry.opt_in else "")
                           + "Any 2xx answer counts as delivered; anything else is retried.",
            "parameters": _SIGNATURE_HEADERS,
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": entry.body_schema(), "example": catalog.example_body(entry, api_event)}}},
            "responses": {"2XX": {"description": "received"}},
        }}
    return out


def _merged(*groups: dict[str, Any]) -> dict[str, Any]:
    """Paths from several groups; a path two groups describe (``/v1/events``) gets the methods of both."""
    paths: dict[str, Any] = {}
    for group in groups:
        for path, item in group.items():
            paths.setdefault(path, {}).update(item)
    return paths


def document(app: Flask) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``app``."""
    plugin = MarshmallowPlugin(schema_name_resolver=_schema_name)
    spec = APISpec(title="Payhook webhook-service", version="1", openapi_version="3.1.0", plugins=[plugin],
                   info={"description": "Provider callbacks in; merchant, endpoint and event management API; "
                                        "the webhooks Payhook sends."},
                   webhooks=_webhooks())
    plugin.converter.add_attribute_function(_payhook_fields)
    for name, schema in REQUEST_SCHEMAS.items():
        if name not in spec.components.schemas:  # a nested schema registers itself with its parent
            spec.components.schema(name, schema=schema)
    for name, schema in _answer_schemas().items():
        spec.components.schema(name, schema)
    spec.components.security_scheme("apiKey", {"type": "http", "scheme": "bearer",
                                               "description": "`phk_…` admin or merchant API key"})
    for path, item in _merged(_api_paths(), openapi_events.paths(), openapi_mpesa.paths(), _callback_paths(app)).items():
        operations = {method: op for method, op in item.items() if method != "parameters"}
        spec.path(path=path, operations=operations, parameters=item.get("parameters"))
    return spec.to_dict()


@bp.get("/openapi.json")
def openapi_json():
    """The OpenAPI document of this service."""
    return jsonify(document(current_app))
