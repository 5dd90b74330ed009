"""The mail-worker's broker, set as Dramatiq's global before any actor is declared."""

from __future__ import annotations

import dramatiq
from dramatiq.middleware import default_middleware

from payhook_shared import logs
from payhook_shared.metrics import DramatiqMetrics
from payhook_shared.broker import create_broker

from .settings import Settings


class Lifecycle(dramatiq.Middleware):
    """Starts this process's sweeper, alert check and health server when the worker boots; releases everything
    at shutdown. With several worker processes (``PROCESSES``), each takes the next free port from
    ``HEALTH_PORT`` on."""

    def after_worker_boot(self, broker, worker) -> None:
        from . import runtime
        rt = runtime.get()
        rt.sweeper.start()
        rt.alerts.start()
        rt.serve_health(attempts=rt.settings.processes)

    def before_worker_shutdown(self, broker, worker) -> None:
        from . import runtime
        runtime.get().close()


settings = Settings.from_env()
logs.configure("mail-worker", settings.log_format, settings.log_level)
broker = create_broker(settings.redis_url,
                       middleware=[m() for m in default_middleware] + [DramatiqMetrics(), Lifecycle()])
dramatiq.set_broker(broker)
