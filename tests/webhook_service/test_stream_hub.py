"""``payhook_webhook.stream``: a slow reader's buffer overflows into one hang-up; frames are read once per process."""

from __future__ import annotations

import logging
import threading

from sqlalchemy import event as sa_event

from factories import merchant_with_endpoints, record_payment
from payhook_webhook.stream import Frames, Listener, Notice


def test_an_overflowing_listener_is_dropped_and_hung_up_once_with_its_reason(caplog):
    listener = Listener("mch_slow", size=3)
    hang_ups = []
    listener.on_overflow = lambda: hang_ups.append(1)
    with caplog.at_level(logging.INFO, logger="payhook_webhook.stream"):
        for n in range(3):
            listener.offer(Notice(f"evt_{n}", "mpesa.stk_push"))
        assert not listener.dropped and hang_ups == []
        for n in range(3, 10):
            listener.offer(Notice(f"evt_{n}", "mpesa.stk_push"))
    assert listener.dropped
    assert hang_ups == [1]
    [record] = [r for r in caplog.records if "slow reader" in r.getMessage()]
    assert "mch_slow" in record.getMessage() and "3 events behind" in record.getMessage()


def _selects(store) -> list[str]:
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    sa_event.listen(store.engine, "before_cursor_execute", record)
    return statements


def test_every_stream_of_a_process_shares_one_read_of_each_event(store, webhook_app):
    merchant, _ = merchant_with_endpoints(store)
    event_id = record_payment(store, webhook_app.extensions["payhook.broker"], merchant.id, "mpesa/stk_success.json")
    frames = Frames(store)
    statements = _selects(store)
    # Twenty streams woken by the same notice at once: the first reads, the others wait for its read.
    texts: list[str | None] = []
    start = threading.Barrier(20)

    def stream() -> None:
        start.wait()
        texts.append(frames.get(merchant.id, event_id))

    threads = [threading.Thread(target=stream) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(statements) == 1
    assert len(texts) == 20 and len(set(texts)) == 1
    assert texts[0].startswith(f"id: {event_id}\nevent: mpesa.stk_push\n")


def test_a_shared_frame_is_never_given_to_another_merchant(store, webhook_app):
    mine, _ = merchant_with_endpoints(store)
    other, _ = merchant_with_endpoints(store)
    theirs = record_payment(store, webhook_app.extensions["payhook.broker"], other.id, "mpesa/stk_success.json")
    frames = Frames(store)
    assert frames.get(other.id, theirs) is not None
    assert frames.get(mine.id, theirs) is None
    assert frames.get(mine.id, "evt_unknown") is None


def test_only_the_latest_frames_are_kept(store, webhook_app):
    merchant, _ = merchant_with_endpoints(store)
    broker = webhook_app.extensions["payhook.broker"]
    first, second = (record_payment(store, broker, merchant.id, f"mpesa/{name}.json")
                     for name in ("stk_success", "stk_cancelled_1032"))
    frames = Frames(store, size=1)
    statements = _selects(store)
    frames.get(merchant.id, first)
    frames.get(merchant.id, second)  # pushes the first out
    frames.get(merchant.id, second)
    frames.get(merchant.id, first)
    assert len(statements) == 3
