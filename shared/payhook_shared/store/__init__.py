"""The durable record: SQLAlchemy models, engine set-up and migrations."""

from .db import Store, create_engine
from .models import (
    ApiKey, AuditEntry, Base, ConsoleSession, DarajaCredential, Delivery, DeliveryAttempt, Email, Endpoint, Event,
    IntentState, JobState, Merchant, PaymentIntent, QuarantinedCallback, QuarantineState, Replay, SignInLink, Source,
    StatusCheck, StatusCheckState,
)

__all__ = [
    "ApiKey", "AuditEntry", "Base", "ConsoleSession", "DarajaCredential", "Delivery", "DeliveryAttempt", "Email",
    "Endpoint", "Event", "IntentState", "JobState", "Merchant", "PaymentIntent", "QuarantinedCallback",
    "QuarantineState", "Replay", "SignInLink", "Source", "StatusCheck", "StatusCheckState", "Store", "create_engine",
]
