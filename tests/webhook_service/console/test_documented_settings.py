"""Every documented setting, merchant and endpoint, set through the API and the console and read back through both.

The examples below name every field of the shared settings schema, of the
merchant and of the endpoint schemas (the tests check that, so a new setting
needs an example here); each is set through ``PATCH``/``POST`` and through the console's real
forms with their CSRF tokens, read back through ``GET`` and through the page's
form values, and found in the audit log.
"""

from __future__ import annotations

from typing import Any

import pytest
from markupsafe import escape
from marshmallow import Schema, fields
from sqlalchemy import select

from factories import api_key, merchant_with_endpoints
from payhook_shared import merchant_settings
from payhook_shared.store import AuditEntry
from payhook_webhook.schemas import EndpointCreateSchema, EndpointUpdateSchema, MerchantUpdateSchema
from payhook_webhook.console import settings_form
from test_console_settings import FormValues, console_app, signed_in  # noqa: F401 (console_app: a fixture)

ALL_NOTICES_OFF = {kind: {"enabled": False} for kind in merchant_settings.NOTICE_DEFAULTS}

# (section, value as set, value as read back): together they name every field of merchant_settings.SettingsSchema.
MERCHANT_SETTINGS = [
    ("priority_rules", [{"event_type": "mpesa.stk_push", "status": "failed", "min_amount_minor": 100000,
                         "priority": "urgent"}],
     [{"event_type": "mpesa.stk_push", "status": "failed", "min_amount_minor": 100000, "priority": "urgent"}]),
    ("retry", {"profile": "gentle"}, {"profile": "gentle"}),
    ("retry", {"schedule": [10, 60, 600]}, {"schedule": [10.0, 60.0, 600.0]}),
    ("notifications", {
        "payment_received": {"enabled": True, "recipients": ["books@shop.test", "owner@shop.test"]},
        "payment_failed": {"enabled": True, "recipients": ["ops@shop.test"]},
        "receipt": {"enabled": True, "fallback_email": "buyer@demo.test"},
        "endpoint_failing": {"enabled": False, "recipients": ["dev@shop.test"]},
        "endpoint_disabled": {"enabled": True, "recipients": ["dev@shop.test"]},
        "payment_unresolved": {"enabled": True, "recipients": ["orders@shop.test"]},
        "transaction_unresolved": {"enabled": True, "recipients": ["payouts@shop.test"]}}, None),
    ("notifications", ALL_NOTICES_OFF, None),
    ("retention", {"raw_payload_days": 14, "events_days": 400}, None),
    ("c2b_validation", {"mode": "rules", "min_amount": "10", "max_amount": 150000, "account_pattern": "INV-[0-9]+",
                        "shortcodes": ["600966", "600967"], "require_name": True, "fallback": "reject"},
     {"mode": "rules", "min_amount": "10.00", "max_amount": "150000.00", "account_pattern": "INV-[0-9]+",
      "shortcodes": ["600966", "600967"], "require_name": True, "fallback": "reject"}),
    ("c2b_validation", {"mode": "forward", "forward_url": "http://127.0.0.1:9/validate", "forward_timeout": 2.5,
                        "require_name": False, "fallback": "accept"}, None),
]

# A merchant's own fields, and a value for each (its priority rules are a section of its settings above).
MERCHANT_FIELDS = [("name", "Renamed Shop"), ("notification_email", "books@shop.test"), ("notification_email", None),
                   ("enabled", False)]

# Endpoint settings as created, then as changed: together they name every field of the endpoint schemas.
ENDPOINT = {"url": "http://127.0.0.1:9/hooks", "description": "shop hooks",
            "event_types": ["mpesa.stk_push", "mpesa.c2b.confirmation", "stripe.*"], "rate_limit_per_second": 5,
            "max_in_flight": 2,
            "custom_headers": {"Authorization": "Bearer shop-gateway-token", "X-Shop-Tenant": "north"}}
