"""HTTP to a URL a merchant chose: resolved once, checked by the SSRF guard, connected to that address.

Both services call merchant URLs: the delivery-worker its webhook endpoints,
the webhook-service a C2B validation ``forward_url``. Each request resolves
the host once (``target``), refuses it unless every address is public or
allowlisted, and connects to exactly the checked address (``urlopen``), while
the ``Host`` header, SNI and certificate check still use the URL's host name.
A DNS answer that changes between check and connect (rebinding) gains nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from urllib.parse import urlsplit

import urllib3

from . import ssrf


@dataclasses.dataclass(frozen=True)
class Target:
    """Where one request goes: the URL's parts, and the one checked address to connect to."""

    scheme: str
    host: str
    port: int
    address: str
    path: str

    @property
    def host_header(self) -> str:
        """The ``Host`` header the URL implies (the connection itself goes to ``address``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def target(url: str, allow: Iterable[str | ssrf.Network] = ()) -> Target:
    """Resolve and check ``url``'s host once.

    Raises:
      UnsafeURL: when the URL is not http(s) or leads to a non-public, non-allowlisted address.
      OSError: when the host does not resolve.
    """
    scheme, host, port = ssrf.split_url(url)
    address = ssrf.resolve_safe(host, port, allow)
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(scheme, host, port, address, path)


def pool(maxsize: int, num_pools: int = 256) -> urllib3.PoolManager:
    """A connection pool for pinned requests, shared by a process's threads: no retries, no redirects."""
    return urllib3.PoolManager(num_pools=num_pools, maxsize=maxsize, retries=False, block=False)


def urlopen(http: urllib3.PoolManager, dest: Target, method: str, body: bytes, headers: dict[str, str],
            timeout: urllib3.Timeout) -> urllib3.BaseHTTPResponse:
    """Send one request to ``dest.address``, presenting ``dest.host`` in ``Host``, SNI and certificate checks.

    Redirects are never followed and nothing is retried; the body is left unread
    (``preload_content=False``) for the caller to read as much of it as it wants.

    Raises:
      urllib3.exceptions.HTTPError: for every transport failure.
    """
    tls = {"server_hostname": dest.host, "assert_hostname": dest.host} if dest.scheme == "https" else None
    conn = http.connection_from_host(dest.address, dest.port, dest.scheme, pool_kwargs=tls)
    return conn.urlopen(method, dest.path, body=body, headers={**headers, "host": dest.host_header},
                        timeout=timeout, redirect=False, retries=False, preload_content=False)
