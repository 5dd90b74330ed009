"""/v1/merchants/<id>/settings: one validated document, section by section, audited."""

from __future__ import annotations

from sqlalchemy import select

from factories import api_key, merchant_with_endpoints, set_merchant_settings
from payhook_shared.store import ApiKey, AuditEntry, Merchant

EMPTY = {"priority_rules": [], "retry": {}, "notifications": {}, "retention": {}, "c2b_validation": {}}


def test_read_change_and_reset_sections(client, store):
    merchant, _ = merchant_with_endpoints(store)
    set_merchant_settings(store, merchant, {"c2b_validation": {"mode": "accept_all"}})
    headers = api_key(store, merchant.id)
    url = f"/v1/merchants/{merchant.id}/settings"
    assert client.get(url, headers=headers).get_json() == {
        "merchant_id": merchant.id, **EMPTY, "c2b_validation": {"mode": "accept_all"}}

    response = client.patch(url, headers=headers, json={
        "retry": {"profile": "gentle"}, "retention": {"events_days": 365},
        "notifications": {"payment_failed": {"enabled": True}},
        "priority_rules": [{"event_type": "shop.refund", "priority": "LOW"}]})
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {
        "merchant_id": merchant.id, "retry": {"profile": "gentle"}, "retention": {"events_days": 365},
        "notifications": {"payment_failed": {"enabled": True}},
        "priority_rules": [{"event_type": "shop.refund", "priority": "low"}],
        "c2b_validation": {"mode": "accept_all"}}
    assert client.get(f"/v1/merchants/{merchant.id}", headers=headers).get_json()["priority_rules"] == [
        {"event_type": "shop.refund", "priority": "low"}]

    response = client.patch(url, headers=headers, json={"retention": None, "priority_rules": []})
    assert response.get_json()["retention"] == {} and response.get_json()["priority_rules"] == []
    with store.read() as session:
        stored = session.get(Merchant, merchant.id).settings
        entries = session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
        key_id = session.scalar(select(ApiKey.id).where(ApiKey.merchant_id == merchant.id))
    assert stored == {"c2b_validation": {"mode": "accept_all"}, "retry": {"profile": "gentle"},
                      "notifications": {"payment_failed": {"enabled": True}}}
    assert [(e.action, e.target, e.api_key_id, e.merchant_id) for e in entries] == [
        ("update_settings", merchant.id, key_id, merchant.id)] * 2
    assert entries[1].details == {"changes": {"retention": None, "priority_rules": []}}


def test_refusals_name_the_field_and_change_nothing(client, store):
    merchant, _ = merchant_with_endpoints(store)
    headers = api_key(store)
    url = f"/v1/merchants/{merchant.id}/settings"
    for body, message in [
        ({"retry": {"profile": "eager"}}, "retry.profile: Must be one of"),
        ({"retention": {"events_days": 5000}}, "retention.events_days: Must be greater than or equal to 1"),
        ({"notifications": {"receipt": {"fallback_email": "nobody"}}}, "notifications.receipt.fallback_email"),
        ({"c2b_validation": {"mode": "reject_all"}}, "c2b_validation.mode: Must be one of"),
        ({"c2b_validation": {"mode": "forward", "forward_url": "http://10.0.0.1/validate"}},
         "c2b_validation.forward_url: endpoint host 10.0.0.1 is private; refused"),
        ({"c2b_validation": {"min_amount": "ten"}}, "c2b_validation.min_amount"),
    ]:
        response = client.patch(url, headers=headers, json=body)
        assert response.status_code == 400 and message in response.get_json()["error"]["message"], body
    with store.read() as session:
        assert session.get(Merchant, merchant.id).settings == {}
        assert session.scalars(select(AuditEntry)).all() == []


def test_a_merchant_key_reaches_only_its_own_settings(client, store):
    mine, _ = merchant_with_endpoints(store)
    theirs, _ = merchant_with_endpoints(store)
    headers = api_key(store, mine.id)
    assert client.get(f"/v1/merchants/{theirs.id}/settings", headers=headers).status_code == 404
    response = client.patch(f"/v1/merchants/{theirs.id}/settings", headers=headers, json={"retry": {"profile": "fast"}})
    assert response.status_code == 404
    assert client.get(f"/v1/merchants/{mine.id}/settings").status_code == 401
