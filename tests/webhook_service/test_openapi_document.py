"""GET /openapi.json (OpenAPI 3.1) describes every route of the app and every webhook Payhook sends."""

from __future__ import annotations

import shutil

import pytest
from openapi_spec_validator import validate

from payhook_shared import catalog
from payhook_webhook.api.openapi import openapi_path
from payhook_webhook.app import create_app


@pytest.fixture(scope="module")
def webhook_app(sqlite_template, redis_server, tmp_path_factory):
    """The app on SQLite only, once for the module: the document is made from the routes, the schemas and the
    catalog, never from the database, so these tests run once rather than once per database."""
    path = tmp_path_factory.mktemp("openapi") / "payhook.db"
    shutil.copy(sqlite_template, path)
    app = create_app({"database_url": f"sqlite:///{path}", "redis_url": redis_server.url, "log_format": "text"})
    yield app
    app.extensions["payhook.store"].dispose()


@pytest.fixture(scope="module")
def document(webhook_app):
    """GET /openapi.json, as served."""
    response = webhook_app.test_client().get("/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def test_every_route_is_documented(webhook_app, document):
    assert document["openapi"] == "3.1.0"
    missing = []
    for rule in webhook_app.url_map.iter_rules():
        # The console (/console) is HTML pages for people, not part of the JSON API.
        if rule.endpoint == "static" or rule.endpoint.startswith("console."):
            continue
        path = document["paths"].get(openapi_path(rule.rule))
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            if path is None or method.lower() not in path:
                missing.append(f"{method} {rule.rule}")
    assert missing == []


def test_request_schemas_come_from_the_marshmallow_schemas(document):
    schemas = document["components"]["schemas"]
    event = schemas["EventCreate"]
    assert set(event["required"]) == {"type", "data", "idempotency_key"}
    assert event["properties"]["priority"]["enum"] == ["urgent", "high", "normal", "low", None]
    assert event["additionalProperties"] is False
    endpoint = schemas["EndpointCreate"]["properties"]
    assert endpoint["url"]["format"] == "uri" and endpoint["event_types"]["type"] == ["array", "null"]
    assert schemas["MerchantCreate"]["properties"]["priority_rules"]["items"] == {
        "$ref": "#/components/schemas/PriorityRule"}


def test_every_reference_resolves(document):
    names = set(document["components"]["schemas"])

    def refs(node):
        if isinstance(node, dict):
            if "$ref" in node:
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    assert {r.rsplit("/", 1)[1] for r in refs(document)} <= names


def test_rule_conversion():
    assert openapi_path("/cb/<merchant_id>/<token>/stk") == "/cb/{merchant_id}/{token}/stk"
    assert openapi_path("/files/<path:name>") == "/files/{name}"


def test_the_document_is_valid_openapi_3_1(document):
    validate(document)


def test_webhooks_are_the_event_catalog(document):
    webhooks = document["webhooks"]
    assert len(webhooks) == len(catalog.ENTRIES)
    for entry in catalog.ENTRIES:
        name = entry.type if entry.type != "*" else f"* ({entry.provider})"
        content = webhooks[name]["post"]["requestBody"]["content"]["application/json"]
        assert content["schema"] == entry.body_schema()
        assert content["example"]["type"] == entry.example_type
