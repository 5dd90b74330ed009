"""The source management API: create, list, get, update, rotate; secrets shown at most once."""

from __future__ import annotations

from factories import api_key, merchant_with_endpoints


def test_source_lifecycle(client, store):
    merchant, _ = merchant_with_endpoints(store)
    other, _ = merchant_with_endpoints(store)
    headers = api_key(store, merchant.id)
    created = client.post(f"/v1/merchants/{merchant.id}/sources", headers=headers,
                          json={"provider": "stripe", "secret": "whsec_from_the_stripe_dashboard"})
    assert created.status_code == 201, created.get_data()
    source = created.get_json()
    assert "secret" not in source  # the merchant pasted it; never echoed
    assert source["callback_url"].endswith(f"/in/{source['id']}/" + source["callback_url"].rsplit("/", 1)[1])
    for word in ("mpesa", "safaricom", "exe", "cmd", "sql", "query"):
        assert word not in source["callback_url"].split("/in/")[1]

    generated = client.post(f"/v1/merchants/{merchant.id}/sources", headers=headers,
                            json={"provider": "flutterwave", "description": "FLW live"})
    assert generated.status_code == 201
    assert len(generated.get_json()["secret"]) == 64
    assert "secret" not in client.get(f"/v1/sources/{generated.get_json()['id']}", headers=headers).get_json()

    listed = client.get(f"/v1/merchants/{merchant.id}/sources", headers=headers).get_json()
    assert [s["id"] for s in listed["data"]] == [source["id"], generated.get_json()["id"]]

    patched = client.patch(f"/v1/sources/{source['id']}", headers=headers,
                           json={"enabled": False, "ip_allowlist_enabled": True})
    assert patched.status_code == 200
    assert patched.get_json()["enabled"] is False and patched.get_json()["ip_allowlist_enabled"] is True

    rotated = client.post(f"/v1/sources/{generated.get_json()['id']}/rotate-secret", headers=headers,
                          json={"grace_period_seconds": 3600})
    assert rotated.status_code == 200 and len(rotated.get_json()["secret"]) == 64
    assert rotated.get_json()["previous_secret_expires_at"]

    # Another merchant's key sees nothing of it.
    assert client.get(f"/v1/sources/{source['id']}", headers=api_key(store, other.id)).status_code == 404


def test_source_validation_names_the_field(client, store):
    merchant, _ = merchant_with_endpoints(store)
    headers = api_key(store, merchant.id)
    url = f"/v1/merchants/{merchant.id}/sources"
    cases = [
        ({"provider": "paypal"}, "provider"),
        ({"provider": "stripe"}, "secret"),
        ({"provider": "hmac", "secret": "long-enough-secret"}, "hmac"),
        ({"provider": "hmac", "secret": "long-enough-secret", "hmac": {"header": "bad header"}}, "hmac.header"),
        ({"provider": "flutterwave", "ip_allowlist_enabled": True}, "allowed_ips"),
        ({"provider": "paystack", "secret": "sk_test_x1234567", "allowed_ips": ["not-an-ip"]}, "allowed_ips"),
        ({"provider": "standard-webhooks", "secret": "not a whsec secret"}, "secret"),
    ]
    for body, field in cases:
        response = client.post(url, headers=headers, json=body)
        assert response.status_code == 400, (body, response.get_data())
        assert field in response.get_json()["error"]["message"], (body, response.get_json())
