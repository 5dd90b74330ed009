"""Quarantine: a callback on a valid URL that fails validation is kept, shown, counted and reprocessed."""

from __future__ import annotations

import base64
import json
import re

import pytest
from sqlalchemy import func, select, text

from factories import api_key, callback_url, fixture_bytes, make_source, merchant_with_endpoints
from payhook_shared.callbacks import mpesa
from payhook_shared.errors import DecodeError
from payhook_shared.store import Event, QuarantinedCallback
from support_gateways import PAYSTACK_SECRET, paystack_headers

STK = fixture_bytes("mpesa/stk_success.json")


def _rows(store) -> list[QuarantinedCallback]:
    with store.read() as session:
        return list(session.scalars(select(QuarantinedCallback).order_by(QuarantinedCallback.id)))


def _events(store) -> int:
    with store.read() as session:
        return session.scalar(select(func.count()).select_from(Event))


def _quarantined_metric(client, provider: str, kind: str) -> float:
    scraped = client.get("/metrics").get_data(as_text=True)
    found = re.search(rf'^payhook_callbacks_quarantined_total{{kind="{kind}",provider="{provider}"}} (\S+)$',
                      scraped, re.M)
    return float(found.group(1)) if found else 0.0


@pytest.fixture
def schema_bug(monkeypatch):
    """A schema that wrongly refuses every STK callback; ``fix()`` deploys the fix."""
    strict = mpesa.NORMALISERS["stk"]

    def refuse(_payload):
        raise DecodeError("Body.stkCallback.CallbackMetadata: unknown item", {"Body": ["unknown item"]})

    monkeypatch.setitem(mpesa.NORMALISERS, "stk", refuse)

    class Bug:
        @staticmethod
        def fix() -> None:
            monkeypatch.setitem(mpesa.NORMALISERS, "stk", strict)

    return Bug


def test_an_invalid_callback_on_a_valid_url_is_kept_and_still_refused(client, store):
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    body = b'{"Body": {"stkCallback": {"ResultCode": 0}}}'
    before = _quarantined_metric(client, "mpesa", "stk")
    response = client.post(callback_url(merchant, "stk"), data=body, content_type="application/json",
                           headers={"User-Agent": "Daraja", "X-Request-ID": "req-q1"})
    assert response.status_code == 400
    assert response.get_json()["error"]["fields"]
    [row] = _rows(store)
    assert (row.merchant_id, row.provider, row.kind, row.state, row.reason) == (
        merchant.id, "mpesa", "stk", "quarantined", "schema")
    assert row.body == body and "stkCallback" in row.error and row.error_fields
    assert row.headers["User-Agent"] == "Daraja" and row.headers["X-Request-ID"] == "req-q1"
    assert row.content_type == "application/json"
    assert _events(store) == 0
    assert _quarantined_metric(client, "mpesa", "stk") == before + 1


@pytest.mark.parametrize("body, content_type, status, reason", [
    (b"\xff\xfe not json at all", "application/json", 400, "json"),
    (b"ResultCode=0&ResultDesc=ok", "application/x-www-form-urlencoded", 415, "content_type"),
    (STK, "text/plain", 415, "content_type"),
])
def test_a_body_that_is_not_json_is_kept_as_raw_bytes(client, store, body, content_type, status, reason):
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    response = client.post(callback_url(merchant, "b2c-result"), data=body, content_type=content_type)
    assert response.status_code == status
    [row] = _rows(store)
    assert (row.body, row.reason, row.kind, row.content_type) == (body, reason, "b2c-result", content_type)


