"""``GET /openapi.json``: the OpenAPI 3.0 description of every route.

Request bodies are generated from the marshmallow schemas that validate them,
so the document cannot drift from what the API accepts. The paths and answers
of the JSON API are maintained here; the provider callback routes all share
one contract, so each callback rule in the app is described from that
contract and its view's docstring.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify
from marshmallow import Schema, fields, validate

from payhook_shared import merchant_settings as ms
from payhook_shared.callbacks.gateways import PROVIDERS

from ..params import TimeField
from .schemas import (
    MAX_GRACE_SECONDS, DeadLetterFilterSchema, EndpointCreateSchema, EndpointUpdateSchema, EventCreateSchema,
    HmacConfigSchema, MerchantCreateSchema, MerchantUpdateSchema, PriorityField, PriorityTestSchema, PurgeSchema, RecoverSchema, RotateSecretSchema, SourceCreateSchema, SourceRotateSchema,
    SourceUpdateSchema, validate_endpoint_url,
)

bp = Blueprint("openapi", __name__)

REQUEST_SCHEMAS: dict[str, type[Schema]] = {
    "MerchantCreate": MerchantCreateSchema,
    "MerchantUpdate": MerchantUpdateSchema,
    "PriorityRule": ms.PriorityRuleSchema,
    "MerchantSettings": ms.SettingsSchema,
    "RetrySettings": ms.RetrySchema,
    "NotificationSettings": ms.NotificationsSchema,
    "NoticePreference": ms.NoticeSchema,
    "ReceiptPreference": ms.ReceiptNoticeSchema,
    "RetentionSettings": ms.RetentionSchema,
    "C2BValidationSettings": ms.C2BValidationSchema,
    "EndpointCreate": EndpointCreateSchema,
    "EndpointUpdate": EndpointUpdateSchema,
    "RotateSecret": RotateSecretSchema,
    "EventCreate": EventCreateSchema,
    "DeadLetterFilter": DeadLetterFilterSchema,
    "Purge": PurgeSchema,
    "Recover": RecoverSchema,
    "PriorityTest": PriorityTestSchema,
    "HmacConfig": HmacConfigSchema,
    "SourceCreate": SourceCreateSchema,
    "SourceUpdate": SourceUpdateSchema,
    "SourceRotate": SourceRotateSchema,
}
_NAMES = {schema: name for name, schema in REQUEST_SCHEMAS.items()}
_PRIORITIES = ["urgent", "high", "normal", "low"]


def _field_schema(field: fields.Field) -> dict[str, Any]:
    """JSON Schema of one marshmallow field, with its validators as constraints."""
    out: dict[str, Any]
    if isinstance(field, (PriorityField, ms.PriorityLabel)):
        out = {"type": "string", "enum": _PRIORITIES}
    elif isinstance(field, ms.KesAmount):
        out = {"oneOf": [{"type": "string"}, {"type": "number"}], "description": "an amount in KES"}
    elif isinstance(field, TimeField):
        out = {"type": "string", "format": "date-time"}
    elif isinstance(field, fields.Email):
        out = {"type": "string", "format": "email"}
    elif isinstance(field, fields.String):
        out = {"type": "string"}
    elif isinstance(field, fields.Integer):
        out = {"type": "integer"}
    elif isinstance(field, fields.Float):
        out = {"type": "number"}
    elif isinstance(field, fields.Boolean):
        out = {"type": "boolean"}
    elif isinstance(field, fields.Dict):
        out = {"type": "object"}
    elif isinstance(field, fields.List):
        out = {"type": "array", "items": _field_schema(field.inner)}
    elif isinstance(field, fields.Nested):
        out = {"$ref": f"#/components/schemas/{_NAMES[type(field.schema)]}"}
    else:
        out = {}
    array = out.get("type") == "array"
    for validator in field.validators:
        if isinstance(validator, validate.Length):
            if validator.min is not None:
                out["minItems" if array else "minLength"] = validator.min
            if validator.max is not None:
                out["maxItems" if array else "maxLength"] = validator.max
        elif isinstance(validator, validate.Range):
            if validator.min is not None:
                out["minimum"] = validator.min
            if validator.max is not None:
                out["maximum"] = validator.max
        elif isinstance(validator, validate.OneOf):
            out["enum"] = list(validator.choices)
        elif isinstance(validator, validate.Regexp):
            out["pattern"] = validator.regex.pattern
        elif validator is validate_endpoint_url:
            out.update(format="uri", description="absolute http(s) URL without credentials")
    if field.allow_none and "$ref" not in out:
        out["nullable"] = True
    return out


def schema_of(schema: type[Schema]) -> dict[str, Any]:
    """JSON Schema of a marshmallow request schema (unknown fields are refused)."""
    instance = schema()
    properties = {name: _field_schema(field) for name, field in instance.fields.items()}
    required = [name for name, field in instance.fields.items() if field.required]
    out: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        out["required"] = required
    return out


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
        "next_after": {"type": "string", "nullable": True, "description": "pass as `after` for the next page"},
    }}


def _components() -> dict[str, Any]:
    schemas = {name: schema_of(schema) for name, schema in REQUEST_SCHEMAS.items()}
    schemas["Error"] = {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["code", "message"], "properties": {
            "code": {"type": "string"}, "message": {"type": "string"},
            "fields": {"type": "object", "description": "marshmallow's messages by field"},
        }}}}
    schemas["Merchant"] = {"type": "object", "properties": {
        "id": _ID, "name": {"type": "string"}, "notification_email": {"type": "string", "nullable": True},
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
        "event_types": {"type": "array", "items": {"type": "string"}, "nullable": True},
        "enabled": {"type": "boolean"},
        "rate_limit_per_second": {"type": "integer", "nullable": True},
        "max_in_flight": {"type": "integer", "nullable": True},
        "previous_secret_expires_at": {**_TIME, "nullable": True},
        "created_at": _TIME, "updated_at": _TIME,
    }}
    schemas["EndpointWithSecret"] = {"allOf": [_ref("Endpoint"), {"type": "object", "properties": {
        "secret": {"type": "string", "description": "whsec_ signing secret; shown only in this answer"}}}]}
    schemas["EventId"] = {"type": "object", "properties": {"id": _ID}}
    schemas["Delivery"] = {"type": "object", "properties": {
        "id": _ID, "event_id": _ID, "endpoint_id": _ID, "merchant_id": _ID,
        "state": {"type": "string", "enum": ["pending", "sending", "done", "dead"]},
        "attempts": {"type": "integer"}, "priority": {"type": "integer", "minimum": 0, "maximum": 3},
        "last_status": {"type": "integer", "nullable": True},
        "last_category": {"type": "string", "nullable": True}, "last_error": {"type": "string", "nullable": True},
        "next_attempt_at": _TIME, "dead_at": {**_TIME, "nullable": True},
        "delivered_at": {**_TIME, "nullable": True}, "created_at": _TIME,
    }}
    schemas["Count"] = {"type": "object", "additionalProperties": {"type": "integer"},
                        "description": "how many rows the operation changed, e.g. {\"retried\": 3}"}
    schemas["Source"] = {"type": "object", "properties": {
        "id": _ID, "merchant_id": _ID, "provider": {"type": "string", "enum": list(PROVIDERS)},
        "description": {"type": "string"}, "callback_url": {"type": "string", "format": "uri"},
        "hmac": {**_ref("HmacConfig"), "nullable": True}, "ip_allowlist_enabled": {"type": "boolean"},
        "allowed_ips": {"type": "array", "items": {"type": "string"}, "nullable": True},
        "enabled": {"type": "boolean"}, "previous_secret_expires_at": {**_TIME, "nullable": True},
        "created_at": _TIME, "updated_at": _TIME,
    }}
    schemas["ApiKey"] = {"type": "object", "properties": {
        "id": _ID, "merchant_id": {**_ID, "nullable": True, "description": "null for an admin key"},
        "label": {"type": "string"},
        "last4": {"type": "string", "nullable": True, "description": "the key's last four characters"},
        "created_at": _TIME, "last_used_at": {**_TIME, "nullable": True, "description": "to the minute"},
        "revoked_at": {**_TIME, "nullable": True},
    }, "description": "an API key as listed: never the key itself"}
    schemas["SourceWithSecret"] = {"allOf": [_ref("Source"), {"type": "object", "properties": {
        "secret": {"type": "string", "description": "a generated secret; shown only in this answer"}}}]}
    return {
        "schemas": schemas,
        "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer",
                                       "description": "`phk_…` admin or merchant API key"}},
    }


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
                                  "responses": {"200": {"description": "OpenAPI 3.0 document"}}}},
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


def document(app: Flask) -> dict[str, Any]:
    """The OpenAPI document of ``app``."""
    return {
        "openapi": "3.0.3",
        "info": {"title": "Payhook webhook-service", "version": "1",
                 "description": "Provider callbacks in; merchant, endpoint and event management API."},
        "paths": {**_api_paths(), **_callback_paths(app)},
        "components": _components(),
    }


@bp.get("/openapi.json")
def openapi_json():
    """The OpenAPI document of this service."""
    return jsonify(document(current_app))