ENDPOINT_CHANGED = {"url": "http://127.0.0.2:9/other", "description": "moved",
                    "event_types": ["mpesa.c2b.validation", "order.paid"], "rate_limit_per_second": 50,
                    "max_in_flight": 10, "custom_headers": {"X-Shop-Tenant": "south"}}


def as_audited(fields: dict[str, Any]) -> dict[str, Any]:
    """Endpoint fields as the audit log keeps them: custom header values are credentials, so names only."""
    if fields.get("custom_headers") is None:
        return fields
    return {**fields, "custom_headers": {name: "[redacted]" for name in fields["custom_headers"]}}


def typed(fields: dict[str, Any]) -> dict[str, str]:
    """Endpoint fields as a person types them into the console's form."""
    def one(value: Any) -> str:
        if isinstance(value, list):
            return ", ".join(value)
        if isinstance(value, dict):
            return "\n".join(f"{name}: {v}" for name, v in value.items())
        return str(value)
    return {name: one(value) for name, value in fields.items()}


def leaves(schema: Schema, prefix: str = "") -> set[str]:
    """Every field path of ``schema`` (``c2b_validation.forward_url``), nested schemas walked."""
    out = set()
    for name, field in schema.fields.items():
        inner = field.inner if isinstance(field, fields.List) else field
        if isinstance(inner, fields.Nested):
            out |= leaves(inner.schema, f"{prefix}{name}.")
        else:
            out.add(f"{prefix}{name}")
    return out


def paths(value: Any, prefix: str) -> set[str]:
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return set().union(*(paths(item, prefix) for item in value))
    if isinstance(value, dict):
        return set().union(*(paths(v, f"{prefix}.{k}") for k, v in value.items()))
    return {prefix}


def test_the_examples_name_every_documented_setting():
    covered = set().union(*(paths(value, section) for section, value, _ in MERCHANT_SETTINGS))
    assert covered == leaves(merchant_settings.SettingsSchema())
    assert {name for name, _ in MERCHANT_FIELDS} | {"priority_rules"} == set(MerchantUpdateSchema().fields)
    assert set(ENDPOINT) | {"enabled"} == set(EndpointUpdateSchema().fields) == set(EndpointCreateSchema().fields)
    assert set(ENDPOINT_CHANGED) == set(ENDPOINT) == set(EndpointUpdateSchema.FIELDS) - {"enabled"}


def form_fields(section: str, value: Any) -> dict[str, str | None]:
    """The settings form's fields that set ``section`` to ``value``, as a person would type them."""
    if section == "priority_rules":
        return {f"rule-{i}-{k}": str(v) for i, rule in enumerate(value) for k, v in rule.items()}
    if section == "retry":
        if "schedule" in value:
            return {"retry-profile": "custom", "retry-schedule": ", ".join(str(s) for s in value["schedule"])}
        return {"retry-profile": value["profile"]}
    if section == "notifications":
        out: dict[str, str | None] = {}
        for kind, pref in value.items():
            out[f"notice-{kind}-enabled"] = "on" if pref["enabled"] else None
            if "recipients" in pref:
                out[f"notice-{kind}-recipients"] = ", ".join(pref["recipients"])
            if "fallback_email" in pref:
                out[f"notice-{kind}-fallback_email"] = pref["fallback_email"]
        return out
    if section == "retention":
        return {f"retention-{k}": str(v) for k, v in value.items()}
    out = {f"c2b-{k}": str(v) for k, v in value.items()}
    if "shortcodes" in value:
        out["c2b-shortcodes"] = ", ".join(value["shortcodes"])
    if "require_name" in value:
        out["c2b-require_name"] = "true" if value["require_name"] else "false"
    return out


def console_settings(client, merchant_id: str) -> tuple[dict[str, str], dict[str, Any]]:
    """The settings page's form values, and the settings they stand for (what saving them unchanged sends)."""
    page = client.get(f"/console/settings?merchant={merchant_id}")
    assert page.status_code == 200
    parser = FormValues()
    parser.feed(page.get_data(as_text=True))
    return parser.values, settings_form.read(parser.values, {"retry": {}})


