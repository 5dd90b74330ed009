"""``payhook-mail-worker``: run the Dramatiq worker for every mail queue."""

import functools
import logging
import os
import signal
import sys
import threading

from payhook_shared import logs
from payhook_shared.entrypoint import parse_args
from payhook_shared.metrics import HealthServer
from payhook_shared.store import Store
from payhook_shared.store.schema import check_schema, wait_for_schema

from .settings import Settings

log = logging.getLogger("payhook_mail")


def _schema_migrated(settings: Settings) -> bool:
    """Wait (serving /health, not Ready) until the schema is this code's; False if stopped first.

    Runs before the ``dramatiq`` CLI takes over, so no worker process consumes against an old schema.
    """
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    store = Store(settings.database_url, pool_size=1)
    health = None
    try:
        check_schema(store)
        return True
    except Exception:
        if settings.health_port:
            health = HealthServer(settings.health_port, {"database": store.ping,
                                                         "schema": functools.partial(check_schema, store)},
                                  host=settings.health_host).start()
        return wait_for_schema(store, stop)
    finally:
        if health is not None:
            health.stop()
        store.dispose()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main() -> None:
    """Replace this process with the ``dramatiq`` CLI, configured from Settings, once the schema is migrated."""
    extra = parse_args("payhook-mail-worker", "payhook-mail-worker",
                       "Serve every mail queue (PROCESSES, THREADS and the other settings come from the "
                       "environment) until SIGTERM.", sys.argv[1:], passthrough="dramatiq")
    settings = Settings.from_env()
    logs.configure("mail-worker", settings.log_format, settings.log_level)
    if not _schema_migrated(settings):
        log.info("mail worker stopped before the schema was migrated")
        return
    dramatiq = os.path.join(os.path.dirname(sys.executable), "dramatiq")
    os.execv(dramatiq, [
        dramatiq, "payhook_mail.app:setup",
        "--processes", str(settings.processes), "--threads", str(settings.threads),
        *extra,
    ])


if __name__ == "__main__":
    main()
