"""webhook-service settings, read once from the environment."""

from __future__ import annotations

import dataclasses

from payhook_shared.config import load_settings


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every setting of the webhook-service; see the README for each variable."""

    database_url: str = "sqlite:///var/payhook.db"
    redis_url: str = "redis://127.0.0.1:6479/0"
    # Base of the callback URLs shown to merchants (what Safaricom will call).
    public_base_url: str = "http://127.0.0.1:8640"
    max_body_bytes: int = 64 * 1024
    db_pool_size: int = 5
    log_format: str = "json"
    log_level: str = "INFO"
    # gunicorn
    bind: str = "127.0.0.1:8640"
    web_workers: int = 2
    web_threads: int = 4
    graceful_timeout: int = 20

    @classmethod
    def from_env(cls, environ=None, **overrides) -> "Settings":
        """Settings from ``environ`` (default ``os.environ``) with ``overrides`` applied."""
        return load_settings(cls, environ, **overrides)
