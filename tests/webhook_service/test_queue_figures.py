"""/health/queue and the queue gauges on /metrics report what Redis and the store hold, cached briefly."""

from __future__ import annotations

import pytest

from factories import fixture_bytes, merchant_with_endpoints, stk_url
from support import queued_deliveries


@pytest.fixture
def app_with_ttl(database_url, redis_url):
    from payhook_webhook.app import create_app

    apps = []

    def make(ttl: float):
        app = create_app({"database_url": database_url, "redis_url": redis_url, "log_format": "text",
                          "queue_stats_ttl": ttl})
        apps.append(app)
        return app.test_client()

    yield make
    for app in apps:
        app.extensions["payhook.store"].dispose()


def _pay(client, merchant, n: int, tag: str) -> None:
    for i in range(n):
        body = fixture_bytes("mpesa/stk_success.json").replace(b"ws_CO_191220191020363925", f"ws_CO_{tag}{i}".encode())
        assert client.post(stk_url(merchant), data=body, content_type="application/json").status_code == 200


def test_waiting_jobs_are_counted_per_queue(app_with_ttl, store, redis_client):
    client = app_with_ttl(0)
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a", "http://127.0.0.1:9/b")
    _pay(client, merchant, 3, "q")
    report = client.get("/health/queue").get_json()
    normal = report["queues"]["delivery.normal"]
    # Messages: each callback's two deliveries travel in one.
    assert normal["waiting"] == redis_client.llen("dramatiq:delivery.normal") == 3
    assert len(queued_deliveries(redis_client, "delivery.normal")) == 6
    assert (normal["active"], normal["delayed"], normal["dead"], normal["completed"]) == (0, 0, 0, 0)
    assert report["queues"]["mail.normal"]["waiting"] == 3
    assert report["queues"]["delivery.urgent"]["waiting"] == 0
    assert report["endpoints"] == {"circuit_open": 0, "disabled": 0}
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'payhook_queue_waiting_messages{family="delivery",priority="normal",queue="delivery.normal"} 3.0' in metrics
    assert "payhook_queue_stats_up 1.0" in metrics


def test_figures_are_cached_for_the_ttl(app_with_ttl, store, redis_client):
    client = app_with_ttl(60)
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    _pay(client, merchant, 1, "c")
    assert client.get("/health/queue").get_json()["queues"]["delivery.normal"]["waiting"] == 1
    _pay(client, merchant, 2, "d")
    assert client.get("/health/queue").get_json()["queues"]["delivery.normal"]["waiting"] == 1
    assert redis_client.llen("dramatiq:delivery.normal") == 3


def test_unreachable_redis_is_503_and_a_zero_up_gauge(database_url):
    from payhook_webhook.app import create_app

    app = create_app({"database_url": database_url, "redis_url": "redis://127.0.0.1:1/0", "log_format": "text"})
    client = app.test_client()
    response = client.get("/health/queue")
    assert response.status_code == 503 and response.get_json()["status"] == "unavailable"
    assert "payhook_queue_stats_up 0.0" in client.get("/metrics").get_data(as_text=True)
    app.extensions["payhook.store"].dispose()
