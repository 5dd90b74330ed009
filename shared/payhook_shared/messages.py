"""Every message the services exchange, defined once.

A message carries ids and a little context for logs, never whole objects: the
store is the record, and a worker reads what it needs from there. Each message
knows its queue and actor, so a sender never builds a message dict by hand::

    broker.enqueue(DeliverWebhook(delivery_ids=(...,), priority=...).to_dramatiq())

and an actor turns its keyword arguments back with ``DeliverWebhook.decode``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import dramatiq
from marshmallow import Schema, ValidationError, fields, pre_load, validate

from .errors import DecodeError
from .priority import DELIVERY, MAIL, Priority, actor_name, queue_name

_PRIORITY_LABELS = [p.label for p in Priority]


#: The most deliveries one ``DeliverWebhook`` names. Claiming and recording a batch costs the database
#: about what one delivery does (docs/performance.md); a batch's POSTs run concurrently.
MAX_DELIVERIES = 16


class _PrioritySchema(Schema):
    priority = fields.String(required=True, validate=validate.OneOf(_PRIORITY_LABELS))


class _MessageSchema(_PrioritySchema):
    merchant_id = fields.String(required=True, validate=validate.Length(1, 64))


class DeliverWebhookSchema(_PrioritySchema):
    delivery_ids = fields.List(fields.String(validate=validate.Length(1, 64)), required=True,
                               validate=validate.Length(1, MAX_DELIVERIES))

    @pre_load
    def _one_delivery(self, data: Any, **_: Any) -> Any:
        # A message sent before batches named one delivery (``delivery_id``, ``event_id``, ``merchant_id``):
        # still accepted, so a rolling upgrade loses none in flight.
        if isinstance(data, dict) and "delivery_ids" not in data and "delivery_id" in data:
            return {"delivery_ids": [data["delivery_id"]], "priority": data.get("priority")}
        return data


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
    def _loaded(cls, loaded: dict[str, Any]) -> dict[str, Any]:
        return loaded

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
        return cls(**cls._loaded(loaded))

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
    """Deliver these deliveries (each an event to one endpoint) now: one to ``MAX_DELIVERIES`` of one priority."""

    family: ClassVar[str] = DELIVERY
    schema: ClassVar[Schema] = DeliverWebhookSchema()

    delivery_ids: tuple[str, ...]
    priority: Priority

    def encode(self) -> dict[str, Any]:
        """The message as its actor's JSON-ready keyword arguments."""
        return {"delivery_ids": list(self.delivery_ids), "priority": Priority.parse(self.priority).label}

    @classmethod
    def _loaded(cls, loaded: dict[str, Any]) -> dict[str, Any]:
        return {**loaded, "delivery_ids": tuple(loaded["delivery_ids"])}


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
