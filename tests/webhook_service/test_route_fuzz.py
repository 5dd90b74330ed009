"""Property: no request to any route of the webhook-service answers 5xx, on SQLite and PostgreSQL.

Every rule of ``app.url_map`` and every method it takes, with generated path ids
(real ones of two merchants, unknown ones, any text, NUL anywhere), query
parameters, form fields and JSON bodies: each route's valid body with one value
replaced by another type, an amount written in any Unicode, a date at the edge
of the calendar, or NUL. The API is called with an admin key, a merchant key and
no key; the console with an operator's session, a merchant's and none. The
callback bodies themselves are fuzzed harder in test_callback_fuzz.py.

Beside the random tests, two sweeps send every hard case (amounts, dates, NUL)
to every node of every route's body and to the console's number and date
fields, so the known edges are tried on every run whatever the budget.
"""

from __future__ import annotations

import json
import os
from urllib.parse import quote

import pytest
from cryptography.fernet import Fernet
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import update

from factories import api_key, fixture_json, make_source, merchant_with_endpoints
from payhook_shared import ids
from payhook_shared.store import Delivery, Event, Merchant
from payhook_shared.store.models import utcnow
from payhook_webhook.app import create_app
from payhook_webhook.auth import create_api_key
from support import console_sign_in
from support_daraja import CONSUMER_KEY, CONSUMER_SECRET, PASSKEY, SHORTCODE, FakeDaraja

# Budgets, per test and database (two tests, so four runs with PostgreSQL): "ci" 500 examples, about
# 15-25 s per database on a loaded two-core machine; "local" 100 examples, a few seconds. PAYHOOK_FUZZ picks
# one (.ci/run sets ci); unset, the local profile runs.
_COMMON = {"deadline": None, "database": None, "print_blob": True,
           "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture]}
settings.register_profile("payhook-route-fuzz-ci", max_examples=500, **_COMMON)
settings.register_profile("payhook-route-fuzz-local", max_examples=100, **_COMMON)
FUZZ = settings(settings.get_profile(f"payhook-route-fuzz-{os.environ.get('PAYHOOK_FUZZ') or 'local'}"))

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
NUL_TEXT = st.text(max_size=16).flatmap(lambda s: st.integers(0, len(s)).map(lambda i: f"{s[:i]}\x00{s[i:]}"))
EDGE_DATES = st.one_of(
    st.sampled_from(["0001-01-01", "0001-01-01T00:00+23:59", "9999-12-31T23:59", "9999-12-31T23:59:59.999999-23:59",
                     "1969-12-31T23:59:59Z", "1970-01-01", "9999-01-01T00:00Z", "2026-11-01T08:30+25:00",
                     "2026-02-30", "2026-11-01T24:00", "+12026-01-01", "2026-11-01T08:30:00.1234567Z",
                     "２０２６-１１-０１", "2026-W44-1", "20261101T0830", ""]),
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()))
AMOUNT_EDGES = st.sampled_from(["1e999999", "1e-999999", "-1e999999", "NaN", "Infinity", "-0", "0x10", "1_000",
                                "１２３", "١٢٣", "²", "٣.٥", "9" * 400, "1.005", " 5 ", "5.", ".5", "250.50", "0"])
AMOUNTS = st.one_of(AMOUNT_EDGES, AMOUNT_EDGES, st.text(max_size=12), st.integers().map(str),
                    st.decimals(allow_nan=True, allow_infinity=True).map(str))
# The hard cases, each sent to every node of every route's body by the sweep below.
AMOUNT_CASES = ("1e999999", "1e-999999", "-1e999999", "NaN", "-Infinity", "0x10", "１２３", "٣.٥", "²", "9" * 400,
                "1.005", "", 10**400, -1, 1e308)
DATE_CASES = ("0001-01-01", "0001-01-01T00:00+23:59", "9999-12-31T23:59", "9999-12-31T23:59:59.999999-23:59",
              "2026-11-01T08:30+25:00", "２０２６-１１-０１", 0)
