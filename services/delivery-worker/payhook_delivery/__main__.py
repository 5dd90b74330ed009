"""``payhook-delivery-worker``: one worker process serving one pool of delivery queues.

This runner embeds Dramatiq's Worker so a process serves exactly its pool's
queues, and sees to the schema and SIGTERM. Scale by running more processes
(replicas); each pool is its own Deployment so its capacity is reserved.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

import dramatiq

from payhook_shared.entrypoint import parse_args
from payhook_shared.priority import DELIVERY, POOL_NICENESS, pool_queues
from payhook_shared.store.schema import wait_for_schema

from .app import setup

log = logging.getLogger("payhook_delivery")


def main() -> None:
    """Run until SIGTERM or SIGINT, then finish the work in flight and exit."""
    parse_args("payhook-delivery-worker", "payhook-delivery-worker",
               "Serve one pool of delivery queues (POOL, THREADS and the other settings come from the "
               "environment) until SIGTERM.", sys.argv[1:])
    app = setup()
    settings, broker = app.settings, app.broker
    queues = pool_queues(DELIVERY, settings.pool)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    os.nice(POOL_NICENESS[settings.pool] if settings.niceness is None else settings.niceness)
    # Health first (not Ready while the schema is behind), then consume only once it is migrated.
    rt = app.runtime.get()
    rt.serve_health()
    if not wait_for_schema(rt.store, stop):
        rt.close()
        log.info("delivery worker stopped before the schema was migrated")
        return
    broker.emit_after("process_boot")
    worker = dramatiq.Worker(broker, queues=set(queues), worker_threads=settings.threads,
                             worker_timeout=settings.poll_interval_ms)
    worker.start()
    log.info("delivery worker up: pool %s (%s), %d threads, niceness %d", settings.pool, ", ".join(queues),
             settings.threads, os.nice(0))
    stop.wait()
    log.info("stopping: finishing deliveries in flight (up to %.0f s)", settings.shutdown_timeout)
    worker.stop(timeout=int(settings.shutdown_timeout * 1000))
    broker.close()
    log.info("delivery worker stopped")


if __name__ == "__main__":
    main()
