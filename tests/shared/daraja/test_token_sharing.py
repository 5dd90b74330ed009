"""One OAuth token per lifetime for every process, counted at the Daraja sandbox: three processes, each with
Payhook's Daraja client of its own and the session's Redis, ask Daraja together; one token serves them
all until the sandbox lets it expire, then one new token serves them all again."""

from __future__ import annotations

import json
import multiprocessing
import uuid

import redis as redis_lib

from payhook_shared.daraja.client import TOKEN_KEY
from support import wait_until
from support_sandbox import query_in_process

PROCESSES = 3
LIFETIME = 3  # seconds a sandbox token lives


def test_processes_share_one_token_per_lifetime_and_one_refreshes_it_after_expiry(daraja_sandbox, receiver,
                                                                                   redis_url):
    sandbox = daraja_sandbox(callback_delay=0, token_expires_in=LIFETIME)
    checkout_id = sandbox.stk_push(receiver.url)["CheckoutRequestID"]
    issued_to_the_test = sandbox.counters()["tokens_issued"]
    cache_id = f"dcr_{uuid.uuid4().hex[:8]}:1"
    credentials = {"cache_id": cache_id, "environment": "sandbox", "shortcode": sandbox.shortcode,
                   "consumer_key": sandbox.consumer_key, "consumer_secret": sandbox.consumer_secret,
                   "passkey": sandbox.passkey}
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    goes = [context.Queue() for _ in range(PROCESSES)]
    processes = [context.Process(target=query_in_process, args=(sandbox.url, redis_url, credentials, checkout_id,
                                                                go, out)) for go in goes]
    for process in processes:
        process.start()
    cache = redis_lib.Redis.from_url(redis_url)

    def phase(name: str) -> list[str]:
        for go in goes:
            go.put(name)
        return sorted(outcome for _, outcome in (out.get(timeout=60) for _ in goes))

    try:
        assert phase("first") == ["ok"] * PROCESSES
        assert sandbox.counters()["tokens_issued"] - issued_to_the_test == 1
        first = json.loads(cache.get(TOKEN_KEY.format(cache_id)))["token"]
        assert phase("again") == ["ok"] * PROCESSES
        assert sandbox.counters()["tokens_issued"] - issued_to_the_test == 1, "the cached token serves again"

        # Past the token's lifetime the sandbox refuses it: no process may use it; one fetches the next.
        body = {"BusinessShortCode": sandbox.shortcode, "CheckoutRequestID": checkout_id}
        wait_until(lambda: sandbox.call("/mpesa/stkpushquery/v1/query", body, token=first).status_code == 401,
                   timeout=LIFETIME + 5, what="the first token expired at the sandbox")
        assert phase("expired") == ["ok"] * PROCESSES
        assert sandbox.counters()["tokens_issued"] - issued_to_the_test == 2
        assert json.loads(cache.get(TOKEN_KEY.format(cache_id)))["token"] != first
    finally:
        for go in goes:
            go.put(None)
        for process in processes:
            process.join(30)
        cache.close()
