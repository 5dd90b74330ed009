"""Every message the services exchange, defined once.

A message carries ids and a little context for logs, never whole objects: the
store is the record, and a worker reads what it needs from there. Each message
knows its queue and actor, so a sender never builds a message dict by hand::

    broker.enqueue(DeliverWebhook(delivery_id=..., ...).to_dramatiq())

and an actor turns its keyword arguments back with ``DeliverWebhook.decode``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import dramatiq
from marshmallow import Schema, ValidationError, fields, validate

from .errors import DecodeError
from .priority import DELIVERY, MAIL, Priority, actor_name, queue_name

_PRIORITY_LABELS = [p.label for p in Priority]


class _MessageSchema(Schema):
    priority = fields.String(required=True, validate=validate.OneOf(_PRIORITY_LABELS))
    merchant_id = fields.String(required=True, validate=validate.Length(1, 64))


class DeliverWebhookSchema(_MessageSchema):
    delivery_id = fields.String(required=True, validate=validate.Length(1, 64))
    event_id = fields.String(required=True, validate=validate.Length(1, 64))


class SendEmailSchema(_MessageSchema):
    email_id = fields.String(required=True, validate=validate.Length(1, 64))
    event_id = fields.String(load_default=None, allow_none=True, validate=validate.Length(1, 64))


class RunReplaySchema(_MessageSchema):
    replay_id = fields.String(required=True, validate=validate.Length(1, 64))


@dataclasses.dataclass(frozen=True)
class _Message:
    family: ClassVar[str]
    schema: ClassVar[Schema]

    def encode(self) -> dict[str, Any]:
        """The message as the JSON-ready keyword arguments of its actor."""
        # Shallow: every field is a plain value (``asdict`` deep-copies, at twice the cost of the dump).
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["priority"] = Priority.parse(data["priority"]).label
        return self.schema.dump(data)

    @classmethod
    def decode(cls, data: Any) -> "_Message":
        """Validate keyword arguments received by an actor.

        Raises:
          DecodeError: naming each field that is missing or malformed.
        """
        if not isinstance(data, dict):
            raise DecodeError(f"{cls.__name__} must be an object, got {type(data).__name__}")
        try:
            loaded = cls.schema.load(data)
        except ValidationError as exc:
            raise DecodeError(f"invalid {cls.__name__}: {exc.messages}", exc.messages) from exc
        loaded["priority"] = Priority.parse(loaded["priority"])
        return cls(**loaded)

    @property
    def queue_name(self) -> str:
        """The queue this message travels on, chosen by its priority."""
        return queue_name(self.family, Priority.parse(self.priority))

    @property
    def actor_name(self) -> str:
        """The actor that consumes this message's queue."""
        return actor_name(self.family, Priority.parse(self.priority))

    def to_dramatiq(self, **options: Any) -> dramatiq.Message:
        """A Dramatiq message ready for ``broker.enqueue``, with Dramatiq ``options`` if given."""
        return dramatiq.Message(
            queue_name=self.queue_name,
            actor_name=self.actor_name,
            args=(),
            kwargs=self.encode(),
            options=options,
        )


@dataclasses.dataclass(frozen=True)
class DeliverWebhook(_Message):
    """Deliver one delivery (an event to one endpoint) now."""

    family: ClassVar[str] = DELIVERY
    schema: ClassVar[Schema] = DeliverWebhookSchema()

    delivery_id: str
    event_id: str
    merchant_id: str
    priority: Priority


@dataclasses.dataclass(frozen=True)
class SendEmail(_Message):
    """Send one outbound email recorded in the store."""

    family: ClassVar[str] = MAIL
    schema: ClassVar[Schema] = SendEmailSchema()

    email_id: str
    merchant_id: str
    priority: Priority
    event_id: str | None = None


#: The delivery-worker's replay actor. It shares the delivery queues (a worker of any pool consuming the
#: queue runs it), so no deployment needs a queue of its own.
REPLAY_ACTOR = "replay"


@dataclasses.dataclass(frozen=True)
class RunReplay(_Message):
    """Work through the next batch of one replay job recorded in the store."""

    family: ClassVar[str] = DELIVERY
    schema: ClassVar[Schema] = RunReplaySchema()

    replay_id: str
    merchant_id: str
    priority: Priority

    @property
    def actor_name(self) -> str:
        """One actor, whatever the queue: the replay's priority only chooses which delivery queue carries it."""
        return f"{REPLAY_ACTOR}_{Priority.parse(self.priority).label}"
