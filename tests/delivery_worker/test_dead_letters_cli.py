"""Dead letters round trip through the CLI: dead → list → bulk retry → delivered; recover; purge."""

from __future__ import annotations

import datetime as dt
import json

from click.testing import CliRunner
from sqlalchemy import select

from factories import fixture_bytes, merchant_with_endpoints, stk_url
from payhook_delivery.cli import main
from payhook_shared.store import Delivery, DeliveryAttempt
from support import wait_until


def post_payments(client, merchant, n: int) -> None:
    for i in range(n):
        body = fixture_bytes("mpesa/stk_success.json").replace(b"ws_CO_191220191020363925", f"ws_CO_d{i}".encode())
        assert client.post(stk_url(merchant), data=body, content_type="application/json").status_code == 200


def states(store) -> list[str]:
    with store.read() as session:
        return sorted(session.scalars(select(Delivery.state)))


def cli(database_url, *args):
    result = CliRunner().invoke(main, list(args), env={"DATABASE_URL": database_url}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_dead_letters_bulk_retry_until_delivered(client, store, receiver, database_url, delivery_worker):
    receiver.respond = lambda req: (500, {}, b"broken")
    merchant, [endpoint] = merchant_with_endpoints(store, receiver.url)
    delivery_worker(retry_schedule=(), circuit_threshold=100)
    post_payments(client, merchant, 3)
    wait_until(lambda: states(store) == ["dead"] * 3, what="three dead letters")

    listed = [json.loads(line) for line in cli(database_url, "dead", "list", "--endpoint", endpoint.id).splitlines()]
    assert len(listed) == 3 and {d["category"] for d in listed} == {"server_error"}
    shown = json.loads(cli(database_url, "dead", "show", listed[0]["id"]))
    assert shown["attempts"][0]["status"] == 500 and shown["attempts"][0]["response"] == "broken"
    assert cli(database_url, "dead", "list", "--category", "timeout") == ""

    receiver.respond = lambda req: (200, {}, b"")
    assert "3 dead letter(s) queued" in cli(database_url, "dead", "retry-all", "--merchant", merchant.id)
    wait_until(lambda: states(store) == ["done"] * 3, what="all delivered after retry")
    with store.read() as session:
        numbers = sorted(session.scalars(select(DeliveryAttempt.number)))
    assert numbers == [1, 1, 1, 2, 2, 2]


def test_recover_redelivers_an_endpoints_failures_since_a_time(client, store, receiver, database_url,
                                                               delivery_worker):
    receiver.respond = lambda req: (500, {}, b"")
    merchant, [endpoint] = merchant_with_endpoints(store, receiver.url)
    delivery_worker(retry_schedule=(), circuit_threshold=100)
    post_payments(client, merchant, 2)
    wait_until(lambda: states(store) == ["dead"] * 2, what="dead letters")
    receiver.respond = lambda req: (200, {}, b"")
    later = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=1)).isoformat()
    assert "0 delivery" in cli(database_url, "recover", "--endpoint", endpoint.id, "--since", later)
    since = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)).isoformat()
    assert "2 delivery" in cli(database_url, "recover", "--endpoint", endpoint.id, "--since", since)
    wait_until(lambda: states(store) == ["done"] * 2, what="recovered")


def test_purge_removes_dead_letters_and_their_attempts(client, store, receiver, database_url, delivery_worker):
    receiver.respond = lambda req: (500, {}, b"")
    merchant, _ = merchant_with_endpoints(store, receiver.url)
    delivery_worker(retry_schedule=(), circuit_threshold=100)
    post_payments(client, merchant, 2)
    wait_until(lambda: states(store) == ["dead"] * 2, what="dead letters")
    assert "2 dead letter(s) purged" in cli(database_url, "dead", "purge", "--yes")
    assert states(store) == []
    with store.read() as session:
        assert session.scalars(select(DeliveryAttempt)).all() == []
