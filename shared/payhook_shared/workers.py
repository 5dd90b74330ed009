"""What the delivery-worker and the mail-worker build alike.

Each worker has one startup function (settings → broker → runtime → actors);
these are its parts: a broker whose middleware starts and closes the process's
runtime with Dramatiq's worker, a runtime base that runs background loops and
the health server, and one actor per priority level.
"""

from __future__ import annotations

import functools
import dataclasses
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

import dramatiq
from dramatiq.middleware import default_middleware

from . import logs
from .broker import RedisBroker, create_broker
from .lazy import PerProcess
from .metrics import DramatiqMetrics, HealthServer
from .priority import Priority, actor_name, queue_name
from .store import Store
from .store.schema import check_schema

# Retries are the store's business (a row's next_attempt_at), never Dramatiq's.
ACTOR_OPTIONS = {"max_retries": 0, "time_limit": 120_000}


class Background(Protocol):
    """A loop a worker process runs beside its actors (a sweeper, a purge, an alert check)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


class WorkerRuntime:
    """One worker process's shared resources; subclasses add their own and name their background loops."""

    settings: Any
    store: Store
    broker: RedisBroker
    health: HealthServer | None = None

    def background(self) -> list[Background]:
        """The loops this process runs while its worker is up."""
        return []

    def health_attempts(self) -> int:
        """How many consecutive ports from ``HEALTH_PORT`` this process may try (one per sibling process)."""
        return 1

    def start(self) -> None:
        """Start the background loops and the health server."""
        for loop in self.background():
            loop.start()
        self.serve_health(self.health_attempts())

    def serve_health(self, attempts: int = 1) -> None:
        """Serve /health, /health/ready and /metrics on ``HEALTH_HOST:HEALTH_PORT`` (once; never when it is 0)."""
        if self.health is None and self.settings.health_port:
            self.health = HealthServer(self.settings.health_port, {
                "database": self.store.ping, "schema": functools.partial(check_schema, self.store),
                "redis": self.broker.client.ping}, host=self.settings.health_host).start(attempts)

    def release(self) -> None:
        """Release what a subclass holds beyond the store (HTTP pools, SMTP connections)."""

    def close(self) -> None:
        """Stop the background loops and the health server, and release connections."""
        for loop in self.background():
            loop.stop()
        if self.health is not None:
            self.health.stop()
        self.release()
        self.store.dispose()


R = TypeVar("R", bound=WorkerRuntime)


@dataclasses.dataclass(frozen=True)
class Worker(Generic[R]):
    """A configured worker: its settings, its broker, its actors, and the runtime each process builds on first use."""

    settings: Any
    broker: RedisBroker
    runtime: PerProcess[R]
    actors: dict[Priority, dramatiq.Actor]


class Lifecycle(dramatiq.Middleware):
    """Starts the process's runtime when its Dramatiq worker boots; closes it at shutdown."""

    def __init__(self, runtime: PerProcess[WorkerRuntime]):
        self.runtime = runtime

    def after_worker_boot(self, broker, worker) -> None:
        self.runtime.get().start()

    def before_worker_shutdown(self, broker, worker) -> None:
        self.runtime.get().close()


def worker_broker(service: str, settings: Any, runtime: PerProcess[WorkerRuntime], **options) -> RedisBroker:
    """Configure logging for ``service`` and make the broker its actors are declared on (Dramatiq's global too,
    for the ``dramatiq`` command)."""
    logs.configure(service, settings.log_format, settings.log_level)
    broker = create_broker(settings.redis_url, middleware=[m() for m in default_middleware]
                           + [DramatiqMetrics(), Lifecycle(runtime)], **options)
    dramatiq.set_broker(broker)
    return broker


def declare_actors(broker: RedisBroker, family: str,
                   handle: Callable[[dict], None]) -> dict[Priority, dramatiq.Actor]:
    """One actor per priority level of ``family``, each on its own queue, all calling ``handle(message_kwargs)``.

    Dramatiq orders only messages a worker has already fetched, so real priority needs separate queues.
    """
    def actor_for(priority: Priority) -> dramatiq.Actor:
        def fn(**kwargs: object) -> None:
            handle(kwargs)

        fn.__name__ = actor_name(family, priority)
        return dramatiq.actor(fn, broker=broker, actor_name=actor_name(family, priority),
                              queue_name=queue_name(family, priority), priority=int(priority), **ACTOR_OPTIONS)

    return {p: actor_for(p) for p in Priority}
