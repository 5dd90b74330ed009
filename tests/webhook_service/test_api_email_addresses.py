"""Every address the API takes is one the mail-worker sends to: the others are 400s naming the field."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from factories import api_key, merchant_with_endpoints
from payhook_mail.errors import PermanentMailError
from payhook_mail.mailer import _check_recipients
from payhook_shared.store import Event, Merchant

# Addresses marshmallow's Email field accepted and the mail-worker refused, so their emails died.
REFUSED = ["owner@localhost", '"owner shop"@shop.test', "owner@shop.test\r\nBcc: x@evil.test", "\u00f3wner@shop.test"]


@pytest.mark.parametrize("address", REFUSED, ids=repr)
def test_the_mail_worker_refuses_them(address):
    with pytest.raises(PermanentMailError, match="invalid address"):
        _check_recipients([address])


@pytest.mark.parametrize("address", REFUSED, ids=repr)
def test_an_address_the_mail_worker_refuses_is_refused_by_the_api_naming_the_field(client, store, address):
    admin = api_key(store)
    merchant, _ = merchant_with_endpoints(store, "https://shop.example/a")
    attempts = [
        (client.post, "/v1/merchants", {"name": "Shop", "notification_email": address}, "notification_email: "),
        (client.patch, f"/v1/merchants/{merchant.id}", {"notification_email": address}, "notification_email: "),
        (client.patch, f"/v1/merchants/{merchant.id}/settings",
         {"notifications": {"payment_received": {"recipients": [address]}}},
         "notifications.payment_received.recipients.0: "),
        (client.patch, f"/v1/merchants/{merchant.id}/settings",
         {"notifications": {"receipt": {"fallback_email": address}}}, "notifications.receipt.fallback_email: "),
        (client.post, "/v1/events", {"type": "shop.payment", "idempotency_key": "k", "data": {},
                                     "customer_email": address, "merchant_id": merchant.id}, "customer_email: "),
    ]
    for call, path, body, field in attempts:
        response = call(path, json=body, headers=admin)
        assert response.status_code == 400, (path, response.get_json())
        assert field in response.get_json()["error"]["message"], (path, response.get_json())
    with store.read() as session:
        assert session.scalar(select(func.count()).select_from(Merchant)) == 1
        assert session.get(Merchant, merchant.id).settings == {}
        assert session.get(Merchant, merchant.id).notification_email == "merchant@example.test"
        assert session.scalar(select(func.count()).select_from(Event)) == 0
