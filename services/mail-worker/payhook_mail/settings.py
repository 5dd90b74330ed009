"""mail-worker settings, read once from the environment."""

from __future__ import annotations

import dataclasses

from payhook_shared.config import load_settings


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every setting of the mail-worker; see the README for each variable."""

    database_url: str = "sqlite:///var/payhook.db"
    redis_url: str = "redis://127.0.0.1:6479/0"
    # smtp://user:pass@host:587 (STARTTLS), smtps://… (implicit TLS), smtp+plain://… (no TLS).
    # Empty: write .eml files to outbox_dir instead.
    smtp_url: str = ""
    # A PEM file of CA certificates to trust instead of the system's (a private or test CA).
    smtp_ca_file: str = ""
    smtp_timeout: float = 15.0
    outbox_dir: str = "var/outbox"
    mail_from: str = "Payhook <no-reply@payhook.local>"
    message_id_domain: str = "payhook.local"
    db_pool_size: int = 4
    # Prepare repeated statements on the server: off by default, so a PgBouncer in transaction mode works.
    db_prepared_statements: bool = False
    log_format: str = "json"
    log_level: str = "INFO"
    # GET /health, /health/ready and /metrics of this worker process on this port; 0 turns them off.
    health_port: int = 9100
    retry_schedule: tuple[float, ...] = (10, 60, 300, 1800, 7200)
    retry_jitter: float = 0.2
    sweep_interval: float = 1.0
    # Operator alerts: sent to these addresses (comma-separated; empty turns the check off) when the
    # dead deliveries and emails reach the threshold; at most one alert per hour.
    alert_emails: tuple[str, ...] = ()
    alert_dead_letter_threshold: int = 10
    alert_interval: float = 60.0
    # At most this many customer emails (receipts to buyers) per merchant in any hour; past it they are
    # recorded as "suppressed", not sent. 0 lifts the cap.
    customer_emails_per_hour: int = 500
    processes: int = 1
    threads: int = 4

    @property
    def lease_seconds(self) -> float:
        """How long a claim lasts: longer than any SMTP conversation can take."""
        return self.smtp_timeout * 4 + 30

    @classmethod
    def from_env(cls, environ=None, **overrides) -> "Settings":
        """Settings from ``environ`` (default ``os.environ``) with ``overrides`` applied."""
        return load_settings(cls, environ, **overrides)