def audited(store, action: str) -> list[AuditEntry]:
    with store.read() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)))


@pytest.mark.parametrize("section, value, expected", MERCHANT_SETTINGS,
                         ids=[f"{s}-{i}" for i, (s, _, _) in enumerate(MERCHANT_SETTINGS)])
def test_each_merchant_setting_through_the_api_and_the_console(console_app, section, value, expected):
    expected = value if expected is None else expected
    store = console_app.extensions["payhook.store"]
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a", email="owner@shop.test")
    api = console_app.test_client()
    headers = api_key(store, merchant.id)
    url = f"/v1/merchants/{merchant.id}/settings"
    console = signed_in(console_app, merchant.id)

    # Set through the API; read back through the API and the console.
    response = api.patch(url, headers=headers, json={section: value})
    assert response.status_code == 200, response.get_json()
    assert api.get(url, headers=headers).get_json()[section] == expected
    assert console_settings(console, merchant.id)[1][section] == expected
    assert audited(store, "update_settings")[-1].details["changes"] == {section: expected}

    # Back to the defaults, then set through the console's form; read back through both.
    assert api.patch(url, headers=headers, json={section: None}).get_json()[section] in ([], {})
    form, _ = console_settings(console, merchant.id)
    if section == "priority_rules":
        form = {k: v for k, v in form.items() if not k.startswith("rule-")}
    form.update(form_fields(section, value))
    response = console.post("/console/settings", data={k: v for k, v in form.items() if v is not None})
    assert response.status_code == 302, response.get_data(as_text=True)
    assert api.get(url, headers=headers).get_json()[section] == expected
    assert console_settings(console, merchant.id)[1][section] == expected
    assert audited(store, "update_settings")[-1].details["changes"][section] == expected


def console_merchant_form(page: str) -> dict[str, str]:
    parser = FormValues("/console/settings/merchant")
    parser.feed(page)
    return parser.values


def console_merchant(client, merchant_id: str) -> dict[str, Any]:
    """A merchant's own fields as the console's settings page shows them in its merchant form."""
    values = console_merchant_form(client.get(f"/console/settings?merchant={merchant_id}").get_data(as_text=True))
    return {"name": values["name"], "notification_email": values["notification_email"] or None,
            "enabled": values["enabled"] == "true", "csrf_token": values["csrf_token"]}


@pytest.mark.parametrize("name, value", MERCHANT_FIELDS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(MERCHANT_FIELDS)])
def test_each_merchant_field_through_the_api_and_the_console(console_app, name, value):
    store = console_app.extensions["payhook.store"]
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a", email="owner@shop.test")
    api = console_app.test_client()
    headers = api_key(store)  # an admin key: only an operator may disable a merchant
    url = f"/v1/merchants/{merchant.id}"
    console = signed_in(console_app, None)
    before = api.get(url, headers=headers).get_json()
    original = {k: before[k] for k, _ in MERCHANT_FIELDS}

    response = api.patch(url, headers=headers, json={name: value})
    assert response.status_code == 200, response.get_json()
    assert api.get(url, headers=headers).get_json()[name] == console_merchant(console, merchant.id)[name] == value
    assert audited(store, "update_merchant")[-1].details == {"changes": {name: value}}

    assert api.patch(url, headers=headers, json=original).status_code == 200
    form = {**console_merchant(console, merchant.id), "merchant": merchant.id, name: value}
    form = {k: ("" if v is None else str(v).lower() if isinstance(v, bool) else v) for k, v in form.items()}
    response = console.post("/console/settings/merchant", data=form)
    assert response.status_code == 302, response.get_data(as_text=True)
    assert api.get(url, headers=headers).get_json()[name] == console_merchant(console, merchant.id)[name] == value
    assert audited(store, "update_merchant")[-1].details == {"changes": {name: value}}


