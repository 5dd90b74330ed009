"""Delivery attempts against a real receiver: signing, retries, categories, duplicates, lost messages."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy
from prometheus_client import REGISTRY
from sqlalchemy import select, text

from factories import fixture_bytes, merchant_with_endpoints, stk_url
from payhook_shared import signing
from payhook_shared.jobs import plan
from payhook_shared.messages import DeliverWebhook
from payhook_shared.priority import Priority
from payhook_shared.store import Delivery, DeliveryAttempt, JobState
from support import Clock, wait_until


def post_payment(client, merchant, fixture="mpesa/stk_success.json"):
    response = client.post(stk_url(merchant), data=fixture_bytes(fixture), content_type="application/json")
    assert response.status_code == 200


def delivery(store, delivery_id: str | None = None) -> Delivery:
    with store.read() as session:
        if delivery_id is not None:
            return session.get(Delivery, delivery_id)
        return session.scalars(select(Delivery)).one()


def all_done(store, count: int) -> bool:
    with store.read() as session:
        states = session.scalars(select(Delivery.state)).all()
    return len(states) == count and all(state == JobState.DONE.value for state in states)


def attempts(store) -> list[DeliveryAttempt]:
    with store.read() as session:
        return list(session.scalars(select(DeliveryAttempt).order_by(DeliveryAttempt.id)))


def test_webhook_is_signed_with_every_active_secret(client, store, receiver, delivery_worker):
    merchant, [endpoint] = merchant_with_endpoints(store, receiver.url)
    delivery_worker()
    post_payment(client, merchant)
    [webhook] = receiver.wait_for(1)
    signing.verify(endpoint.secret, webhook.headers, webhook.body)
    assert webhook.headers["content-type"] == "application/json"
    assert webhook.headers["webhook-id"].startswith("evt_")


def test_failures_are_retried_with_the_same_webhook_id_until_delivered(client, store, receiver, delivery_worker):
    answers = iter([500, 503, 200])
    receiver.respond = lambda req: (next(answers), {}, b"nope")
    merchant, _ = merchant_with_endpoints(store, receiver.url)
    delivery_worker(retry_schedule=(0.3, 0.3), retry_jitter=0.0)
    post_payment(client, merchant)
    got = receiver.wait_for(3)
    assert len({r.headers["webhook-id"] for r in got}) == 1
    assert got[1].at - got[0].at >= 0.25
    wait_until(lambda: delivery(store).state == JobState.DONE.value, what="delivered")
    assert [(a.number, a.status_code, a.category) for a in attempts(store)] == [
        (1, 500, "server_error"), (2, 503, "server_error"), (3, 200, "success")]


def test_delivery_is_dead_when_attempts_run_out(client, store, receiver, delivery_worker):
    receiver.respond = lambda req: (500, {}, b"x" * 10_000)
    merchant, _ = merchant_with_endpoints(store, receiver.url)
    delivery_worker(retry_schedule=(0.2,), retry_jitter=0.0, response_snippet_bytes=100)
    post_payment(client, merchant)
    wait_until(lambda: delivery(store).state == JobState.DEAD.value, what="dead delivery")
    assert len(receiver.received) == 2
    assert all(len(a.response_snippet) == 100 for a in attempts(store))


def test_redirect_is_a_failure_and_not_followed(client, store, receiver, delivery_worker):
    receiver.respond = lambda req: (302, {"location": "http://127.0.0.1:9/elsewhere"}, b"")
    merchant, _ = merchant_with_endpoints(store, receiver.url)
    delivery_worker(retry_schedule=(), retry_jitter=0.0)
    post_payment(client, merchant)
    wait_until(lambda: delivery(store).state == JobState.DEAD.value, what="dead delivery")
    assert [a.category for a in attempts(store)] == ["redirect"]
    assert len(receiver.received) == 1


def test_unreachable_endpoint_is_a_network_failure(client, store, delivery_worker):
    from support import free_port

    merchant, _ = merchant_with_endpoints(store, f"http://127.0.0.1:{free_port()}/closed")
    delivery_worker(retry_schedule=(), retry_jitter=0.0)
    post_payment(client, merchant)
    wait_until(lambda: delivery(store).state == JobState.DEAD.value, what="dead delivery")
    [attempt] = attempts(store)
    assert attempt.category == "network" and attempt.status_code is None and attempt.error


def test_slow_endpoint_times_out(client, store, receiver, delivery_worker):
    def slow(req):
        time.sleep(1.5)
        return 200, {}, b""
    receiver.respond = slow
    merchant, _ = merchant_with_endpoints(store, receiver.url)
    delivery_worker(retry_schedule=(), total_timeout=0.5)
    post_payment(client, merchant)
    wait_until(lambda: delivery(store).state == JobState.DEAD.value, what="dead delivery")
    [attempt] = attempts(store)
    assert attempt.category == "timeout" and attempt.duration_ms < 1400


def skipped(priority: Priority) -> float:
    """Delivery messages the worker process has handled and found nothing to do for (a duplicate, say)."""
    return REGISTRY.get_sample_value("payhook_deliveries_total",
                                     {"outcome": "skipped", "priority": priority.label}) or 0.0


def test_duplicate_messages_deliver_once(client, store, receiver, delivery_worker):
    merchant, _ = merchant_with_endpoints(store, receiver.url)
    rt = delivery_worker()
    post_payment(client, merchant)
    d = delivery(store)
    before = skipped(Priority(d.priority))
    for _ in range(5):
        rt.broker.enqueue(plan(DeliverWebhook(delivery_ids=(d.id,), priority=Priority(d.priority))))
    receiver.wait_for(1)
    wait_until(lambda: skipped(Priority(d.priority)) == before + 5, what="every duplicate handled")
    assert len(receiver.received) == 1


def post_payments(client, merchant, n: int) -> None:
    for i in range(n):
        body = fixture_bytes("mpesa/stk_success.json").replace(b"ws_CO_191220191020363925", f"ws_CO_{i}".encode())
        assert client.post(stk_url(merchant), data=body, content_type="application/json").status_code == 200


def test_one_message_names_many_deliveries_and_each_is_sent_once(client, store, receiver, redis_client,
                                                                 delivery_worker):
    """A message naming several deliveries claims them together and POSTs them side by side; ids repeated,
    unknown or already delivered are skipped, and a slow endpoint does not hold the others back."""
    merchant, _ = merchant_with_endpoints(store, receiver.url)
    post_payments(client, merchant, 6)
    redis_client.flushall()  # the messages ingest sent: this test sends its own
    with store.read() as session:
        ids = session.scalars(select(Delivery.id).order_by(Delivery.id)).all()
    slow_event = delivery(store, ids[0]).event_id
    receiver.respond = lambda req: (time.sleep(2.0) if req.headers["webhook-id"] == slow_event else None,
                                    (200, {}, b"ok"))[1]
    rt = delivery_worker(threads=8)
    priority = Priority(delivery(store, ids[0]).priority)
    before = skipped(priority)
    started = time.time()
    rt.broker.enqueue(plan(DeliverWebhook(delivery_ids=(*ids, ids[1], "dlv_unknown"), priority=priority)))
    wait_until(lambda: all_done(store, 6), timeout=20, what="all 6 delivered")
    # Side by side: the five quick ones did not wait for the slow one.
    assert max(r.at for r in receiver.received if r.headers["webhook-id"] != slow_event) - started < 1.5
    rt.broker.enqueue(plan(DeliverWebhook(delivery_ids=tuple(ids[:2]), priority=priority)))
    wait_until(lambda: skipped(priority) == before + 3, what="the repeat, the unknown id and the done ones skipped")
    assert len(receiver.received) == len({r.headers["webhook-id"] for r in receiver.received}) == 6
    assert sorted(a.delivery_id for a in attempts(store)) == sorted(ids)


def test_sweeper_restores_deliveries_after_redis_is_flushed(client, store, receiver, redis_client, delivery_worker):
    merchant, _ = merchant_with_endpoints(store, receiver.url)
    for n in range(5):
        body = fixture_bytes("mpesa/stk_success.json").replace(b"ws_CO_191220191020363925", f"ws_CO_{n}".encode())
        assert client.post(stk_url(merchant), data=body, content_type="application/json").status_code == 200
    redis_client.flushall()  # every message gone before any worker ran
    clock = Clock()
    rt = delivery_worker(clock=clock)
    clock.advance(5)  # the sweeper's grace for messages just sent, rather than five seconds of waiting
    wait_until(lambda: all_done(store, 5), timeout=20, what="all 5 delivered")
    assert rt.sweeper.run_once() == 0  # nothing left to restore
    got = receiver.received
    assert len(got) == len({r.headers["webhook-id"] for r in got}) == 5


def test_payload_over_the_cap_is_dead_without_an_attempt(client, store, receiver, delivery_worker):
    merchant, _ = merchant_with_endpoints(store, receiver.url)
    delivery_worker(max_payload_bytes=200)
    post_payment(client, merchant)
    wait_until(lambda: delivery(store).state == JobState.DEAD.value, what="dead delivery")
    assert delivery(store).last_category == "too_large" and "exceeds 200" in delivery(store).last_error
    assert receiver.received == [] and attempts(store) == []


# A short lease: if an answered delivery were left "sending", the sweeper would free it and it would go out again.
SHORT_LEASE = {"total_timeout": 1.0, "lease_margin": 0.5}


def delivered_once(store, receiver) -> DeliveryAttempt:
    # When the full record is refused, the outcome commits first and the attempt's row a moment after it.
    wait_until(lambda: delivery(store).state == JobState.DONE.value and attempts(store), what="delivery done")
    [attempt] = attempts(store)
    assert len(receiver.received) == 1
    return attempt


def test_answer_with_nul_byte_is_recorded_and_sent_once(client, store, receiver, delivery_worker):
    receiver.respond = lambda req: (200, {}, b'{"ok":true}\x00tail')
    merchant, _ = merchant_with_endpoints(store, receiver.url)
    delivery_worker(**SHORT_LEASE)
    post_payment(client, merchant)
    attempt = delivered_once(store, receiver)
    assert attempt.category == "success" and attempt.response_snippet == '{"ok":true}\ufffdtail'


def test_answer_with_invalid_utf8_is_recorded_and_sent_once(client, store, receiver, delivery_worker):
    receiver.respond = lambda req: (200, {}, b"ok \xff\xfe\xc3(")
    merchant, _ = merchant_with_endpoints(store, receiver.url)
    delivery_worker(**SHORT_LEASE)
    post_payment(client, merchant)
    assert delivered_once(store, receiver).response_snippet == "ok \ufffd\ufffd\ufffd("


def test_failure_answer_with_nul_byte_is_retried_on_schedule_then_dead(client, store, receiver, delivery_worker):
    receiver.respond = lambda req: (503, {"retry-after": "\xb2"}, b"busy\x00")
    merchant, _ = merchant_with_endpoints(store, receiver.url)
    delivery_worker(retry_schedule=(0.2,), retry_jitter=0.0, **SHORT_LEASE)
    post_payment(client, merchant)
    wait_until(lambda: delivery(store).state == JobState.DEAD.value, what="dead delivery")
    assert [(a.status_code, a.response_snippet) for a in attempts(store)] == [(503, "busy\ufffd")] * 2
    assert len(receiver.received) == 2


def refuse_response_snippets(store) -> None:
    """Make the database refuse any attempt row that carries a response snippet, as it might refuse text."""
    with store.write() as session:
        if store.dialect == "postgresql":
            session.execute(text("CREATE FUNCTION refuse_snippet() RETURNS trigger LANGUAGE plpgsql AS $$ "
                                 "BEGIN RAISE EXCEPTION 'snippet refused'; END $$"))
            session.execute(text("CREATE TRIGGER refuse_snippet BEFORE INSERT ON delivery_attempts FOR EACH ROW "
                                 "WHEN (NEW.response_snippet IS NOT NULL) EXECUTE FUNCTION refuse_snippet()"))
        else:
            session.execute(text("CREATE TRIGGER refuse_snippet BEFORE INSERT ON delivery_attempts "
                                 "WHEN NEW.response_snippet IS NOT NULL BEGIN SELECT RAISE(ABORT, 'snippet refused');"
                                 " END"))


def test_success_is_recorded_when_the_database_refuses_the_details(client, store, receiver, delivery_worker):
    merchant, _ = merchant_with_endpoints(store, receiver.url)
    refuse_response_snippets(store)
    delivery_worker(**SHORT_LEASE)
    post_payment(client, merchant)
    attempt = delivered_once(store, receiver)
    assert (attempt.status_code, attempt.category, attempt.response_snippet) == (200, "success", None)


def test_an_outcome_the_database_cannot_take_yet_is_recorded_when_it_returns_not_sent_again(
        client, store, receiver, delivery_worker, database_url, postgres):
    """The database goes away while the endpoint answers: the worker holds on to the outcome until it is back."""
    if not database_url.startswith("postgresql"):
        pytest.skip("takes a PostgreSQL database away")
    name = sqlalchemy.make_url(database_url).database
    merchant, _ = merchant_with_endpoints(store, receiver.url)

    def answer_then_lose_the_database(request):
        postgres._execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        postgres._drop_connections(name)
        threading.Timer(2.0, postgres._execute, [f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true']).start()
        return 200, {}, b'{"ok":true}'

    receiver.respond = answer_then_lose_the_database
    delivery_worker()
    post_payment(client, merchant)
    receiver.wait_for(1)
    receiver.respond = lambda request: (200, {}, b'{"ok":true}')

    def recorded() -> bool:
        try:
            return delivery(store).state == JobState.DONE.value
        except sqlalchemy.exc.OperationalError:  # the test's own connections went with the database
            return False

    wait_until(recorded, timeout=15, what="the outcome recorded")
    time.sleep(0.5)  # a few sweeps (0.2 s apart): nothing for them to send again
    assert len(receiver.received) == 1
    assert [(a.number, a.status_code) for a in attempts(store)] == [(1, 200)]