TEXT_VALUES = st.one_of(NUL_TEXT, EDGE_DATES, AMOUNTS, st.text(max_size=30))
JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                         TEXT_VALUES)
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=10), inner, max_size=3)), max_leaves=8)

QUERY_NAMES = ("since", "until", "limit", "after", "merchant_id", "endpoint_id", "category", "merchant", "endpoint",
               "event", "state", "status", "type", "q", "phone", "source", "checkout_request_id", "checkout",
               "reference", "account_reference")
FORM_NAMES = QUERY_NAMES + (
    "which", "confirm", "delivery_id", "url", "description", "grace_period_seconds", "api_key", "email",
    "retry-profile", "rule-0-event_type", "rule-0-status", "rule-0-min_amount_minor", "rule-0-priority",
    "rule-0-remove", "rule-1-priority", "rule-1-min_amount_minor", "notice-payment_received-enabled",
    "notice-payment_received-recipients", "notice-receipt-fallback_email", "retention-raw_payload_days",
    "retention-events_days", "environment", "shortcode", "consumer_key", "consumer_secret", "passkey",
    "initiator_name", "security_credential")


def _templates(rows: dict[str, str]) -> dict[str, dict]:
    """A valid body for each JSON route (by view name), for the fuzz to spoil one value at a time."""
    rules = [{"event_type": "shop.paid", "status": "succeeded", "min_amount_minor": 100, "priority": "high"}]
    endpoint = {"url": "http://127.0.0.1:9/hook", "description": "d", "event_types": ["shop.paid"], "enabled": True}
    dead = {"merchant_id": rows["merchant_id"], "endpoint_id": rows["endpoint_id"], "category": "server_error",
            "since": "2026-01-01T00:00Z", "until": "2026-12-31T00:00Z", "confirm": True}
    source = {"provider": "hmac", "secret": "s" * 16, "description": "d",
              "hmac": {"header": "X-Sig", "algorithm": "sha256", "encoding": "hex", "prefix": "",
                       "timestamp_header": "X-Ts", "tolerance_seconds": 300},
              "ip_allowlist_enabled": False, "allowed_ips": ["10.0.0.0/8"], "enabled": True}
    return {
        "management.create_merchant": {"name": "Shop", "notification_email": "a@shop.example", "priority_rules": rules},
        "management.update_merchant": {"name": "Shop", "notification_email": "a@shop.example",
                                       "priority_rules": rules, "enabled": True},
        "management.update_settings": {
            "priority_rules": rules, "retry": {"profile": "aggressive"},
            "notifications": {"payment_received": {"enabled": True, "recipients": ["a@shop.example"]},
                              "receipt": {"enabled": True, "fallback_email": "b@shop.example"}},
            "retention": {"raw_payload_days": 30, "events_days": 365}},
        "management.create_endpoint": endpoint, "management.update_endpoint": endpoint,
        "management.rotate_secret": {"grace_period_seconds": 60},
        "events.create_event": {"type": "shop.paid", "idempotency_key": "k", "merchant_id": rows["merchant_id"],
                                "data": {"status": "succeeded", "amount": "250.50", "currency": "KES"},
                                "priority": "high", "customer_email": "c@shop.example"},
        "deliveries.retry_dead_letters": dead, "deliveries.purge_dead_letters": dead,
        "deliveries.recover_endpoint": {"since": "2026-01-01T00:00Z"},
        "sources.create_source": source, "sources.update_source": source,
        "sources.rotate_source_secret": {"secret": "s" * 16, "grace_period_seconds": 60},
        # Small counts only: each one records an event.
        "testing.priority_test": {"count": 1},
        "callbacks.stk": fixture_json("mpesa/stk_success.json"),
        "mpesa.put_credentials": {"environment": "sandbox", "shortcode": SHORTCODE, "consumer_key": CONSUMER_KEY,
                                  "consumer_secret": CONSUMER_SECRET, "passkey": PASSKEY, "initiator_name": "api",
                                  "security_credential": "c2VjcmV0"},
        "mpesa.stk_push": {"amount": 10, "phone": "0708374149", "account_reference": "INV-1", "description": "Order",
                           "idempotency_key": "k", "merchant_id": rows["merchant_id"]},
        "mpesa.register_intent": {"checkout_request_id": "ws_CO_1", "merchant_request_id": "29115-1", "amount": "10",
                                  "phone": "254708374149", "account_reference": "INV-1", "description": "d",
                                  "idempotency_key": "k", "merchant_id": rows["merchant_id"]},
    }


