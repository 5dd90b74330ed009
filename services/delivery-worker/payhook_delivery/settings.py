"""delivery-worker settings, read once from the environment."""

from __future__ import annotations

import dataclasses

from payhook_shared import ssrf
from payhook_shared.config import load_settings


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every setting of the delivery-worker; docs/configuration.md lists them (``make docs``).

    Each field's docstring is its one line in that page: keep it to one sentence of meaning.
    """

    database_url: str = "sqlite:///var/payhook.db"
    """The store: ``sqlite:///path`` or ``postgresql://user:pass@host/db``."""
    redis_url: str = "redis://127.0.0.1:6479/0"
    """The Redis that carries the work messages (Dramatiq), the sweeper's lock and the endpoint limits."""
    db_pool_size: int = 8
    """Database connections each worker process keeps: ``THREADS`` + 2 for the sweeper and the retention purge."""
    db_prepared_statements: bool = False
    """PostgreSQL: prepare repeated statements on the server; off so a PgBouncer in transaction mode works."""
    log_format: str = "json"
    """``json`` (one object per line) or ``text``."""
    log_level: str = "INFO"
    """Lowest level logged (``DEBUG``, ``INFO``, ``WARNING``, …)."""
    health_port: int = 9100
    """Port of this process's ``/health``, ``/health/ready`` and ``/metrics``; ``0`` turns them off."""
    health_host: str = "127.0.0.1"
    """Address the health server binds: loopback, as in ``make run``; the images and the Kubernetes config set ``0.0.0.0`` for probes."""
    retry_schedule: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
    """Seconds before each retry after the first, immediate attempt (the ``standard`` profile); then the delivery is dead."""
    retry_jitter: float = 0.2
    """Each retry delay is spread by up to this fraction either way."""
    connect_timeout: float = 5.0
    """Seconds to connect to an endpoint before the attempt fails as ``timeout``."""
    total_timeout: float = 15.0
    """Seconds an attempt may take in all before it fails as ``timeout``."""
    response_snippet_bytes: int = 2048
    """Bytes of an endpoint's answer kept with the attempt; the rest is never read."""
    max_payload_bytes: int = 256 * 1024
    """Largest webhook body sent; a larger one is dead at once (``too_large``), never attempted."""
    sweep_interval: float = 1.0
    """Seconds between sweeps that enqueue due deliveries whose message Redis no longer holds."""
    sweep_idle_interval: float = 5.0
    """Longest the sweeper sleeps while no delivery (or replay) is under way or due; it wakes for the next one due."""
    lease_margin: float = 30.0
    """Seconds a claim outlives the longest attempt (``TOTAL_TIMEOUT``) before the sweeper frees it."""
    heartbeat_timeout: float = 30.0
    """Seconds of silence after which a worker is dead and Redis hands its unacknowledged messages to others; must exceed ``TOTAL_TIMEOUT``, as a worker whose threads are all busy sends no heartbeat."""
    retry_after_min: float = 1.0
    """A ``Retry-After`` (on a ``429`` or a ``5xx``) shorter than this many seconds is raised to it."""
    retry_after_max: float = 3600.0
    """A ``Retry-After`` (on a ``429`` or a ``5xx``) longer than this many seconds is cut to it."""
    circuit_threshold: int = 5
    """Failures in a row that open an endpoint's circuit."""
    circuit_cooldown: float = 60.0
    """Seconds between the probes let through an open circuit."""
    disable_after: float = 5 * 24 * 3600.0
    """Seconds of continuous failure after which an endpoint is disabled."""
    endpoint_allowlist: tuple[str, ...] = ()
    """Non-public CIDRs every attempt may connect to, matched against the address connected to (e.g. ``127.0.0.0/8`` in development); a bad entry stops the worker at start-up."""
    limit_retry_delay: float = 0.5
    """Seconds a delivery waits when its endpoint is at ``max_in_flight`` (a rate limit computes its own wait)."""
    retention_interval: float = 3600.0
    """Seconds between retention purges; ``0`` turns retention off."""
    retention_raw_payload_days: int = 30
    """Days raw payloads are kept before they are blanked, unless the merchant sets its own."""
    retention_events_days: int = 90
    """Days events (with their deliveries, attempts and emails) are kept, unless the merchant sets its own."""
    retention_export_dir: str = ""
    """Folder where what is purged is first appended as ``purged-YYYYMMDD.jsonl``; empty: not exported."""
    pool: str = "all"
    """Which pool of priority queues this process serves: ``urgent``, ``standard``, ``low`` or ``all``."""
    threads: int = 8
    """Worker threads of this process."""
    niceness: int | None = None
    """Niceness the process adds to itself at start, so a busy host runs URGENT before LOW; unset: by pool (urgent 0, standard 5, low 10)."""
    poll_interval_ms: int = 1000
    """Longest an idle worker thread waits for work before looking up, so it bounds how long SIGTERM waits for an idle worker (consumers block on wake-ups, not on this)."""
    shutdown_timeout: float = 30.0
    """Seconds SIGTERM waits for the deliveries in flight."""

    def __post_init__(self) -> None:
        ssrf.networks(self.endpoint_allowlist)  # a bad CIDR fails at start-up, not at the first delivery

    @property
    def lease_seconds(self) -> float:
        """How long a claim lasts: longer than any attempt can take."""
        return self.total_timeout + self.lease_margin

    @classmethod
    def from_env(cls, environ=None, **overrides) -> "Settings":
        """Settings from ``environ`` (default ``os.environ``) with ``overrides`` applied."""
        return load_settings(cls, environ, **overrides)
