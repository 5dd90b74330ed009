"""One HTTP attempt: POST with hard timeouts, no redirects, a capped response read."""

from __future__ import annotations

import dataclasses
import time

import urllib3
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError, ReadTimeoutError, SSLError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from .errors import Category


@dataclasses.dataclass
class AttemptResult:
    """What one POST to an endpoint came to."""

    category: Category
    duration_ms: int
    status: int | None = None
    snippet: str | None = None
    error: str | None = None
    retry_after: str | None = None


def pool(maxsize: int) -> urllib3.PoolManager:
    """A connection pool shared by a process's worker threads."""
    return urllib3.PoolManager(num_pools=256, maxsize=maxsize, retries=False, block=False)


def _categorise(exc: Exception) -> Category:
    if isinstance(exc, MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    # NewConnectionError (refused, DNS) subclasses ConnectTimeoutError in urllib3, so it goes first.
    if isinstance(exc, NewConnectionError):
        return Category.NETWORK
    if isinstance(exc, (ConnectTimeoutError, ReadTimeoutError, Urllib3Timeout)):
        return Category.TIMEOUT
    if isinstance(exc, SSLError):
        return Category.TLS
    return Category.NETWORK


def _finish(response: urllib3.BaseHTTPResponse) -> None:
    # Keep the connection only if the body is fully read; never read past the cap to drain it.
    if response.read(1, decode_content=False):
        response.close()
    response.release_conn()


def post(http: urllib3.PoolManager, url: str, body: bytes, headers: dict[str, str], *,
         connect_timeout: float, total_timeout: float, snippet_bytes: int) -> AttemptResult:
    """POST ``body`` to ``url``; never raises for network trouble, it categorises it."""
    started = time.monotonic()
    timeout = urllib3.Timeout(connect=connect_timeout, read=total_timeout, total=total_timeout)
    try:
        response = http.request(
            "POST", url, body=body, headers={**headers, "content-type": "application/json",
                                             "user-agent": "Payhook-Webhooks/0.1"},
            timeout=timeout, redirect=False, retries=False, preload_content=False,
        )
        try:
            snippet = response.read(snippet_bytes, decode_content=False)
        finally:
            _finish(response)
    except Exception as exc:  # every transport failure is a categorised attempt, not a crash
        return AttemptResult(
            category=_categorise(exc), duration_ms=int((time.monotonic() - started) * 1000),
            error=f"{type(exc).__name__}: {exc}"[:1000],
        )
    return AttemptResult(
        category=Category.of_status(response.status),
        duration_ms=int((time.monotonic() - started) * 1000),
        status=response.status,
        snippet=snippet.decode("utf-8", "replace"),
        retry_after=response.headers.get("retry-after"),
    )
