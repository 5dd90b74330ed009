"""``payhook_webhook.stream``: a slow reader's buffer overflows into one hang-up; a stream takes whole batches;
frames are read once per process, a batch's in one query."""

from __future__ import annotations

import json
import logging
import threading
import time

from factories import merchant_with_endpoints, record_payment
from payhook_webhook.stream import Frames, Listener, Notice, channel, frame, load, notices
from support import counting


def _batch(*numbers: int) -> tuple[Notice, ...]:
    return tuple(Notice(f"evt_{n}", "mpesa.stk_push") for n in numbers)


def test_an_overflowing_listener_is_dropped_and_hung_up_once_with_its_reason(caplog):
    listener = Listener("mch_slow", size=3)
    hang_ups = []
    listener.on_overflow = lambda: hang_ups.append(1)
    with caplog.at_level(logging.INFO, logger="payhook_webhook.stream"):
        listener.offer(_batch(0, 1))
        listener.offer(_batch(2))
        assert not listener.dropped and hang_ups == []
        for n in range(3, 10):
            listener.offer(_batch(n))
    assert listener.dropped
    assert hang_ups == [1]
    [record] = [r for r in caplog.records if "slow reader" in r.getMessage()]
    assert "mch_slow" in record.getMessage() and "3 events behind" in record.getMessage()


def test_a_listener_counts_events_not_batches_and_what_is_taken_no_longer_counts():
    listener = Listener("mch_busy", size=4)
    listener.offer(_batch(0, 1, 2))
    assert [n.id for n in listener.take(timeout=0)] == ["evt_0", "evt_1", "evt_2"]
    listener.offer(_batch(3, 4))
    listener.offer(_batch(5, 6))
    assert not listener.dropped  # four behind: at the limit, not past it
    listener.offer(_batch(7))
    assert listener.dropped


def test_a_stream_takes_everything_buffered_at_once_in_order_and_a_waiting_one_wakes_on_an_offer():
    listener = Listener("mch_live", size=100)
    listener.offer(_batch(0, 1))
    listener.offer(_batch(2))
    assert [n.id for n in listener.take(timeout=0)] == ["evt_0", "evt_1", "evt_2"]
    assert listener.take(timeout=0.01) == []  # nothing came: the stream sends a heartbeat
    threading.Timer(0.1, listener.offer, args=(_batch(3),)).start()
    started = time.monotonic()
    assert [n.id for n in listener.take(timeout=10)] == ["evt_3"]
    assert time.monotonic() - started < 5


def test_ending_a_listener_wakes_its_waiting_stream():
    listener = Listener("mch_stop", size=100)
    threading.Timer(0.1, listener.end).start()
    started = time.monotonic()
    assert listener.take(timeout=10) == []
    assert listener.dropped and time.monotonic() - started < 5


def test_a_batch_is_announced_with_one_notice_per_merchant():
    rows = [{"id": "evt_1", "merchant_id": "mch_a", "type": "mpesa.stk_push"},
            {"id": "evt_2", "merchant_id": "mch_b", "type": "mpesa.c2b.confirmation"},
            {"id": "evt_3", "merchant_id": "mch_a", "type": "mpesa.b2c.result"}]
    announced = {name: json.loads(text) for name, text in notices(rows)}
    assert announced == {channel("mch_a"): [["evt_1", "mpesa.stk_push"], ["evt_3", "mpesa.b2c.result"]],
                         channel("mch_b"): [["evt_2", "mpesa.c2b.confirmation"]]}


def test_every_stream_of_a_process_shares_one_read_of_each_batch(store, webhook_app):
    merchant, _ = merchant_with_endpoints(store)
    broker = webhook_app.extensions["payhook.broker"]
    event_ids = [record_payment(store, broker, merchant.id, f"mpesa/{name}.json")
                 for name in ("stk_success", "stk_cancelled_1032")]
    frames = Frames(store)
    # Twenty streams woken by the same notice at once: the first reads the batch, the others wait for its read.
    texts: list[list[str]] = []
    start = threading.Barrier(20)

    def stream() -> None:
        start.wait()
        texts.append(frames.get(merchant.id, event_ids))

    threads = [threading.Thread(target=stream) for _ in range(20)]
    with counting(store.engine) as trips:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert [name for _, name, _ in trips if name == "SELECT"] == ["SELECT"]
    assert len(texts) == 20 and all(t == texts[0] for t in texts)
    assert [t.split("\n", 1)[0] for t in texts[0]] == [f"id: {event_id}" for event_id in event_ids]


def test_a_shared_frame_is_never_given_to_another_merchant(store, webhook_app):
    mine, _ = merchant_with_endpoints(store)
    other, _ = merchant_with_endpoints(store)
    theirs = record_payment(store, webhook_app.extensions["payhook.broker"], other.id, "mpesa/stk_success.json")
    frames = Frames(store)
    assert len(frames.get(other.id, [theirs])) == 1
    assert frames.get(mine.id, [theirs]) == []
    assert frames.get(mine.id, ["evt_unknown"]) == []


def test_only_the_latest_frames_are_kept(store, webhook_app):
    merchant, _ = merchant_with_endpoints(store)
    broker = webhook_app.extensions["payhook.broker"]
    first, second = (record_payment(store, broker, merchant.id, f"mpesa/{name}.json")
                     for name in ("stk_success", "stk_cancelled_1032"))
    frames = Frames(store, size=1)
    with counting(store.engine) as trips:
        frames.get(merchant.id, [first])
        frames.get(merchant.id, [second])  # pushes the first out
        frames.get(merchant.id, [second])
        frames.get(merchant.id, [first])
    assert [name for _, name, _ in trips if name == "SELECT"] == ["SELECT"] * 3


def test_a_batch_read_for_the_streams_frames_each_event_as_the_one_read_by_itself(store, webhook_app):
    merchant, _ = merchant_with_endpoints(store)
    broker = webhook_app.extensions["payhook.broker"]
    event_ids = [record_payment(store, broker, merchant.id, f"mpesa/{name}.json", customer_email=email)
                 for name, email in (("stk_success", "buyer@example.com"), ("stk_cancelled_1032", None))]
    # On PostgreSQL the batch is read on the driver connection, the single event through a session.
    assert Frames(store).get(merchant.id, event_ids) == [frame(load(store, merchant.id, e)) for e in event_ids]
