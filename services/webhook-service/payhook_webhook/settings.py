"""webhook-service settings, read once from the environment."""

from __future__ import annotations

import dataclasses

from payhook_shared.config import load_settings

# Safaricom's documented Daraja callback source addresses.
SAFARICOM_CALLBACK_IPS = (
    "196.201.214.200", "196.201.214.206", "196.201.213.114", "196.201.214.207",
    "196.201.214.208", "196.201.213.44", "196.201.212.127", "196.201.212.138",
    "196.201.212.129", "196.201.212.136", "196.201.212.74", "196.201.212.69",
)

# Stripe's documented webhook source addresses (https://stripe.com/files/ips/ips_webhooks.txt).
STRIPE_WEBHOOK_IPS = (
    "3.18.12.63", "3.69.109.8", "3.120.168.93", "3.130.192.231", "13.235.14.237", "13.235.122.149",
    "18.211.135.69", "35.154.171.200", "35.157.207.129", "52.15.183.38", "54.88.130.119", "54.88.130.237",
    "54.187.174.169", "54.187.205.235", "54.187.216.72",
)
# Paystack's documented webhook source addresses.
PAYSTACK_WEBHOOK_IPS = ("52.31.139.75", "52.49.173.169", "52.214.14.220")


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every setting of the webhook-service; see the README for each variable."""

    database_url: str = "sqlite:///var/payhook.db"
    redis_url: str = "redis://127.0.0.1:6479/0"
    # Base of the callback URLs shown to merchants (what Safaricom will call).
    public_base_url: str = "http://127.0.0.1:8640"
    max_body_bytes: int = 64 * 1024
    db_pool_size: int = 5
    # Prepare repeated statements on the server: off by default, so a PgBouncer in transaction mode works.
    db_prepared_statements: bool = False
    log_format: str = "json"
    log_level: str = "INFO"
    # Source-IP allowlist for the M-Pesa callback routes (IPs or CIDRs), off unless enabled.
    mpesa_ip_allowlist_enabled: bool = False
    mpesa_ip_allowlist: tuple[str, ...] = SAFARICOM_CALLBACK_IPS
    # Peers (CIDRs) whose X-Forwarded-For is believed, e.g. the load balancer's subnet.
    trusted_proxies: tuple[str, ...] = ()
    # Non-public CIDRs endpoints may be registered on (e.g. 127.0.0.0/8 in development).
    endpoint_allowlist: tuple[str, ...] = ()
    # Console: signs its session cookies. Empty means a random key per process, which logs everyone
    # out on restart and breaks sessions across gunicorn workers: production must set it.
    console_secret_key: str = ""
    # Console cookies are sent over HTTPS only; `make run` and the tests turn this off for plain HTTP.
    console_cookie_secure: bool = True
    console_session_hours: int = 8
    # Sign-in attempts allowed per client address within the window (seconds), counted in Redis.
    console_login_attempts: int = 10
    console_login_window: int = 300
    # Emailed sign-in links: the console's public address the links point at (empty: PUBLIC_BASE_URL),
    # the operators' addresses (comma-separated) that may ask for an operator link, minutes a link
    # works, and links one address may be sent per CONSOLE_LOGIN_WINDOW.
    console_public_url: str = ""
    console_operator_emails: tuple[str, ...] = ()
    console_link_minutes: int = 15
    console_link_emails_per_window: int = 3
    # Seconds the queue and store figures (/metrics gauges, /health/queue) are reused before recomputing.
    queue_stats_ttl: float = 5.0
    # Provider webhook addresses, used by sources whose IP allowlist is on.
    stripe_webhook_ips: tuple[str, ...] = STRIPE_WEBHOOK_IPS
    paystack_webhook_ips: tuple[str, ...] = PAYSTACK_WEBHOOK_IPS
    # gunicorn
    bind: str = "127.0.0.1:8640"
    web_workers: int = 2
    # Requests (gevent greenlets) a worker serves at once; those waiting on a shared write cost no thread.
    # As many as MAX_BATCH, so one write can take every callback a worker holds.
    web_connections: int = 100
    graceful_timeout: int = 20

    @classmethod
    def from_env(cls, environ=None, **overrides) -> "Settings":
        """Settings from ``environ`` (default ``os.environ``) with ``overrides`` applied."""
        return load_settings(cls, environ, **overrides)
