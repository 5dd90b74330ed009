"""delivery-worker settings, read once from the environment."""

from __future__ import annotations

import dataclasses

from payhook_shared import ssrf
from payhook_shared.config import load_settings


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every setting of the delivery-worker; see the README for each variable."""

    database_url: str = "sqlite:///var/payhook.db"
    redis_url: str = "redis://127.0.0.1:6479/0"
    db_pool_size: int = 8
    # Prepare repeated statements on the server: off by default, so a PgBouncer in transaction mode works.
    db_prepared_statements: bool = False
    log_format: str = "json"
    log_level: str = "INFO"
    # GET /health, /health/ready and /metrics of this worker process on this port; 0 turns them off.
    health_port: int = 9100
    # Address the health server binds: loopback unless asked, as in `make run`; the container images
    # set 0.0.0.0 so that Kubernetes probes and Prometheus reach it.
    health_host: str = "127.0.0.1"
    # Seconds to wait before each retry after the first, immediate attempt.
    retry_schedule: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
    retry_jitter: float = 0.2
    connect_timeout: float = 5.0
    total_timeout: float = 15.0
    response_snippet_bytes: int = 2048
    max_payload_bytes: int = 256 * 1024
    sweep_interval: float = 1.0
    # A claim outlives the longest attempt by this margin before the sweeper frees it.
    lease_margin: float = 30.0
    # A worker silent this long is dead, and Redis hands its unacked messages to others.
    # It must exceed total_timeout: a worker whose threads are all busy sends no heartbeat.
    heartbeat_timeout: float = 30.0
    # Retry-After is honoured between these bounds (seconds).
    retry_after_min: float = 1.0
    retry_after_max: float = 3600.0
    # Endpoint health: failures in a row that open the circuit, seconds between half-open
    # probes, and seconds of continuous failure after which the endpoint is disabled.
    circuit_threshold: int = 5
    circuit_cooldown: float = 60.0
    disable_after: float = 5 * 24 * 3600.0
    # CIDRs endpoints may resolve to although they are not public (e.g. 127.0.0.0/8 in development).
    endpoint_allowlist: tuple[str, ...] = ()
    # Seconds a delivery waits when its endpoint is at max_in_flight (a rate limit computes its own wait).
    limit_retry_delay: float = 0.5
    # Retention: seconds between purges (0: never), days raw payloads and events are kept by
    # default (merchants may set their own), and an optional folder for JSON Lines of what is purged.
    retention_interval: float = 3600.0
    retention_raw_payload_days: int = 30
    retention_events_days: int = 90
    retention_export_dir: str = ""
    # Worker process: which pool of priority queues it serves (see payhook_shared.priority.POOLS),
    # its threads, how often an idle queue is polled, and how long SIGTERM waits for work in flight.
    pool: str = "all"
    threads: int = 8
    poll_interval_ms: int = 100
    shutdown_timeout: float = 30.0

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
