"""SSRF guard: webhooks go only to public addresses, unless an allowlist names the address.

A merchant chooses its endpoint URLs, so without this guard anyone who can
register an endpoint could make Payhook POST into its own network: cloud
metadata services, admin ports on loopback, private subnets. The
webhook-service checks a URL when it is registered (``check_url``); the
delivery-worker checks again at every attempt (``resolve_safe``) because DNS
can change in between, and then connects to exactly the address it checked, so
a DNS answer that changes between check and connect (rebinding) gains nothing.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from .errors import ConfigError, UnsafeURL

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Metadata services hand out cloud credentials; some sit on addresses that look public.
METADATA = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254",  # AWS, GCP, Azure, DigitalOcean, OpenStack
    "169.254.170.2",    # AWS ECS task metadata
    "fd00:ec2::254",    # AWS IPv6
    "100.100.100.200",  # Alibaba Cloud
    "168.63.129.16",    # Azure WireServer
    "192.0.0.192",      # Oracle Cloud
))

# IANA's special-purpose registries (IPv4 and IPv6, as of 2025) plus multicast and deprecated site-local:
# every range not globally reachable. Listed here rather than left to ``ipaddress``, whose lists differ
# between Python releases. The few globally reachable anycast addresses inside 192.0.0.0/24 and
# 2001::/23 are refused with their blocks: no webhook endpoint lives there.
SPECIAL = tuple((ipaddress.ip_network(n), reason) for n, reason in (
    ("0.0.0.0/8", "'this network' (unspecified)"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "carrier-grade NAT (shared address space)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "an IETF protocol assignment"),
    ("192.0.2.0/24", "documentation (TEST-NET-1)"),
    ("192.88.99.0/24", "the deprecated 6to4 relay anycast"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation (TEST-NET-2)"),
    ("203.0.113.0/24", "documentation (TEST-NET-3)"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
    ("255.255.255.255/32", "limited broadcast"),
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("64:ff9b:1::/48", "local-use NAT64"),
    ("100::/64", "discard-only"),
    ("100:0:0:1::/64", "the dummy IPv6 prefix"),
    ("2001::/23", "an IETF protocol assignment (Teredo, benchmarking, ORCHID)"),
    ("2001:db8::/32", "documentation"),
    ("3fff::/20", "documentation"),
    ("5f00::/16", "segment routing (SRv6 SIDs)"),
    ("fc00::/7", "unique-local (private)"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local (deprecated)"),
    ("ff00::/8", "multicast"),
))

# Outside it IPv6 is unassigned or special (the mapped, NAT64 and ULA forms are judged before this).
GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")
NAT64 = ipaddress.ip_network("64:ff9b::/96")


def networks(cidrs: Iterable[str | Network]) -> tuple[Network, ...]:
    """Parse an allowlist of CIDRs (``"127.0.0.0/8"``, ``"10.1.2.3"``).

    Raises:
      ConfigError: when an entry is not an IP network.
    """
    parsed = []
    for cidr in cidrs:
        if isinstance(cidr, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
            parsed.append(cidr)
            continue
        try:
            parsed.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError:
            raise ConfigError(f"not an IP network in the endpoint allowlist: {cidr!r}") from None
    return tuple(parsed)


def _embedded_ipv4(addr: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a 6to4 or NAT64 address leads to through its relay or translator."""
    if isinstance(addr, ipaddress.IPv4Address):
        return None
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr in NAT64:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return None


def connected(addr: Address) -> Address:
    """The address a socket really talks to: an IPv4-mapped IPv6 address is its IPv4 address."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _allowed(addr: Address, allow: tuple[Network, ...]) -> bool:
    # Only the address connected to counts: the IPv4 inside a 6to4 or NAT64 address is not where the
    # socket goes, so allowing 127.0.0.0/8 must not let [64:ff9b::7f00:1] through.
    return any(addr in net for net in allow)


def why_unsafe(addr: Address) -> str | None:
    """Why ``addr`` must not be called, or ``None`` when it is a public address."""
    addr = connected(addr)
    if addr in METADATA:
        return "a cloud metadata address"
    embedded = _embedded_ipv4(addr)
    if embedded is not None:
        reason = why_unsafe(embedded)
        return f"an IPv6 form of {embedded}, {reason}" if reason else None
    for net, reason in SPECIAL:
        if addr in net:
            return reason
    if isinstance(addr, ipaddress.IPv6Address) and addr not in GLOBAL_UNICAST:
        return "outside IPv6 global unicast (2000::/3)"
    if not addr.is_global:
        return "not publicly routable"
    return None


def split_url(url: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of an endpoint URL, with the scheme's default port filled in.

    Raises:
      UnsafeURL: when ``url`` is not an absolute http(s) URL.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeURL(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeURL("endpoint URL must be an absolute http:// or https:// URL")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def _resolve(host: str, port: int) -> list[Address]:
    """Every address ``host`` resolves to, as connected to (an IP literal resolves to itself, without DNS)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    # getaddrinfo may append a "%scope" to link-local IPv6 answers.
    return list(dict.fromkeys(connected(ipaddress.ip_address(info[4][0].split("%", 1)[0])) for info in infos))


def _check(host: str, addresses: list[Address], allow: tuple[Network, ...]) -> None:
    for addr in addresses:
        if _allowed(addr, allow):
            continue
        reason = why_unsafe(addr)
        if reason:
            shown = host if host == str(addr) else f"{host} ({addr})"
            raise UnsafeURL(f"endpoint host {shown} is {reason}; refused (see ENDPOINT_ALLOWLIST)")


def resolve_safe(host: str, port: int, allow: Iterable[str | Network] = ()) -> str:
    """Resolve ``host`` once and return the address to connect to, if every address it has is safe.

    Connect to the returned address and nothing else: resolving again could
    give another answer.

    Raises:
      UnsafeURL: when any address of ``host`` is non-public and not allowlisted.
      OSError: when ``host`` does not resolve (a transient failure at delivery).
    """
    addresses = _resolve(host, port)
    _check(host, addresses, networks(allow))
    return str(addresses[0])


def check_url(url: str, allow: Iterable[str | Network] = (), *, unresolvable_ok: bool = False) -> None:
    """Refuse ``url`` unless it is absolute http(s) and its host resolves only to allowed addresses.

    ``unresolvable_ok`` lets a host that does not resolve (yet) pass, as at
    registration, where a merchant may add an endpoint before its DNS exists;
    delivery checks again after resolving, so nothing unsafe is ever called.

    Raises:
      UnsafeURL: naming what is wrong; a host that does not resolve is refused
        unless ``unresolvable_ok``, since nothing can be said about where it leads.
    """
    _, host, port = split_url(url)
    try:
        resolve_safe(host, port, allow)
    except OSError as exc:
        if not unresolvable_ok:
            raise UnsafeURL(f"endpoint host {host} does not resolve: {exc}") from None

