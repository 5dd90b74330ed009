"""The broker the webhook-service enqueues on; it runs no actors."""

from payhook_shared.broker import RedisBroker, create_broker

from .settings import Settings


def broker_for(settings: Settings) -> RedisBroker:
    """A Redis broker for enqueueing only (no worker middleware)."""
    return create_broker(settings.redis_url, middleware=[])
