"""The Daraja client against a real HTTP server (tests/support_daraja.py) and the session's real Redis."""

from __future__ import annotations

import base64
import json
import multiprocessing
import threading

import pytest
import redis as redis_lib

from payhook_shared.daraja import client as daraja_client
from payhook_shared.daraja.client import DarajaClient, normalise_phone
from payhook_shared.daraja.errors import DarajaAuthError, DarajaRateLimited, DarajaRejected, DarajaUnavailable
from support import free_port
from support_daraja import CONSUMER_SECRET, PASSKEY, SHORTCODE, FakeDaraja, credentials, token_in_process

OAUTH = "/oauth/v1/generate"


class Clock:
    """Seconds that stand still until a test moves them."""

    def __init__(self, now: float = 1_900_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


creds = credentials


@pytest.fixture
def daraja():
    server = FakeDaraja().start()
    yield server
    server.stop()


@pytest.fixture
def make_client(daraja, redis_url):
    made = []

    def make(**options) -> DarajaClient:
        options.setdefault("clock", Clock())
        client = DarajaClient({"sandbox": daraja.url}, redis_lib.Redis.from_url(redis_url), **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.redis.close()


def test_stk_push_sends_daraja_shapes_and_returns_its_ids(daraja, make_client):
    accepted = make_client().stk_push(creds(), 10, "254708374149", "https://payhook.example/cb/m/t/stk",
                                      "INV-1", "Order 1")
    assert accepted.checkout_request_id.startswith("ws_CO_") and accepted.merchant_request_id
    path, headers, body = daraja.requests[-1]
    assert path == daraja_client.STK_PUSH_PATH
    assert headers["Authorization"].startswith("Bearer ")
    assert body["TransactionType"] == "CustomerPayBillOnline" and body["Amount"] == 10
    assert body["PartyA"] == body["PhoneNumber"] == "254708374149" and body["PartyB"] == SHORTCODE
    assert body["CallBackURL"] == "https://payhook.example/cb/m/t/stk"
    assert len(body["Timestamp"]) == 14 and body["Timestamp"].isdigit()
    assert base64.b64decode(body["Password"]).decode() == SHORTCODE + PASSKEY + body["Timestamp"]


def test_stk_query_and_transaction_status_are_answered(daraja, make_client):
    client = make_client()
    assert client.stk_query(creds(), "ws_CO_1")["ResultCode"] == "0"
    assert client.transaction_status(creds(), "OEI2AK4Q16", "https://r/result", "https://r/timeout")[
        "ResponseCode"] == "0"
    sent = daraja.requests[-1][2]
    assert sent["CommandID"] == "TransactionStatusQuery" and sent["Initiator"] == "testapi"
    assert "OriginalConversationID" not in sent
    # A B2C whose result never came has no receipt: it is named by its OriginatorConversationID.
    client.transaction_status(creds(), "", "https://r/result", "https://r/timeout",
                              original_conversation_id="10571-7910404-1")
    sent = daraja.requests[-1][2]
    assert (sent["TransactionID"], sent["OriginalConversationID"]) == ("", "10571-7910404-1")
    assert daraja.count(OAUTH) == 1


def test_the_token_is_fetched_once_for_many_threads(daraja, make_client):
    daraja.delay[OAUTH] = 0.3  # every thread asks while the first request is still out
    client = make_client()
    tokens, errors = [], []

    def ask():
        try:
            tokens.append(client.access_token(creds()))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(tokens)) == 1 and len(tokens) == 20
    assert daraja.count(OAUTH) == 1


def test_the_token_is_fetched_once_across_processes(daraja, redis_url):
    daraja.delay[OAUTH] = 0.3
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    processes = [context.Process(target=token_in_process, args=(daraja.url, redis_url, out)) for _ in range(3)]
    for p in processes:
        p.start()
    tokens = {out.get(timeout=60) for _ in processes}
    for p in processes:
        p.join(30)
    assert len(tokens) == 1
    assert daraja.count(OAUTH) == 1


def test_the_token_is_refreshed_before_it_expires_and_only_once(daraja, make_client):
    clock = Clock()
    client = make_client(clock=clock, refresh_before=300)
    first = client.access_token(creds())
    clock.now += 3599 - 301
    assert client.access_token(creds()) == first and daraja.count(OAUTH) == 1
    clock.now += 2  # within 300 s of expiry: the next caller refreshes, once
    second = client.access_token(creds())
    assert second != first and daraja.count(OAUTH) == 2
    assert client.access_token(creds()) == second and daraja.count(OAUTH) == 2


def test_new_credentials_never_use_the_old_token(daraja, make_client):
    client = make_client()
    client.access_token(creds("dcr_1:1"))
    client.access_token(creds("dcr_1:2"))
    assert daraja.count(OAUTH) == 2


def test_refused_consumer_key_is_an_auth_error_with_darajas_fields(daraja, make_client):
    with pytest.raises(DarajaAuthError) as refused:
        make_client().access_token(creds(key="wrong"))
    assert refused.value.status == 400 and refused.value.error_code == "400.008.01"
    assert refused.value.request_id.startswith("req-")
    assert "Invalid Authentication passed" in str(refused.value) and "wrong" not in str(refused.value)


def test_daraja_error_bodies_become_rejections(daraja, make_client):
    daraja.scripted[daraja_client.STK_PUSH_PATH].append(
        (400, {"requestId": "r-9", "errorCode": "400.002.02", "errorMessage": "Bad Request - Invalid Amount"}))
    with pytest.raises(DarajaRejected) as refused:
        make_client().stk_push(creds(), 1, "254708374149", "https://p/cb", "A", "B")
    assert (refused.value.error_code, refused.value.request_id) == ("400.002.02", "r-9")
    assert str(refused.value) == "Daraja stk_push: Bad Request - Invalid Amount (400.002.02), request r-9"


def test_a_non_zero_response_code_is_a_rejection(daraja, make_client):
    daraja.scripted[daraja_client.STK_PUSH_PATH].append(
        (200, {"ResponseCode": "1", "ResponseDescription": "Rejected by the system"}))
    with pytest.raises(DarajaRejected, match="Rejected by the system"):
        make_client().stk_push(creds(), 1, "254708374149", "https://p/cb", "A", "B")


def test_429_and_500_are_rate_limited_and_unavailable(daraja, make_client):
    client = make_client()
    daraja.scripted[daraja_client.STK_QUERY_PATH] += [
        (429, {"errorCode": "429.000.01", "errorMessage": "Too many requests"}),
        (500, {"requestId": "r-5", "errorCode": "500.001.1001", "errorMessage": "Server is busy"})]
    with pytest.raises(DarajaRateLimited):
        client.stk_query(creds(), "ws_CO_1")
    with pytest.raises(DarajaUnavailable, match="Server is busy") as failed:
        client.stk_query(creds(), "ws_CO_1")
    assert failed.value.status == 500


def test_a_refused_token_is_dropped_so_the_next_call_fetches_one(daraja, make_client):
    client = make_client()
    client.access_token(creds())
    daraja.tokens.clear()  # Daraja revoked it
    with pytest.raises(DarajaAuthError):
        client.stk_query(creds(), "ws_CO_1")
    assert client.stk_query(creds(), "ws_CO_1")["ResultCode"] == "0"
    assert daraja.count(OAUTH) == 2


def test_a_slow_daraja_times_out(daraja, make_client):
    client = make_client(read_timeout=0.2)
    client.access_token(creds())
    daraja.delay[daraja_client.STK_QUERY_PATH] = 1.0
    with pytest.raises(DarajaUnavailable, match="no answer within the timeout"):
        client.stk_query(creds(), "ws_CO_1")


def test_an_unreachable_daraja_is_unavailable(redis_url):
    client = DarajaClient({"sandbox": f"http://127.0.0.1:{free_port()}"}, redis_lib.Redis.from_url(redis_url),
                          connect_timeout=1)
    with pytest.raises(DarajaUnavailable, match="could not be reached"):
        client.access_token(creds())


def test_the_rate_limit_is_per_credential_per_second(daraja, make_client):
    clock = Clock()
    client = make_client(clock=clock, rate_limit=3)
    client.stk_query(creds(), "ws_CO_1")   # OAuth and the query: two calls this second
    client.stk_query(creds(), "ws_CO_1")
    with pytest.raises(DarajaRateLimited, match="more than 3 calls a second"):
        client.stk_query(creds(), "ws_CO_1")
    assert daraja.count(daraja_client.STK_QUERY_PATH) == 2
    # Another merchant's credentials have their own limit.
    assert client.stk_query(creds("dcr_2:1"), "ws_CO_1")["ResultCode"] == "0"
    clock.now += 1
    assert client.stk_query(creds(), "ws_CO_1")["ResultCode"] == "0"


def test_calls_are_counted_by_operation_and_outcome(daraja, make_client):
    from prometheus_client import REGISTRY

    def seen(operation, outcome):
        return REGISTRY.get_sample_value("payhook_daraja_request_seconds_count",
                                         {"operation": operation, "outcome": outcome}) or 0

    before_ok, before_rejected = seen("stk_query", "ok"), seen("stk_query", "rejected")
    client = make_client()
    client.stk_query(creds(), "ws_CO_1")
    daraja.scripted[daraja_client.STK_QUERY_PATH].append((400, {"errorCode": "400.002.02", "errorMessage": "x"}))
    with pytest.raises(DarajaRejected):
        client.stk_query(creds(), "ws_CO_1")
    assert seen("stk_query", "ok") == before_ok + 1 and seen("stk_query", "rejected") == before_rejected + 1


def test_credentials_never_show_in_repr_or_the_cache(daraja, make_client, redis_client):
    make_client().access_token(creds())
    assert CONSUMER_SECRET not in repr(creds()) and PASSKEY not in repr(creds())
    stored = b"".join(redis_client.get(k) or b"" for k in redis_client.keys("payhook:daraja:token:*"))
    assert json.loads(stored)["token"] and CONSUMER_SECRET.encode() not in stored


@pytest.mark.parametrize("given, expected", [
    ("254712345678", "254712345678"), ("0712345678", "254712345678"), ("+254 712 345 678", "254712345678"),
    ("0110345678", "254110345678"), ("254-110-345-678", "254110345678"),
])
def test_phones_are_normalised(given, expected):
    assert normalise_phone(given) == expected


@pytest.mark.parametrize("given", ["254812345678", "25471234567", "2547123456789", "712345678", "+1 555 0100", ""])
def test_other_numbers_are_refused(given):
    with pytest.raises(ValueError, match="Safaricom number"):
        normalise_phone(given)
