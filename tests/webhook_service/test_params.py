"""Date parameters and NUL, read the same way by the API and the console: 400 naming the parameter, never 5xx."""

from __future__ import annotations

import datetime as dt
import logging

import pytest

from factories import api_key, merchant_with_endpoints
from payhook_webhook.app import create_app
from payhook_webhook.auth import create_api_key
from payhook_webhook.params import EARLIEST, LATEST, read_time
from support import console_sign_in

OUT_OF_RANGE = ["0001-01-01", "0001-01-01T00:00+05:00", "9999-12-31T23:59", "9999-12-31T23:59-23:59",
                "1969-12-31T23:59:59Z", "9999-01-01T00:00:01Z"]
UNREADABLE = ["yesterday", "2026-11-01T08:30+25:00", "2026-13-01", "", "2026-11-01\x01"]


@pytest.fixture
def app(database_url, redis_url):
    app = create_app({"database_url": database_url, "redis_url": redis_url, "log_format": "text",
                      "console_cookie_secure": False, "endpoint_allowlist": ("127.0.0.0/8",)})
    yield app
    app.extensions["payhook.store"].dispose()


@pytest.fixture
def admin_client(app):
    store = app.extensions["payhook.store"]
    merchant, [endpoint] = merchant_with_endpoints(store, "http://127.0.0.1:9/hook")
    return app.test_client(), api_key(store), endpoint


@pytest.fixture
def console(app):
    store = app.extensions["payhook.store"]
    merchant, [endpoint] = merchant_with_endpoints(store, "http://127.0.0.1:9/hook")
    client = app.test_client()
    csrf = console_sign_in(client, create_api_key(store, None, "ops")[1])
    return client, csrf, endpoint


@pytest.mark.parametrize("value", OUT_OF_RANGE)
def test_read_time_refuses_dates_out_of_range(value):
    with pytest.raises(ValueError, match="must be from 1970-01-01 to 9999-01-01"):
        read_time(value)


@pytest.mark.parametrize("value", UNREADABLE)
def test_read_time_refuses_what_is_not_a_date(value):
    with pytest.raises(ValueError, match="must be a date such as"):
        read_time(value)


def test_read_time_takes_the_edges_and_reads_utc():
    assert read_time("1970-01-01") == EARLIEST
    assert read_time("9999-01-01T00:00Z") == LATEST
    assert read_time("9998-12-31T23:00-01:00") == LATEST
    assert read_time("2026-11-01T08:30") == dt.datetime(2026, 11, 1, 8, 30, tzinfo=dt.timezone.utc)
    assert read_time("2026-11-01T11:30+03:00") == dt.datetime(2026, 11, 1, 8, 30, tzinfo=dt.timezone.utc)


def _named(response, name: str) -> bool:
    return response.status_code == 400 and response.get_json()["error"]["message"].startswith(f"{name}: ")


@pytest.mark.parametrize("value", OUT_OF_RANGE + ["2026-11-01T08:30+25:00"])
def test_api_dates_out_of_range_are_400_naming_the_parameter(admin_client, value):
    client, admin, endpoint = admin_client
    for name in ("since", "until"):
        assert _named(client.get("/v1/dead-letters", query_string={name: value}, headers=admin), name)
        assert _named(client.post("/v1/dead-letters/retry", json={name: value}, headers=admin), name)
        assert _named(client.post("/v1/dead-letters/purge", json={name: value, "confirm": True}, headers=admin),
                      name)
    assert _named(client.post(f"/v1/endpoints/{endpoint.id}/recover", json={"since": value}, headers=admin), "since")