def test_a_merchant_key_cannot_disable_its_merchant_in_the_console(console_app):
    store = console_app.extensions["payhook.store"]
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    console = signed_in(console_app, merchant.id)
    page = console.get("/console/settings").get_data(as_text=True)
    assert 'name="enabled"' not in page
    form = {**console_merchant_form(page), "enabled": "false"}
    assert console.post("/console/settings/merchant", data=form).status_code == 403
    assert audited(store, "update_merchant") == []


def test_a_private_forward_url_is_refused_through_both(console_app):
    store = console_app.extensions["payhook.store"]
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    api = console_app.test_client()
    url = f"/v1/merchants/{merchant.id}/settings"
    refused = {"mode": "forward", "forward_url": "http://10.1.2.3/validate"}  # not in the test allowlist
    response = api.patch(url, headers=api_key(store, merchant.id), json={"c2b_validation": refused})
    assert response.status_code == 400
    assert "c2b_validation.forward_url: endpoint host 10.1.2.3 is private" in response.get_json()["error"]["message"]
    console = signed_in(console_app, merchant.id)
    form, _ = console_settings(console, merchant.id)
    response = console.post("/console/settings", data={**form, **form_fields("c2b_validation", refused)})
    assert response.status_code == 400 and "10.1.2.3 is private" in response.get_data(as_text=True)
    assert audited(store, "update_settings") == []


def console_endpoint(client, endpoint_id: str) -> dict[str, Any]:
    """An endpoint's settings as the console's endpoints page shows them in its edit form."""
    page = client.get("/console/endpoints").get_data(as_text=True)
    parser = FormValues(f"/console/endpoints/{endpoint_id}/edit")
    parser.feed(page)
    row = page[page.index(f'<tr id="{endpoint_id}">'):]
    enabled = row[:row.index("</tr>")].count('<span class="badge ok">enabled</span>') == 1
    return {**settings_form.read_endpoint(parser.values), "enabled": enabled}


def api_endpoint(client, headers, endpoint_id: str) -> dict[str, Any]:
    body = client.get(f"/v1/endpoints/{endpoint_id}", headers=headers).get_json()
    return {k: body[k] for k in EndpointUpdateSchema.FIELDS}


def test_each_endpoint_setting_through_the_api_and_the_console(console_app):
    store = console_app.extensions["payhook.store"]
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    api = console_app.test_client()
    headers = api_key(store, merchant.id)
    console = signed_in(console_app, merchant.id)
    token = FormValues("/console/endpoints")
    token.feed(console.get("/console/endpoints").get_data(as_text=True))
    csrf = token.values["csrf_token"]

    # Through the API: created with every field, then each field changed.
    response = api.post(f"/v1/merchants/{merchant.id}/endpoints", headers=headers, json=ENDPOINT)
    assert response.status_code == 201, response.get_json()
    by_api = response.get_json()["id"]
    assert api_endpoint(api, headers, by_api) == console_endpoint(console, by_api) == {**ENDPOINT, "enabled": True}
    for name, value in [*ENDPOINT_CHANGED.items(), ("enabled", False)]:
        assert api.patch(f"/v1/endpoints/{by_api}", headers=headers, json={name: value}).status_code == 200
        assert api_endpoint(api, headers, by_api)[name] == console_endpoint(console, by_api)[name] == value
        assert audited(store, "update_endpoint")[-1].details == {"changes": as_audited({name: value})}
    assert audited(store, "create_endpoint")[-1].target == by_api

    # Through the console: added with every field, then edited, disabled and enabled.
    form = {"csrf_token": csrf, **typed(ENDPOINT)}
    response = console.post("/console/endpoints", data=form)
    assert response.status_code == 200, response.get_data(as_text=True)
    by_console = audited(store, "create_endpoint")[-1].target
    assert by_console != by_api
    assert api_endpoint(api, headers, by_console) == console_endpoint(console, by_console) == {**ENDPOINT,
                                                                                             "enabled": True}
    changed = {**form, **typed(ENDPOINT_CHANGED)}
    assert console.post(f"/console/endpoints/{by_console}/edit", data=changed).status_code == 302
    assert api_endpoint(api, headers, by_console) == console_endpoint(console, by_console) == {
        **ENDPOINT_CHANGED, "enabled": True}
    assert audited(store, "update_endpoint")[-1].details == {"changes": as_audited(ENDPOINT_CHANGED)}
    assert "shop-gateway-token" not in str([entry.details for entry in audited(store, "create_endpoint")])
    for action, enabled in (("disable", False), ("enable", True)):
        assert console.post(f"/console/endpoints/{by_console}/{action}", data={"csrf_token": csrf}).status_code == 302
        assert api_endpoint(api, headers, by_console)["enabled"] is enabled
        assert console_endpoint(console, by_console)["enabled"] is enabled
    # Limits cleared in the form mean unlimited again, and no header lines no custom headers.
    cleared = {**changed, "rate_limit_per_second": "", "max_in_flight": "", "event_types": "", "custom_headers": ""}
    assert console.post(f"/console/endpoints/{by_console}/edit", data=cleared).status_code == 302
    assert api_endpoint(api, headers, by_console) == {**ENDPOINT_CHANGED, "enabled": True, "event_types": None,
                                                      "rate_limit_per_second": None, "max_in_flight": None,
                                                      "custom_headers": None}


