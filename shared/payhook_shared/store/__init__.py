"""The durable record: SQLAlchemy models, engine set-up and migrations."""

from .db import Store, create_engine
from .models import (
    ApiKey, AuditEntry, Base, ConsoleSession, Delivery, DeliveryAttempt, Email, Endpoint, Event, JobState, Merchant,
    QuarantinedCallback, QuarantineState, Replay, SignInLink, Source,
)

__all__ = [
    "ApiKey", "AuditEntry", "Base", "ConsoleSession", "Delivery", "DeliveryAttempt", "Email", "Endpoint", "Event",
    "JobState", "Merchant", "QuarantinedCallback", "QuarantineState", "Replay", "SignInLink", "Source", "Store",
    "create_engine",
]