def test_api_dates_at_the_edges_are_taken(admin_client):
    client, admin, endpoint = admin_client
    edges = {"since": "1970-01-01", "until": "9999-01-01T00:00Z"}
    assert client.get("/v1/dead-letters", query_string=edges, headers=admin).status_code == 200
    assert client.post("/v1/dead-letters/retry", json=edges, headers=admin).get_json() == {"retried": 0}
    assert client.post(f"/v1/endpoints/{endpoint.id}/recover", json={"since": "1970-01-01"},
                       headers=admin).get_json() == {"recovered": 0}
    assert _named(client.post("/v1/dead-letters/retry", json={"since": 20261101}, headers=admin), "since")


@pytest.mark.parametrize("value", OUT_OF_RANGE)
def test_console_dates_out_of_range_are_400_naming_the_field(console, value):
    client, csrf, endpoint = console
    for name in ("since", "until"):
        for page in ("/console/events", "/console/dead-letters"):
            response = client.get(page, query_string={name: value})
            assert response.status_code == 400 and f"{name}: must be from" in response.get_data(as_text=True)
        for action in ("/console/dead-letters/retry", "/console/dead-letters/purge"):
            response = client.post(action, data={name: value, "which": "matching", "confirm": "yes",
                                                 "csrf_token": csrf})
            assert response.status_code == 400 and f"{name}: must be from" in response.get_data(as_text=True)
    response = client.post("/console/dead-letters/recover", data={"endpoint": endpoint.id, "since": value,
                                                                  "csrf_token": csrf})
    assert response.status_code == 400 and "since: must be from" in response.get_data(as_text=True)


def test_console_dates_at_the_edges_are_taken(console):
    client, _, _ = console
    for page in ("/console/events", "/console/dead-letters"):
        assert client.get(page, query_string={"since": "1970-01-01", "until": "9999-01-01T00:00"}).status_code == 200


def _no_store_errors(caplog) -> None:
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_nul_in_an_api_path_or_query_is_400_before_any_query(admin_client, caplog):
    client, admin, endpoint = admin_client
    for path in ("/v1/endpoints/ep_1%00", "/v1/merchants/mch_%00/settings", "/v1/deliveries/%00",
                 "/v1/sources/src_%00x", f"/v1/endpoints/{endpoint.id}%00/recover"):
        for method in ("GET", "POST", "PATCH"):
            response = client.open(path, method=method, json={}, headers=admin)
            assert response.status_code in (400, 405), (path, method, response.get_data())
            if response.status_code == 400:
                assert response.get_json()["error"]["message"] == "path: must not contain NUL characters"
    for query in ({"endpoint_id": "ep_\x00"}, {"after": "\x00"}, {"merchant_id\x00": "x"}):
        for path in ("/v1/dead-letters", "/v1/merchants", f"/v1/merchants/{endpoint.merchant_id}/endpoints"):
            response = client.get(path, query_string=query, headers=admin)
            assert response.status_code == 400 and "must not contain NUL" in response.get_json()["error"]["message"]
    _no_store_errors(caplog)


def test_nul_in_a_console_path_query_or_form_is_400_before_any_query(console, caplog):
    client, csrf, endpoint = console
    for path in ("/console/events/evt_%00", "/console/deliveries/dlv_%00", "/console/events?q=%00",
                 "/console/settings?merchant=mch_%00", "/console/deliveries?endpoint=ep_%00",
                 "/console/dead-letters?merchant=%00"):
        response = client.get(path)
        assert response.status_code == 400 and "must not contain NUL" in response.get_data(as_text=True), path
    for action, form in (("/console/dead-letters/purge", {"endpoint": "ep_\x00", "confirm": "yes"}),
                         ("/console/dead-letters/retry", {"delivery_id": "dlv_\x00"}),
                         ("/console/dead-letters/recover", {"endpoint": "\x00", "since": "2026-01-01"}),
                         ("/console/settings", {"merchant": "mch_\x00"}),
                         (f"/console/endpoints/{endpoint.id}/disable", {"note\x00": "x"})):
        response = client.post(action, data={**form, "csrf_token": csrf})
        assert response.status_code == 400 and "must not contain NUL" in response.get_data(as_text=True), action
    _no_store_errors(caplog)