# (field, as typed in the console, as sent to the API, what the 400 says in both).
REFUSED = [
    ("rate_limit_per_second", "0", 0, "rate_limit_per_second"), ("max_in_flight", "many", "many", "max_in_flight"),
    ("url", "http://10.1.2.3/hooks", "http://10.1.2.3/hooks", "url"),
    ("event_types", "mpesa.stk_pushed", ["mpesa.stk_pushed"], "event_types.0: 'mpesa.stk_pushed' is not in the catalog"),
    ("event_types", "mpesa.*", ["mpesa.*"], "event_types.0: 'mpesa.*' is not a family in the catalog"),
    ("custom_headers", "Webhook-Signature: v1,forged", {"Webhook-Signature": "v1,forged"},
     "custom_headers: Webhook-Signature is set by Payhook"),
    ("custom_headers", "Content-Type: text/plain", {"Content-Type": "text/plain"},
     "custom_headers: Content-Type is set by Payhook"),
    ("custom_headers", "Transfer-Encoding: chunked", {"Transfer-Encoding": "chunked"},
     "custom_headers: Transfer-Encoding is set by Payhook"),
    ("custom_headers", "Bad Name: 1", {"Bad Name": "1"}, "custom_headers: 'Bad Name' is not a valid header name"),
]


@pytest.mark.parametrize("field, typed_value, api_value, message", REFUSED,
                         ids=[f"{f}-{i}" for i, (f, _, _, _) in enumerate(REFUSED)])
def test_the_console_refuses_what_the_api_refuses(console_app, field, typed_value, api_value, message):
    store = console_app.extensions["payhook.store"]
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    console = signed_in(console_app, merchant.id)
    token = FormValues("/console/endpoints")
    token.feed(console.get("/console/endpoints").get_data(as_text=True))
    form = {"csrf_token": token.values["csrf_token"], "url": "http://127.0.0.1:9/hooks", field: typed_value}
    response = console.post("/console/endpoints", data=form)
    assert response.status_code == 400 and str(escape(message)) in response.get_data(as_text=True)
    api = console_app.test_client()
    response = api.post(f"/v1/merchants/{merchant.id}/endpoints", headers=api_key(store, merchant.id),
                        json={"url": "http://127.0.0.1:9/hooks", field: api_value})
    assert response.status_code == 400 and message in response.get_json()["error"]["message"]
