"""GET /openapi.json describes every route of the app."""

from __future__ import annotations

from payhook_webhook.api.openapi import openapi_path


def test_every_route_is_documented(webhook_app, client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document = response.get_json()
    assert document["openapi"].startswith("3.")
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


def test_request_schemas_come_from_the_marshmallow_schemas(client):
    schemas = client.get("/openapi.json").get_json()["components"]["schemas"]
    event = schemas["EventCreate"]
    assert set(event["required"]) == {"type", "data", "idempotency_key"}
    assert event["properties"]["priority"]["enum"] == ["urgent", "high", "normal", "low"]
    assert event["additionalProperties"] is False
    endpoint = schemas["EndpointCreate"]["properties"]
    assert endpoint["url"]["format"] == "uri" and endpoint["event_types"]["nullable"] is True
    assert schemas["MerchantCreate"]["properties"]["priority_rules"]["items"] == {
        "$ref": "#/components/schemas/PriorityRule"}


def test_every_reference_resolves(client):
    document = client.get("/openapi.json").get_json()
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
