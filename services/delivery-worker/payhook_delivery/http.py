"""One HTTP attempt: POST with hard timeouts, no redirects, a capped response read.

The endpoint's host is resolved once and checked by the SSRF guard, and the
connection goes to exactly that address (TLS still verifies the certificate
against the URL's host name), so DNS cannot swap the address after the check:
``payhook_shared.pinned_http``, which the webhook-service's C2B forwarding uses too.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable

import urllib3
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError, ReadTimeoutError, SSLError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from payhook_shared import pinned_http
from payhook_shared.errors import UnsafeURL
from payhook_shared.pinned_http import Target, target

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
    return pinned_http.pool(maxsize)


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


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def post(http: urllib3.PoolManager, url: str, body: bytes, headers: dict[str, str], *,
         connect_timeout: float, total_timeout: float, snippet_bytes: int,
         allow: Iterable[str] = ()) -> AttemptResult:
    """POST ``body`` to ``url`` if the SSRF guard lets it; never raises for network trouble, it categorises it.

    A refused URL is a ``BLOCKED`` attempt and nothing is sent; ``allow`` lists
    the CIDRs that may be called although they are not public.
    """
    started = time.monotonic()
    try:
        dest = target(url, allow)
    except UnsafeURL as exc:
        return AttemptResult(category=Category.BLOCKED, duration_ms=_elapsed_ms(started), error=str(exc)[:1000])
    except OSError as exc:  # DNS trouble is transient, like a refused connection
        return AttemptResult(category=Category.NETWORK, duration_ms=_elapsed_ms(started),
                             error=f"cannot resolve: {type(exc).__name__}: {exc}"[:1000])
    return send(http, dest, body, headers, connect_timeout=connect_timeout, total_timeout=total_timeout,
                snippet_bytes=snippet_bytes, started=started)


def send(http: urllib3.PoolManager, dest: Target, body: bytes, headers: dict[str, str], *,
         connect_timeout: float, total_timeout: float, snippet_bytes: int,
         started: float | None = None) -> AttemptResult:
    """POST ``body`` to ``dest.address``, presenting ``dest.host`` in ``Host``, SNI and certificate checks."""
    started = time.monotonic() if started is None else started
    timeout = urllib3.Timeout(connect=connect_timeout, read=total_timeout, total=total_timeout)
    try:
        response = pinned_http.urlopen(
            http, dest, "POST", body,
            {**headers, "content-type": "application/json", "user-agent": "Payhook-Webhooks/0.1"}, timeout,
        )
        try:
            snippet = response.read(snippet_bytes, decode_content=False)
        finally:
            _finish(response)
    except Exception as exc:  # every transport failure is a categorised attempt, not a crash
        return AttemptResult(category=_categorise(exc), duration_ms=_elapsed_ms(started),
                             error=f"{type(exc).__name__}: {exc}"[:1000])
    return AttemptResult(
        category=Category.of_status(response.status),
        duration_ms=_elapsed_ms(started),
        status=response.status,
        snippet=snippet.decode("utf-8", "replace"),
        retry_after=response.headers.get("retry-after"),
    )
