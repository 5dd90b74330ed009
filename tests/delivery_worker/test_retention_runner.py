"""The delivery-worker applies retention on its own, periodically, and counts what it purged."""

from __future__ import annotations

import datetime as dt
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select, update

from factories import fixture_bytes, merchant_with_endpoints, stk_url
from payhook_shared.store import Delivery, Event, JobState
from support import free_port, wait_until


def _delivered(store) -> int:
    with store.read() as session:
        return session.scalar(select(func.count()).select_from(Delivery).where(Delivery.state == JobState.DONE.value))


def test_worker_purges_expired_events_periodically(client, store, receiver, delivery_worker):
    merchant, _ = merchant_with_endpoints(store, receiver.url, email=None)
    assert client.post(stk_url(merchant), data=fixture_bytes("mpesa/stk_success.json"),
                       content_type="application/json").status_code == 200
    delivery_worker(retention_interval=0.3, retention_events_days=90)
    receiver.wait_for(1)
    with store.write() as session:
        session.execute(update(Event).values(received_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=91)))

    def gone():
        with store.read() as session:
            return session.scalar(select(Event.id)) is None
    wait_until(gone, timeout=10, what="the expired event purged by the worker")


def _scraped(port: int, name: str, **labels: str) -> float:
    """One sample's value from the worker's /metrics, as Prometheus would scrape it."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    raise AssertionError(f"{name}{labels} not exposed")


def test_purged_rows_are_counted_in_the_worker_metrics(client, store, receiver, delivery_worker):
    merchant, _ = merchant_with_endpoints(store, receiver.url, email=None)
    for tag in ("a", "b"):
        body = fixture_bytes("mpesa/stk_success.json").replace(b"ws_CO_191220191020363925", tag.encode())
        assert client.post(stk_url(merchant), data=body, content_type="application/json").status_code == 200
    port = free_port()
    rt = delivery_worker(retention_interval=0, health_port=port)
    rt.serve_health()
    receiver.wait_for(2)
    wait_until(lambda: _delivered(store) == 2, what="both deliveries done")
    with store.write() as session:
        session.execute(update(Event).values(received_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=91)))
    before = {kind: _scraped(port, "payhook_retention_purged_total", kind=kind)
              for kind in ("events", "deliveries", "attempts")}

    done = rt.purge_once()

    assert (done.events, done.deliveries, done.attempts) == (2, 2, 2)
    for kind in before:
        assert _scraped(port, "payhook_retention_purged_total", kind=kind) == before[kind] + 2
    assert _scraped(port, "payhook_retention_purged_total", kind="emails") >= 0
    assert _scraped(port, "payhook_retention_last_run_timestamp_seconds") > time.time() - 60
