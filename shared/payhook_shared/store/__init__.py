"""The durable record: SQLAlchemy models, engine set-up and migrations."""

from .db import Store, create_engine
from .models import (
    ApiKey, AuditEntry, Base, Delivery, DeliveryAttempt, Email, Endpoint, Event, JobState, Merchant,
    QuarantinedCallback, QuarantineState, SignInLink, Source,
)

__all__ = [
    "ApiKey", "AuditEntry", "Base", "Delivery", "DeliveryAttempt", "Email", "Endpoint", "Event", "JobState",
    "Merchant", "QuarantinedCallback", "QuarantineState", "SignInLink", "Source", "Store", "create_engine",
]
