"""The ceiling of delivery in Python: pop ids from Redis, POST with the workers' HTTP client, record nothing.

``make bench`` runs it in the same minutes as the real drain, against the same receiver, with as many
threads as the delivery pools have in all, so the gap between the two is what Payhook's bookkeeping
(store, claims, Dramatiq, signing, metrics) costs per webhook.
"""

from __future__ import annotations

import json
import threading
import time

import redis

from payhook_shared import catalog, pinned_http, signing

KEY = "bench:reference"


def run(redis_url: str, url: str, count: int, threads: int) -> dict:
    """Deliver ``count`` signed bodies to ``url`` from a Redis list; rate and this process's CPU per delivery."""
    import resource

    client = redis.Redis.from_url(redis_url)
    client.delete(KEY)
    for start in range(0, count, 1000):
        client.rpush(KEY, *[f"evt_{i}" for i in range(start, min(count, start + 1000))])
    http = pinned_http.pool(threads)
    secret = signing.generate_secret()
    # A real STK webhook's body, the size and shape the workers send.
    example = catalog.example_body(catalog.by_example_type("mpesa.stk_push"))
    statuses: list[int] = []

    def work() -> None:
        while (item := client.lpop(KEY)) is not None:
            event_id = item.decode()
            body = json.dumps({**example, "id": event_id}).encode()
            response = http.request("POST", url, body=body, headers=signing.headers([secret], event_id, body),
                                    redirect=False, retries=False, timeout=15.0)
            statuses.append(response.status)

    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.monotonic()
    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    seconds = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    http.clear()
    return {"delivered": statuses.count(200), "seconds": round(seconds, 2),
            "deliveries_per_s": round(len(statuses) / seconds, 1),
            "cpu_ms_per_delivery": round(cpu * 1000 / max(len(statuses), 1), 3)}
