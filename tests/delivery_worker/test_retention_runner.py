"""The delivery-worker applies retention on its own, periodically."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update

from factories import fixture_bytes, merchant_with_endpoints, stk_url
from payhook_shared.store import Event
from support import wait_until


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