def _paths(value, prefix: tuple = ()) -> list[tuple]:
    """The path of every node under ``value`` (keys and list indexes), the root excluded."""
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    return [path for key, child in children for path in [(*prefix, key), *_paths(child, (*prefix, key))]]


def _spoil(value, path: tuple, replacement):
    """``value`` with the node at ``path`` replaced (``None`` as replacement removes it from a dict)."""
    if not path:
        return replacement
    copy = dict(value) if isinstance(value, dict) else list(value)
    if len(path) == 1 and replacement is None and isinstance(copy, dict):
        del copy[path[0]]
    else:
        copy[path[0]] = _spoil(copy[path[0]], path[1:], replacement)
    return copy


class Site:
    """One app and the callers the fuzz speaks as, with the ids it draws from."""

    def __init__(self, app):
        self.app = app
        store = app.extensions["payhook.store"]
        self.store = store
        mine, [endpoint] = merchant_with_endpoints(store, "http://127.0.0.1:9/mine")
        theirs, [their_endpoint] = merchant_with_endpoints(store, "http://127.0.0.1:9/theirs")
        self.merchants = (mine.id, theirs.id)
        source, _ = make_source(store, mine, "flutterwave", "f" * 32)
        event_id, delivery_id = ids.new_id("evt"), ids.new_id("dlv")
        with store.write() as session:
            session.add(Event(id=event_id, merchant_id=mine.id, provider="api", type="shop.paid", status="succeeded",
                              priority=2, dedupe_key="api:fuzz", raw_payload="{}"))
            session.add(Delivery(id=delivery_id, event_id=event_id, endpoint_id=endpoint.id, merchant_id=mine.id,
                                 priority=2, state="dead", dead_at=utcnow(), last_category="server_error"))
        self.values = {
            "merchant_id": [mine.id, theirs.id], "endpoint_id": [endpoint.id, their_endpoint.id],
            "source_id": [source.id], "delivery_id": [delivery_id], "event_id": [event_id],
            "token": [mine.callback_token, theirs.callback_token, source.callback_token],
            "level": ["urgent", "low", "soon"], "action": ["disable", "enable", "rotate", "explode"],
            "filename": ["console.css", "../app.py"],
        }
        self.plausible = st.sampled_from(sorted({v for values in self.values.values() for v in values} | {
            "2026-01-01", "2026-01-01T08:30", "matching", "yes", "on", "server_error", "dead", "succeeded", "50",
            "3600", "http://127.0.0.1:9/new", "high", "aggressive", "a@shop.example", "30"}))
        self.templates = _templates({"merchant_id": mine.id, "endpoint_id": endpoint.id})
        self.callers = {"admin key": api_key(store), "merchant key": api_key(store, mine.id), "no key": {}}
        self.sessions = {"no session": (app.test_client(), "")}
        for who, merchant_id in (("operator session", None), ("merchant session", mine.id)):
            client = app.test_client()
            self.sessions[who] = (client, console_sign_in(client, create_api_key(store, merchant_id, who)[1]))

    def routes(self, console: bool) -> list[tuple[str, str, object]]:
        """Every (method, view, rule) of the console, or of everything else."""
        found = [(method, rule.endpoint, rule) for rule in self.app.url_map.iter_rules()
                 for method in sorted(rule.methods & set(METHODS)) if rule.endpoint.startswith("console.") == console]
        return sorted(found, key=lambda route: (route[0], route[2].rule))

    def path(self, data, rule) -> str:
        path = rule.rule
        for name in rule.arguments:
            known = self.values.get(name, [])
            # Mostly a real id, so most requests get past the lookup to what the view does with it.
            real = st.sampled_from(known) if known else TEXT_VALUES
            value = data.draw(st.one_of(real, real, real, TEXT_VALUES), label=name)
            path = path.replace(f"<{name}>", quote(value, safe=""))
        return path

    def restore(self) -> None:
        """Merchants enabled again: an admin may disable one, and the rest of the run should not all be 403."""
        with self.store.write() as session:
            session.execute(update(Merchant).where(Merchant.id.in_(self.merchants)).values(enabled=True))


