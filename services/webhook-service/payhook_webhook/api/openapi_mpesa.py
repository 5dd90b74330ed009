"""Daraja through Payhook's part of ``/openapi.json``: credentials, STK Push and payment intents.

``openapi.py`` merges these paths and components into the document; request bodies are generated
there from ``REQUEST_SCHEMAS``, as every other body is.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema

from payhook_shared.daraja.credentials import ENVIRONMENTS, SECRET_FIELDS
from payhook_shared.store import IntentState

from ..schemas import DarajaCredentialsSchema, IntentRegisterSchema, StkPushSchema

REQUEST_SCHEMAS: dict[str, type[Schema]] = {
    "DarajaCredentials": DarajaCredentialsSchema, "StkPush": StkPushSchema, "IntentRegister": IntentRegisterSchema,
}

_ID = {"type": "string", "pattern": "^[a-z]+_[0-9a-f]+$"}
_TIME = {"type": "string", "format": "date-time"}
_TEXT = {"type": "string"}
_MAYBE_TEXT = {"type": ["string", "null"]}
_SECURED = {"security": [{"apiKey": []}]}
_PAGE_PARAMS = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 50}},
    {"name": "after", "in": "query", "description": "the `next_after` of the previous page",
     "schema": {"type": "string"}},
]
_STATES = [s.value for s in IntentState]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _answer(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    meaning = {400: "invalid body or query; the message names the field",
               401: "missing, malformed, unknown or revoked API key",
               404: "no such resource (another merchant's answers the same)",
               415: "the body is not declared as application/json",
               422: "Daraja refused the request or the merchant's credentials; `fields` carries Daraja's "
                    "`daraja_error_code` and `daraja_request_id`",
               429: "more Daraja calls a second than DARAJA_RATE_LIMIT allows for these credentials, or Daraja's 429",
               502: "Daraja did not answer in time, could not be reached, or failed; safe to retry with the same "
                    "idempotency_key",
               503: "the store could not record the request, or no credentials key is configured"}
    return {str(s): _answer(_ref("Error"), meaning[s]) for s in statuses}


def _param(name: str, where: str = "path", schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": where, "required": where == "path", "schema": schema or {"type": "string"}}


def _body(name: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(name)}}}


def components() -> dict[str, Any]:
    """The answers' schemas (request bodies come from ``REQUEST_SCHEMAS``)."""
    return {
        "DarajaCredentialsSummary": {"type": "object", "required": ["configured"], "properties": {
            "configured": {"type": "boolean"},
            "environment": {"type": "string", "enum": list(ENVIRONMENTS)},
            "shortcode": _TEXT,
            "set": {"type": "object", "description": "which secret fields are stored (never their values)",
                    "properties": {name: {"type": "boolean"} for name in SECRET_FIELDS}},
            "updated_at": _TIME,
        }, "description": "a merchant's Daraja credentials as shown: never a secret"},
        "PaymentIntent": {"type": "object", "properties": {
            "id": _ID, "merchant_id": _ID, "checkout_request_id": _TEXT, "merchant_request_id": _MAYBE_TEXT,
            "amount": {**_MAYBE_TEXT, "description": "KES, two decimals"}, "currency": _TEXT,
            "phone": {**_MAYBE_TEXT, "description": "masked: 254708***149"},
            "account_reference": _MAYBE_TEXT, "description": _MAYBE_TEXT,
            "state": {"type": "string", "enum": _STATES},
            "source": {"type": "string", "enum": ["api", "registered"]},
            "idempotency_key": _MAYBE_TEXT,
            "result_code": {**_MAYBE_TEXT, "description": "the STK callback's ResultCode once settled"},
            "event_id": {**_MAYBE_TEXT, "description": "the event of the STK callback that settled it"},
            "created_at": _TIME, "resolved_at": {"type": ["string", "null"], "format": "date-time"},
        }},
    }


def paths() -> dict[str, Any]:
    """The routes of ``api/mpesa.py``."""
    page = {"type": "object", "required": ["data", "has_more", "next_after"], "properties": {
        "data": {"type": "array", "items": _ref("PaymentIntent")}, "has_more": {"type": "boolean"},
        "next_after": {"type": ["string", "null"], "description": "pass as `after` for the next page"}}}
    intent_ok = {"201": _answer(_ref("PaymentIntent"), "recorded"),
                 "200": _answer(_ref("PaymentIntent"), "a repeat: the intent recorded the first time")}
    return {
        "/v1/merchants/{merchant_id}/daraja-credentials": {
            "parameters": [_param("merchant_id")],
            "put": {**_SECURED, "summary": "Set the merchant's Daraja credentials (write-only, encrypted at rest)",
                    "description": "A secret field left out keeps its stored value; the consumer key and secret "
                                   "are required the first time. The answer never contains a secret.",
                    "requestBody": _body("DarajaCredentials"),
                    "responses": {"200": _answer(_ref("DarajaCredentialsSummary"), "stored"),
                                  **_errors(400, 401, 404, 415, 503)}},
            "get": {**_SECURED, "summary": "Whether the merchant has Daraja credentials, and which fields are set",
                    "responses": {"200": _answer(_ref("DarajaCredentialsSummary"), "the summary"),
                                  **_errors(401, 404)}},
            "delete": {**_SECURED, "summary": "Remove the merchant's Daraja credentials",
                       "responses": {"204": {"description": "removed"}, **_errors(401, 404)}},
        },
        "/v1/mpesa/stk-push": {
            "post": {**_SECURED, "summary": "STK Push through Payhook: Daraja prompts the customer to pay",
                     "description": "Payhook calls Daraja with the merchant's credentials and its own Payhook STK "
                                    "callback URL, records a pending payment intent and answers with Daraja's "
                                    "CheckoutRequestID and MerchantRequestID. The same idempotency_key again "
                                    "answers 200 with the first intent and calls Daraja no more.",
                     "requestBody": _body("StkPush"),
                     "responses": {**intent_ok, **_errors(400, 401, 404, 415, 422, 429, 502, 503)}},
        },
        "/v1/mpesa/intents": {
            "post": {**_SECURED, "summary": "Register an STK Push the merchant made itself, for Payhook to follow",
                     "requestBody": _body("IntentRegister"),
                     "responses": {**intent_ok, **_errors(400, 401, 404, 415, 503)}},
            "get": {**_SECURED, "summary": "List payment intents, oldest first (a merchant key sees its own)",
                    "parameters": _PAGE_PARAMS + [
                        _param("merchant_id", "query"),
                        _param("state", "query", {"type": "string", "enum": _STATES}),
                        _param("source", "query", {"type": "string", "enum": ["api", "registered"]}),
                        _param("checkout_request_id", "query"), _param("account_reference", "query"),
                        _param("since", "query", _TIME), _param("until", "query", _TIME)],
                    "responses": {"200": _answer(page, "one page"), **_errors(400, 401, 404)}},
        },
        "/v1/mpesa/intents/{intent_id}": {
            "parameters": [_param("intent_id")],
            "get": {**_SECURED, "summary": "A payment intent",
                    "responses": {"200": _answer(_ref("PaymentIntent"), "the intent"), **_errors(401, 404)}},
        },
    }