def test_anonymous_and_oversized_bodies_are_not_kept(client, store):
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    other, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/b")
    bad = b'{"Body": {}}'
    assert client.post(f"/cb/{merchant.id}/{other.callback_token}/stk", data=bad,
                       content_type="application/json").status_code == 404
    assert client.post(f"/cb/mch_unknown/{merchant.callback_token}/stk", data=bad,
                       content_type="application/json").status_code == 404
    # Over MAX_BODY_BYTES the body is not read whole: refused with 413, not kept.
    assert client.post(callback_url(merchant, "stk"), data=b" " * (65 * 1024) + bad,
                       content_type="application/json").status_code == 413
    _, path = make_source(store, merchant, "paystack", PAYSTACK_SECRET)
    # A gateway body whose signature does not verify is anyone's: not kept.
    assert client.post(path, data=bad, headers={"Content-Type": "application/json",
                                                **paystack_headers(bad, "sk_wrong")}).status_code == 401
    assert _rows(store) == []


def test_a_verified_gateway_body_failing_its_schema_is_kept(client, store):
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    source, path = make_source(store, merchant, "paystack", PAYSTACK_SECRET)
    body = json.dumps({"event": "charge.success", "data": {"status": "success"}}).encode()
    response = client.post(path, data=body, headers={"Content-Type": "application/json", **paystack_headers(body)})
    assert response.status_code == 400
    [row] = _rows(store)
    assert (row.provider, row.kind, row.source_id, row.reason, row.body) == (
        "paystack", "webhook", source.id, "schema", body)
    # The signature is not kept: Flutterwave's verif-hash, for one, is the shared secret itself.
    assert not any("signature" in name.lower() for name in row.headers)
    assert _quarantined_metric(client, "paystack", "webhook") >= 1


def test_when_the_store_cannot_keep_it_the_400_stands_and_the_loss_is_logged(client, store, caplog):
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    with store.write() as session:
        session.execute(text("DROP TABLE quarantined_callbacks"))
    response = client.post(callback_url(merchant, "stk"), data=b'{"Body": {}}', content_type="application/json")
    assert response.status_code == 400
    [lost] = [r for r in caplog.records if r.levelname == "ERROR" and r.name == "payhook_webhook.quarantine"]
    assert "could not quarantine an invalid mpesa stk callback (12 bytes, sha256 " in lost.getMessage()
    scraped = client.get("/metrics").get_data(as_text=True)
    assert re.search(r'^payhook_callbacks_quarantine_failures_total{provider="mpesa"} [1-9]', scraped, re.M)


def _reprocess_cli(app, *args: str):
    return app.test_cli_runner().invoke(args=["quarantine", "reprocess", *args])


def test_reprocessing_after_the_fix_records_the_event_and_resolves_the_row(webhook_app, client, store, schema_bug):
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    assert client.post(callback_url(merchant, "stk"), data=STK, content_type="application/json").status_code == 400
    [row] = _rows(store)
    # Still broken: the row stays quarantined, with the new error and one more attempt.
    result = _reprocess_cli(webhook_app, row.id)
    assert result.exit_code == 1 and f"{row.id} still invalid: Body.stkCallback" in result.output
    [row] = _rows(store)
    assert (row.state, row.attempts, row.event_id) == ("quarantined", 1, None)

    schema_bug.fix()
    result = _reprocess_cli(webhook_app, "--all")
    assert result.exit_code == 0, result.output
    [row] = _rows(store)
    with store.read() as session:
        event = session.scalars(select(Event)).one()
    assert (row.state, row.attempts, row.event_id) == ("resolved", 2, event.id)
    assert row.resolved_at is not None
    assert event.raw_payload == STK.decode() and event.type == "mpesa.stk_push"
    assert f"{row.id} resolved: {event.id}" in result.output
    # A resolved row is left alone.
    assert _reprocess_cli(webhook_app, "--all").output.startswith("0 resolved")


def test_a_reprocessed_callback_is_deduplicated_against_one_that_arrived_meanwhile(webhook_app, client, store,
                                                                                   schema_bug):
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    assert client.post(callback_url(merchant, "stk"), data=STK, content_type="application/json").status_code == 400
    schema_bug.fix()
    # The same payment arrives again (a re-sent callback, or a status query's answer) and is recorded.
    assert client.post(callback_url(merchant, "stk"), data=STK, content_type="application/json").status_code == 200
    result = _reprocess_cli(webhook_app, "--all")
    assert result.exit_code == 0 and "(already recorded)" in result.output
    with store.read() as session:
        [event_id] = session.scalars(select(Event.id)).all()
    [row] = _rows(store)
    assert (row.state, row.event_id) == ("resolved", event_id)


