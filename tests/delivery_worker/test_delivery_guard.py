"""The SSRF guard at delivery, address pinning, TLS failures and status categories, on real sockets."""

from __future__ import annotations

import sys
import threading

import pytest
import urllib3
from sqlalchemy import select

from factories import fixture_bytes, merchant_with_endpoints, stk_url
from payhook_delivery import http
from payhook_delivery.errors import Category
from payhook_shared.store import Delivery, DeliveryAttempt, JobState
from support import Receiver, self_signed_certificate, wait_until

LIMITS = {"connect_timeout": 2.0, "total_timeout": 5.0, "snippet_bytes": 256}

# Every socket.connect this process makes, by address: proof of what the guard let through.
_connects: list[tuple] = []
_connects_lock = threading.Lock()


def _audit(event: str, args: tuple) -> None:
    if event == "socket.connect":
        with _connects_lock:
            _connects.append(args[1])


sys.addaudithook(_audit)


def connected_hosts() -> set[str]:
    with _connects_lock:
        return {a[0] for a in _connects if isinstance(a, tuple)}


def post_payment(client, merchant):
    response = client.post(stk_url(merchant), data=fixture_bytes("mpesa/stk_success.json"),
                           content_type="application/json")
    assert response.status_code == 200


def delivery(store) -> Delivery:
    with store.read() as session:
        return session.scalars(select(Delivery)).one()


def attempts(store) -> list[DeliveryAttempt]:
    with store.read() as session:
        return list(session.scalars(select(DeliveryAttempt).order_by(DeliveryAttempt.id)))


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/hooks"])
def test_internal_endpoint_is_blocked_before_any_connection(client, store, delivery_worker, url):
    merchant, _ = merchant_with_endpoints(store, url)
    delivery_worker(retry_schedule=(1, 1))
    _connects.clear()
    post_payment(client, merchant)
    wait_until(lambda: delivery(store).state == JobState.DEAD.value, what="dead delivery")
    [attempt] = attempts(store)  # blocked is final: no retry
    assert attempt.category == "blocked" and attempt.status_code is None
    assert "refused" in attempt.error
    host = url.split("/")[2]
    assert host not in connected_hosts()


def test_loopback_receiver_is_blocked_without_the_allowlist(client, store, receiver, delivery_worker):
    merchant, _ = merchant_with_endpoints(store, receiver.url.replace("127.0.0.1", "localhost"))
    delivery_worker(endpoint_allowlist=(), retry_schedule=(1,))
    post_payment(client, merchant)
    wait_until(lambda: delivery(store).state == JobState.DEAD.value, what="dead delivery")
    assert [a.category for a in attempts(store)] == ["blocked"]
    assert receiver.received == []


def test_allowlisted_receiver_is_delivered(client, store, receiver, delivery_worker):
    merchant, _ = merchant_with_endpoints(store, receiver.url)
    delivery_worker()  # the fixture allowlists 127.0.0.0/8
    _connects.clear()
    post_payment(client, merchant)
    receiver.wait_for(1)
    assert "127.0.0.1" in connected_hosts()  # the audit hook does see worker connections
    wait_until(lambda: delivery(store).state == JobState.DONE.value, what="delivered")


def test_connection_goes_to_the_checked_address_not_a_new_lookup(receiver):
    # "rebind.example" resolves nowhere: the request can only arrive if no second lookup happens.
    dest = http.Target("http", "rebind.example", receiver.port, "127.0.0.1", "/webhooks?x=1")
    result = http.send(http.pool(2), dest, b"{}", {}, **LIMITS)
    assert result.category is Category.SUCCESS
    [req] = receiver.received
    assert req.headers["host"] == f"rebind.example:{receiver.port}" and req.path == "/webhooks?x=1"


def test_https_verifies_the_url_host_while_connecting_to_the_pinned_address(tmp_path):
    cert, key = self_signed_certificate(tmp_path, "localhost")
    tls_receiver = Receiver(tls=(cert, key)).start()
    try:
        trusting = urllib3.PoolManager(ca_certs=str(cert), retries=False)
        ok = http.post(trusting, f"https://localhost:{tls_receiver.port}/webhooks", b"{}", {}, **LIMITS,
                       allow=("127.0.0.0/8", "::1/128"))
        assert ok.category is Category.SUCCESS, ok.error
        assert tls_receiver.received[0].headers["host"] == f"localhost:{tls_receiver.port}"
        # Same address, same trusted certificate, but a name the certificate does not carry.
        dest = http.Target("https", "other.example", tls_receiver.port, "127.0.0.1", "/webhooks")
        wrong = http.send(trusting, dest, b"{}", {}, **LIMITS)
        assert wrong.category is Category.TLS
        assert len(tls_receiver.received) == 1
    finally:
        tls_receiver.stop()


def test_self_signed_certificate_is_a_tls_failure(client, store, delivery_worker, tmp_path):
    tls_receiver = Receiver(tls=self_signed_certificate(tmp_path)).start()
    try:
        merchant, _ = merchant_with_endpoints(store, tls_receiver.url)
        delivery_worker(retry_schedule=())
        post_payment(client, merchant)
        wait_until(lambda: delivery(store).state == JobState.DEAD.value, what="dead delivery")
        [attempt] = attempts(store)
        assert attempt.category == "tls" and attempt.status_code is None and "certificate" in attempt.error.lower()
        assert tls_receiver.received == []
    finally:
        tls_receiver.stop()


@pytest.mark.parametrize("status, category", [
    (200, "success"), (204, "success"), (400, "client_error"), (401, "auth"), (403, "auth"), (410, "gone"),
    (429, "rate_limited"), (500, "server_error"), (503, "server_error"), (301, "redirect"),
])
def test_status_categories_from_a_real_receiver(receiver, status, category):
    receiver.respond = lambda req: (status, {"retry-after": "7"}, b"answer")
    result = http.post(http.pool(2), receiver.url, b"{}", {}, **LIMITS, allow=("127.0.0.0/8",))
    assert result.category.value == category and result.status == status
    assert result.retry_after == "7"
    assert len(receiver.received) == 1


def test_dns_failure_is_a_network_failure_not_blocked():
    result = http.post(http.pool(2), "http://nothing-here.invalid/hook", b"{}", {}, **LIMITS)
    assert result.category is Category.NETWORK and "resolve" in result.error
