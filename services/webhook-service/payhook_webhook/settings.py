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
    """Every setting of the webhook-service; docs/configuration.md lists them (``make docs``).

    Each field's docstring is its one line in that page: keep it to one sentence of meaning.
    """

    database_url: str = "sqlite:///var/payhook.db"
    """The store: ``sqlite:///path`` or ``postgresql://user:pass@host/db``."""
    redis_url: str = "redis://127.0.0.1:6479/0"
    """The Redis that carries the work messages (Dramatiq) and the shared counters."""
    public_base_url: str = "http://127.0.0.1:8640"
    """Base of the callback URLs shown to merchants (what Safaricom and the gateways will call)."""
    max_body_bytes: int = 64 * 1024
    """Largest request body accepted; a larger callback is answered ``413``."""
    db_pool_size: int = 5
    """Database connections each web process keeps (as many again may open under a burst)."""
    db_prepared_statements: bool = False
    """PostgreSQL: prepare repeated statements on the server; off so a PgBouncer in transaction mode works."""
    log_format: str = "json"
    """``json`` (one object per line) or ``text``."""
    log_level: str = "INFO"
    """Lowest level logged (``DEBUG``, ``INFO``, ``WARNING``, …)."""
    mpesa_ip_allowlist_enabled: bool = False
    """Refuse (``403``) M-Pesa callbacks from clients outside ``MPESA_IP_ALLOWLIST``."""
    mpesa_ip_allowlist: tuple[str, ...] = SAFARICOM_CALLBACK_IPS
    """IPs or CIDRs (comma-separated) allowed to call the ``/cb/…`` routes when the allowlist is on."""
    trusted_proxies: tuple[str, ...] = ()
    """Peers (CIDRs) whose ``X-Forwarded-For`` is believed, e.g. the load balancer's subnet."""
    endpoint_allowlist: tuple[str, ...] = ()
    """Non-public CIDRs that endpoints and a C2B ``forward_url`` may lead to (registration and each forward), matched against the address connected to (e.g. ``127.0.0.0/8`` in development)."""
    console_secret_key: str = ""
    """Signs the console's session cookies; empty means a random key per process, so production must set it."""
    console_cookie_secure: bool = True
    """Send the console's cookie over HTTPS only; ``make run`` and the tests turn it off for plain HTTP."""
    console_session_hours: int = 8
    """How long a console session lasts from sign-in, in hours (kept in ``console_sessions``; sign-out or revoking its key ends it sooner)."""
    console_login_attempts: int = 10
    """Console sign-in attempts allowed per client address within ``CONSOLE_LOGIN_WINDOW`` (counted in Redis)."""
    console_login_window: int = 300
    """Seconds over which console sign-in attempts and sign-in emails are counted."""
    console_public_url: str = ""
    """The console's public address, which emailed sign-in links point at (empty: ``PUBLIC_BASE_URL``)."""
    console_operator_emails: tuple[str, ...] = ()
    """Addresses (comma-separated) that may ask for an operator sign-in link."""
    console_link_minutes: int = 15
    """Minutes an emailed sign-in link works."""
    console_link_emails_per_window: int = 3
    """Sign-in emails one address may be sent per ``CONSOLE_LOGIN_WINDOW``."""
    queue_stats_ttl: float = 5.0
    """Seconds the queue and store figures (``/metrics`` gauges, ``/health/queue``) are reused before recomputing."""
    endpoint_test_wait: float = 20.0
    """Seconds ``POST /v1/endpoints/<id>/test`` waits for the delivery-worker's attempt before answering ``202``."""
    stripe_webhook_ips: tuple[str, ...] = STRIPE_WEBHOOK_IPS
    """Stripe's webhook addresses, for sources whose IP allowlist is on."""
    paystack_webhook_ips: tuple[str, ...] = PAYSTACK_WEBHOOK_IPS
    """Paystack's webhook addresses, for sources whose IP allowlist is on."""
    stream_max_per_key: int = 5
    """Live streams (``GET /v1/stream``) one API key may hold open at once, across every web process."""
    stream_heartbeat_seconds: float = 15.0
    """Seconds between a live stream's heartbeats (an SSE comment), which keep proxies from closing an idle stream."""
    stream_buffer: int = 1000
    """Events buffered for one live stream whose reader is behind; past it the stream is closed (the client resumes)."""
    stream_resume_window: float = 30.0
    """Seconds before the ``Last-Event-ID`` event a resumed stream sends again, for events stamped earlier that committed later."""
    spool_require_aof: bool = True
    """Spool M-Pesa callbacks the store cannot record only into a Redis with ``appendonly yes``; otherwise answer ``503``."""
    spool_drain_interval: float = 1.0
    """Seconds between the spool drainer's looks for spooled callbacks to move into the store."""
    credentials_keys: tuple[str, ...] = ()
    """Fernet keys (comma-separated) that encrypt merchants' Daraja credentials: the first encrypts, every one decrypts (rotation: ``flask credentials rotate``)."""
    credentials_key_file: str = "var/credentials.key"
    """Development only: with no ``CREDENTIALS_KEYS``, the key is kept in this file (made owner-only on first use); empty refuses to store credentials without keys."""
    daraja_sandbox_url: str = "https://sandbox.safaricom.co.ke"
    """Base URL of Daraja's sandbox, called for credentials whose environment is ``sandbox``."""
    daraja_production_url: str = "https://api.safaricom.co.ke"
    """Base URL of Daraja's production API, called for credentials whose environment is ``production``."""
    daraja_connect_timeout: float = 5.0
    """Seconds to connect to Daraja before a call fails as unavailable."""
    daraja_read_timeout: float = 30.0
    """Seconds to wait for Daraja's answer once connected before a call fails as unavailable."""
    daraja_rate_limit: int = 10
    """Daraja calls one merchant's credentials may make per second, across every process (more are refused ``429``)."""
    reconcile_after: float = 120.0
    """Seconds after an STK Push (or its registration) before a payment intent with no callback is queried with STK Push Query; likewise after a B2C, B2B or reversal QueueTimeOut before its Transaction Status query."""
    reconcile_interval: float = 5.0
    """Seconds between each web process's looks for payment intents and QueueTimeOut status checks due a query."""
    reconcile_max_checks: int = 6
    """Queries answered "still being processed" after which a payment intent ends ``unknown`` (``payhook.payment.unresolved``); Transaction Status queries without a final answer after which a QueueTimeOut stays ``unknown`` (``payhook.transaction.unresolved``)."""
    reconcile_max_age: float = 86400.0
    """Seconds after its push when a payment intent Daraja never settled (unreachable, 5xx, 429) ends ``unknown``; likewise after a QueueTimeOut for its status check."""
    reconcile_backoff: float = 15.0
    """Seconds before querying an intent again after its first answer that was not final (or looking for a Transaction Status query's answer, then asking again); doubled after each."""
    reconcile_backoff_max: float = 600.0
    """Longest wait, in seconds, between two queries of one payment intent or one QueueTimeOut."""
    bind: str = "127.0.0.1:8640"
    """gunicorn: the address the web server listens on."""
    web_workers: int = 2
    """gunicorn: web processes (gevent workers)."""
    web_connections: int = 100
    """gunicorn: requests (greenlets) one web process serves at once; as many as ``ingest.MAX_BATCH``, so one write can take them all."""
    graceful_timeout: int = 20
    """gunicorn: seconds a stopping web process lets requests in flight finish."""

    @classmethod
    def from_env(cls, environ=None, **overrides) -> "Settings":
        """Settings from ``environ`` (default ``os.environ``) with ``overrides`` applied."""
        return load_settings(cls, environ, **overrides)
