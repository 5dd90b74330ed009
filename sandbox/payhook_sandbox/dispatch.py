"""Work due later (callbacks after a delay) run by a few threads, never on a request's thread."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor


class Dispatcher:
    """Runs each scheduled task once its time has come, on a small pool of threads.

    One timer thread waits for the earliest task; the pool sends, so a slow callback receiver delays
    no other callback.
    """

    def __init__(self, threads: int = 8):
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._stopped = False
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="sandbox-callback")
        self._thread = threading.Thread(target=self._run, name="sandbox-timer", daemon=True)
        self._thread.start()

    def schedule(self, delay: float, task: Callable[[], None]) -> None:
        """Run ``task`` in ``delay`` seconds."""
        with self._wake:
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._order), task))
            self._wake.notify()

    def pending(self) -> int:
        """Tasks not yet due."""
        with self._wake:
            return len(self._heap)

    def clear(self) -> None:
        """Forget every task not yet due."""
        with self._wake:
            self._heap.clear()

    def stop(self) -> None:
        """Stop the timer; tasks already running finish."""
        with self._wake:
            self._stopped = True
            self._wake.notify()
        self._thread.join(5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._stopped and (not self._heap or self._heap[0][0] > time.monotonic()):
                    self._wake.wait(self._heap[0][0] - time.monotonic() if self._heap else None)
                if self._stopped:
                    return
                _, _, task = heapq.heappop(self._heap)
            self._pool.submit(task)
