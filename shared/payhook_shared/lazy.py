"""One object per process, built on first use."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerProcess(Generic[T]):
    """Holds an object built on first ``get()``, so it is made after any fork and never shared across one.

    Tests ``install`` their own instead.
    """

    def __init__(self, build: Callable[[], T]):
        self._build = build
        self._lock = threading.Lock()
        self._value: T | None = None

    def get(self) -> T:
        """The object, built now if this process has none yet."""
        with self._lock:
            if self._value is None:
                self._value = self._build()
            return self._value

    def install(self, value: T | None) -> None:
        """Replace the object; ``None`` forgets it, so the next ``get()`` builds anew."""
        with self._lock:
            self._value = value