def test_a_gateway_callback_is_reprocessed_with_its_verified_message_id(webhook_app, client, store, monkeypatch):
    from payhook_shared.callbacks import sources

    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    source, path = make_source(store, merchant, "paystack", PAYSTACK_SECRET)
    body = fixture_bytes("paystack/charge_success.json")
    normalise = sources.normalise

    def broken(*_args, **_kwargs):
        raise DecodeError("data.amount: not a number", {"data": ["not a number"]})

    monkeypatch.setattr(sources, "normalise", broken)
    response = client.post(path, data=body, headers={"Content-Type": "application/json", **paystack_headers(body)})
    assert response.status_code == 400
    monkeypatch.setattr(sources, "normalise", normalise)
    [row] = _rows(store)
    assert _reprocess_cli(webhook_app, row.id).exit_code == 0
    with store.read() as session:
        event = session.scalars(select(Event)).one()
    assert event.details["source_id"] == source.id and event.type == "paystack.charge.success"
    assert _rows(store)[0].event_id == event.id


def test_cli_usage(webhook_app):
    assert _reprocess_cli(webhook_app).exit_code == 2
    assert "no quarantined callback qcb_nope" in _reprocess_cli(webhook_app, "qcb_nope").output


def test_the_api_lists_shows_and_reprocesses_a_merchants_own(client, store, schema_bug):
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    other, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/b")
    body = b"\xff not utf-8"
    client.post(callback_url(merchant, "stk"), data=STK, content_type="application/json")
    client.post(callback_url(other, "b2c-result"), data=body, content_type="application/json")
    mine, theirs, admin = api_key(store, merchant.id), api_key(store, other.id), api_key(store)

    listed = client.get("/v1/quarantine", headers=mine).get_json()
    [item] = listed["data"]
    assert (item["merchant_id"], item["kind"], item["state"], item["size"]) == (merchant.id, "stk", "quarantined",
                                                                               len(STK))
    assert "body_base64" not in item and listed["has_more"] is False
    assert len(client.get("/v1/quarantine", headers=admin).get_json()["data"]) == 2
    assert client.get(f"/v1/quarantine?merchant_id={other.id}", headers=mine).status_code == 404
    assert client.get(f"/v1/quarantine/{item['id']}", headers=theirs).status_code == 404
    assert client.post(f"/v1/quarantine/{item['id']}/reprocess", headers=theirs).status_code == 404
    assert client.get("/v1/quarantine", headers={}).status_code == 401

    detail = client.get(f"/v1/quarantine/{item['id']}", headers=mine).get_json()
    assert detail["body_text"] == STK.decode() and base64.b64decode(detail["body_base64"]) == STK
    assert detail["headers"]["Content-Type"] == "application/json"
    [binary] = client.get("/v1/quarantine", headers=theirs).get_json()["data"]
    detail = client.get(f"/v1/quarantine/{binary['id']}", headers=theirs).get_json()
    assert detail["body_text"] is None and base64.b64decode(detail["body_base64"]) == body

    schema_bug.fix()
    answer = client.post(f"/v1/quarantine/{item['id']}/reprocess", headers=mine)
    assert answer.status_code == 200
    assert answer.get_json()["state"] == "resolved" and answer.get_json()["event_id"].startswith("evt_")
    answer = client.post(f"/v1/quarantine/{binary['id']}/reprocess", headers=theirs).get_json()
    assert (answer["state"], answer["reason"], answer["attempts"]) == ("quarantined", "json", 1)
    assert [r["id"] for r in client.get("/v1/quarantine?state=quarantined", headers=admin).get_json()["data"]] == [
        binary["id"]]