@pytest.fixture
def site(database_url, redis_url):
    # STK Push calls Daraja: a local one, whose refusals of fuzzed credentials are the merchant's 4xx.
    daraja = FakeDaraja().start()
    app = create_app({"database_url": database_url, "redis_url": redis_url, "log_format": "text",
                      "log_level": "CRITICAL", "console_cookie_secure": False, "console_login_attempts": 10**6,
                      "endpoint_allowlist": ("127.0.0.0/8",), "daraja_sandbox_url": daraja.url,
                      "daraja_production_url": daraja.url, "credentials_keys": (Fernet.generate_key().decode(),),
                      "credentials_key_file": ""})
    app.config["TESTING"] = True
    yield Site(app)
    app.extensions["payhook.store"].dispose()
    daraja.stop()


def _fields(site, names: tuple[str, ...], size: int) -> st.SearchStrategy[dict[str, str]]:
    """Fields named mostly as the views read them, valued mostly as they expect."""
    return st.dictionaries(st.one_of(st.sampled_from(names), st.sampled_from(names), st.text(max_size=8)),
                           st.one_of(site.plausible, site.plausible, TEXT_VALUES), max_size=size)


def _query(site, data) -> dict[str, str]:
    return data.draw(st.one_of(st.just({}), _fields(site, QUERY_NAMES, 4)), label="query")


def _replacement(path: tuple) -> st.SearchStrategy:
    """What replaces the node at ``path``: for an amount or a date, mostly the hard cases of one."""
    name = str(path[-1])
    if "amount" in name:
        return st.one_of(AMOUNTS, AMOUNTS, AMOUNTS.map(lambda a: int(a) if a.isascii() and a.isdigit() else a),
                         JSON_VALUES)
    if name in ("since", "until"):
        return st.one_of(EDGE_DATES, EDGE_DATES, JSON_VALUES)
    return st.one_of(TEXT_VALUES, JSON_VALUES)


def _json_body(data, template) -> bytes:
    if template is not None and data.draw(st.sampled_from([True] * 9 + [False]), label="spoil the template?"):
        path = data.draw(st.sampled_from(_paths(template)), label="node")
        return json.dumps(_spoil(template, path, data.draw(_replacement(path), label="value"))).encode()
    return json.dumps(data.draw(st.one_of(st.just(template or {}), JSON_VALUES), label="json")).encode()


def _cases(path: tuple) -> tuple:
    name = str(path[-1])
    cases = ("nul\x00inside", None, [], {"\x00": 1})
    if "amount" in name:
        return cases + AMOUNT_CASES
    return cases + DATE_CASES if name in ("since", "until") else cases


def _check(response, what) -> None:
    assert response.status_code < 500, (*what, response.status_code, response.get_data()[:400])


