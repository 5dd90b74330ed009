"""Priority holds under backlog: URGENT overtakes a LOW backlog on real Redis with real workers."""

from __future__ import annotations

import time

from sqlalchemy import func, select

from factories import load_merchant, merchant_with_endpoints
from payhook_shared.events import PAYHOOK, SUCCEEDED, NormalisedEvent
from payhook_shared.priority import Priority
from payhook_shared.store import Delivery, JobState
from payhook_webhook import ingest
from support import wait_until


def record(store, broker, merchant, priority: Priority, key: str) -> str:
    event = NormalisedEvent(provider="payhook", source=PAYHOOK, type="payhook.test", status=SUCCEEDED,
                            dedupe_key=key, amount_minor=100, currency="KES")
    return ingest.record(store, broker, merchant, event, b"{}", priority).event_id


def low_done(store) -> int:
    with store.read() as session:
        return session.scalar(select(func.count()).select_from(Delivery).where(
            Delivery.priority == int(Priority.LOW), Delivery.state == JobState.DONE.value))


# The backlog only has to outlast the 0.5 s URGENT may take by a wide margin: 300 webhooks of 20 ms each keep
# the LOW pool's 4 threads busy for 1.5 s (2,000 of 4 ms did the same for 2 s, and took longer to record).
BACKLOG = 300


def test_urgent_overtakes_a_low_backlog(store, receiver, delivery_worker, webhook_app):
    def slowish(req):
        time.sleep(0.02)
        return 200, {}, b""
    receiver.respond = slowish
    created, _ = merchant_with_endpoints(store, receiver.url, email=None)
    merchant = load_merchant(store, created.id)
    broker = webhook_app.extensions["payhook.broker"]
    for i in range(BACKLOG):
        record(store, broker, merchant, Priority.LOW, f"low:{i}")

    delivery_worker(threads=4, pools=("urgent", "standard", "low"))
    wait_until(lambda: low_done(store) >= 10, timeout=30, what="the LOW backlog draining")
    sent_at = time.time()
    urgent_id = record(store, broker, merchant, Priority.URGENT, "urgent")

    def urgent_arrival():
        return next((r.at for r in list(receiver.received) if r.headers["webhook-id"] == urgent_id), None)

    arrived = wait_until(urgent_arrival, timeout=10, interval=0.005, what="the URGENT webhook")
    remaining = BACKLOG - low_done(store)
    assert arrived - sent_at < 0.5, f"URGENT took {arrived - sent_at:.3f}s"
    assert remaining > BACKLOG // 4, f"URGENT arrived only after the backlog drained ({remaining} LOW left)"
