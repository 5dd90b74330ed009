"""The four priority levels and the queue each one travels on.

This module is the one source of truth for queue names: services and deploy
files derive every queue from ``Priority`` and a family name here.
"""

import enum


class Priority(enum.IntEnum):
    """Delivery priority; a lower value is served first."""

    URGENT = 0
    HIGH = 1
    NORMAL = 2
    LOW = 3

    @property
    def label(self) -> str:
        """Lower-case name used in queue names, metrics and JSON."""
        return self.name.lower()

    @classmethod
    def parse(cls, value: "str | int | Priority") -> "Priority":
        """Accept ``"urgent"``, ``"URGENT"``, ``0`` or a member."""
        if isinstance(value, Priority):
            return value
        if isinstance(value, str):
            try:
                return cls[value.strip().upper()]
            except KeyError:
                raise ValueError(f"unknown priority {value!r}") from None
        return cls(value)


#: Queue families: one Redis queue per family and priority level.
DELIVERY = "delivery"
MAIL = "mail"


def queue_name(family: str, priority: Priority) -> str:
    """Name of the queue carrying ``family`` messages at ``priority``."""
    return f"{family}.{priority.label}"


def actor_name(family: str, priority: Priority) -> str:
    """Name of the actor consuming ``queue_name(family, priority)``."""
    return f"{family}_{priority.label}"


def queue_names(family: str) -> list[str]:
    """Every queue of a family, most urgent first."""
    return [queue_name(family, p) for p in Priority]


#: Worker pools. Each pool runs as its own processes with its own threads, so
#: work of one pool can never occupy threads reserved for another: LOW work
#: cannot fill the threads URGENT needs, and LOW keeps a guaranteed share of
#: its own. Within a pool, more urgent messages are taken first.
POOLS: dict[str, tuple[Priority, ...]] = {
    "urgent": (Priority.URGENT, Priority.HIGH),
    "standard": (Priority.NORMAL, Priority.LOW),
    "low": (Priority.LOW,),
    "all": tuple(Priority),
}


#: How much nicer than the web each pool's processes run on a shared host, so under CPU pressure the
#: kernel gives URGENT work its share before LOW work (on Kubernetes each pool's CPU request does this).
POOL_NICENESS: dict[str, int] = {"urgent": 0, "standard": 5, "low": 10, "all": 0}


def pool_queues(family: str, pool: str) -> list[str]:
    """The queues a worker of ``pool`` consumes, most urgent first.

    Raises:
      KeyError: for an unknown pool name.
    """
    return [queue_name(family, p) for p in POOLS[pool]]