@pytest.mark.slow
@FUZZ
@given(data=st.data())
def test_no_api_route_answers_5xx(site, data):
    routes = site.routes(console=False)
    # Callback routes (ten M-Pesa kinds and the gateway one) are fuzzed in test_callback_fuzz.py: one draw in four.
    callbacks = [r for r in routes if r[1].startswith(("callbacks.", "inbound."))]
    others = st.sampled_from([r for r in routes if r not in callbacks])
    method, view, rule = data.draw(st.one_of(others, others, others, st.sampled_from(callbacks)), label="route")
    who = data.draw(st.sampled_from(["admin key", "admin key", "merchant key", "merchant key", "no key"]),
                    label="caller")
    path = site.path(data, rule)
    query = _query(site, data)
    body = b""
    if method != "GET" and data.draw(st.sampled_from([False] * 9 + [True]), label="raw bytes?"):
        body = data.draw(st.one_of(st.just(b""), st.binary(max_size=40)), label="raw")
    elif method != "GET":
        body = _json_body(data, site.templates.get(view))
    client = site.app.test_client()
    response = client.open(path, method=method, query_string=query, data=body, headers=site.callers[who],
                           content_type="application/json")
    _check(response, (who, method, path, query, body[:300]))
    if view == "management.update_merchant":
        site.restore()


@pytest.mark.slow
@FUZZ
@given(data=st.data())
def test_no_console_route_answers_5xx(site, data):
    method, view, rule = data.draw(st.sampled_from(site.routes(console=True)), label="route")
    who = data.draw(st.sampled_from(sorted(site.sessions)), label="session")
    client, csrf = site.sessions[who]
    path = site.path(data, rule)
    query = _query(site, data)
    form = {}
    if method != "GET":
        form = data.draw(_fields(site, FORM_NAMES, 8), label="form")
        # Mostly the session's own token, so most posts get past the CSRF check to the view.
        form.setdefault("csrf_token", data.draw(st.sampled_from([csrf, csrf, csrf, "forged"]), label="csrf"))
    response = client.open(path, method=method, query_string=query, data=form)
    _check(response, (who, method, path, query, form))
    if view == "console.logout" and csrf:
        site.sessions[who] = (client, console_sign_in(client, create_api_key(site.store, None if who.startswith(
            "operator") else site.merchants[0], who)[1]))


def test_every_body_node_at_its_edges(site):
    """Not random: every node of every route's valid body, replaced by each hard case for its kind."""
    sent = 0
    for method, view, rule in site.routes(console=False):
        template = site.templates.get(view)
        if template is None or method == "GET":
            continue
        path = rule.rule
        for name in rule.arguments:
            path = path.replace(f"<{name}>", site.values[name][0])
        for node in _paths(template):
            for case in _cases(node):
                body = json.dumps(_spoil(template, node, case)).encode()
                for who in ("admin key", "merchant key"):
                    response = site.app.test_client().open(path, method=method, data=body,
                                                           headers=site.callers[who], content_type="application/json")
                    _check(response, (who, method, path, body[:300]))
                    sent += 1
        if view == "management.update_merchant":
            site.restore()
    assert sent > 500


def test_every_console_form_field_at_its_edges(site):
    """Not random: the console's amount, number and date fields, each given every hard case, as both sessions."""
    numbers = [str(case) for case in AMOUNT_CASES] + ["nul\x00inside", "1,000", "1_000", "０"]
    dates = [str(case) for case in DATE_CASES] + ["nul\x00inside"]
    forms = [("/console/settings", {"merchant": site.merchants[0], "rule-0-priority": "high", field: value})
             for field in ("rule-0-min_amount_minor", "retention-raw_payload_days", "retention-events_days")
             for value in numbers]
    forms += [(action, {"merchant": site.merchants[0], "endpoint": site.values["endpoint_id"][0], "which": "matching",
                        "confirm": "yes", field: value})
              for action in ("/console/dead-letters/retry", "/console/dead-letters/purge",
                             "/console/dead-letters/recover")
              for field in ("since", "until") for value in dates]
    forms += [(f"/console/endpoints/{site.values['endpoint_id'][0]}/rotate", {"grace_period_seconds": value})
              for value in numbers]
    for who in ("operator session", "merchant session"):
        client, csrf = site.sessions[who]
        for action, form in forms:
            _check(client.post(action, data={**form, "csrf_token": csrf}), (who, "POST", action, form))
        for page in ("/console/events", "/console/dead-letters"):
            for field in ("since", "until"):
                for value in dates:
                    _check(client.get(page, query_string={field: value}), (who, "GET", page, field, value))
