"""mail-worker settings, read once from the environment."""

from __future__ import annotations

import dataclasses

from payhook_shared.config import load_settings


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every setting of the mail-worker; docs/configuration.md lists them (``make docs``).

    Each field's docstring is its one line in that page: keep it to one sentence of meaning.
    """

    database_url: str = "sqlite:///var/payhook.db"
    """The store: ``sqlite:///path`` or ``postgresql://user:pass@host/db``."""
    redis_url: str = "redis://127.0.0.1:6479/0"
    """The Redis that carries the work messages (Dramatiq) and the sweeper's lock."""
    smtp_url: str = ""
    """``smtp://user:pass@host:587`` (STARTTLS), ``smtps://…`` (TLS) or ``smtp+plain://…`` (no TLS); empty: write ``.eml`` files to ``OUTBOX_DIR``."""
    smtp_ca_file: str = ""
    """A PEM file of CA certificates to trust instead of the system's (a private or test CA)."""
    smtp_timeout: float = 15.0
    """Socket timeout, in seconds, of the SMTP connection (connecting and each command)."""
    outbox_dir: str = "var/outbox"
    """Where emails are written as ``.eml`` files when ``SMTP_URL`` is empty."""
    mail_from: str = "Payhook <no-reply@payhook.local>"
    """The ``From`` of every email."""
    message_id_domain: str = "payhook.local"
    """Domain of each email's ``Message-ID`` (``<email id@domain>``), the same on every attempt."""
    db_pool_size: int = 4
    """Database connections each worker process keeps: as many as its ``THREADS``."""
    db_prepared_statements: bool = False
    """PostgreSQL: prepare repeated statements on the server; off so a PgBouncer in transaction mode works."""
    log_format: str = "json"
    """``json`` (one object per line) or ``text``."""
    log_level: str = "INFO"
    """Lowest level logged (``DEBUG``, ``INFO``, ``WARNING``, …)."""
    health_port: int = 9100
    """Port of ``/health``, ``/health/ready`` and ``/metrics``; with ``PROCESSES`` above 1, consecutive ports; ``0`` turns them off."""
    health_host: str = "127.0.0.1"
    """Address the health server binds: loopback, as in ``make run``; the images and the Kubernetes config set ``0.0.0.0`` for probes."""
    retry_schedule: tuple[float, ...] = (10, 60, 300, 1800, 7200)
    """Seconds before each retry of an email after the first attempt; then the email is dead."""
    retry_jitter: float = 0.2
    """Each retry delay is spread by up to this fraction either way."""
    sweep_interval: float = 1.0
    """Seconds between sweeps that enqueue due emails whose message Redis no longer holds."""
    sweep_idle_interval: float = 5.0
    """Longest the sweeper sleeps while no email is under way or due; it wakes for the next one due."""
    alert_emails: tuple[str, ...] = ()
    """Operator alert recipients (comma-separated); empty turns the dead-letter check off."""
    alert_dead_letter_threshold: int = 10
    """Dead deliveries plus dead emails at which an operator alert is sent (at most one an hour)."""
    alert_interval: float = 60.0
    """Seconds between dead-letter checks."""
    customer_emails_per_hour: int = 500
    """Customer emails (buyer receipts) per merchant in any hour; past it they are recorded as ``suppressed``; ``0`` lifts the cap."""
    processes: int = 1
    """Worker processes (Dramatiq's ``--processes``)."""
    threads: int = 4
    """Worker threads per process."""

    @property
    def lease_seconds(self) -> float:
        """How long a claim lasts: longer than any SMTP conversation can take."""
        return self.smtp_timeout * 4 + 30

    @classmethod
    def from_env(cls, environ=None, **overrides) -> "Settings":
        """Settings from ``environ`` (default ``os.environ``) with ``overrides`` applied."""
        return load_settings(cls, environ, **overrides)
