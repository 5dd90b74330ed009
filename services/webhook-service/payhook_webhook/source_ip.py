"""Who sent a request, and whether that address may post M-Pesa callbacks.

The client is the TCP peer, unless the peer is one of ``TRUSTED_PROXIES``:
then it is the right-most ``X-Forwarded-For`` entry that is not itself a
trusted proxy. Each proxy appends the address it saw, so entries to the right
were written by our own proxies and the left-most ones by whoever connected
first — which anyone can forge. Reading the left-most entry would let any
caller claim to be Safaricom.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
from collections.abc import Iterable, Sequence

from flask import current_app, request

from payhook_shared.errors import ConfigError

from .errors import SourceNotAllowed
from .settings import Settings

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _networks(name: str, entries: Iterable[str]) -> tuple[Network, ...]:
    try:
        return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def parse_address(text: str) -> Address | None:
    """An IP address from a header or peer (``None`` if it is not one); IPv4-mapped IPv6 becomes IPv4."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _within(address: Address, networks: Sequence[Network]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


@dataclasses.dataclass(frozen=True)
class SourcePolicy:
    """The parsed allowlist and trusted proxies of one app."""

    enabled: bool
    allowlist: tuple[Network, ...]
    trusted_proxies: tuple[Network, ...]
    # Documented webhook addresses of the gateways that publish them, by provider.
    gateways: dict[str, tuple[Network, ...]] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> "SourcePolicy":
        """Parse the settings once, at start-up.

        Raises:
          ConfigError: naming the setting with an entry that is no IP address or CIDR.
        """
        return cls(
            enabled=settings.mpesa_ip_allowlist_enabled,
            allowlist=_networks("MPESA_IP_ALLOWLIST", settings.mpesa_ip_allowlist),
            trusted_proxies=_networks("TRUSTED_PROXIES", settings.trusted_proxies),
            gateways={"stripe": _networks("STRIPE_WEBHOOK_IPS", settings.stripe_webhook_ips),
                      "paystack": _networks("PAYSTACK_WEBHOOK_IPS", settings.paystack_webhook_ips)},
        )

    def client_address(self, peer: str | None, forwarded_for: Sequence[str]) -> str:
        """The client's address as text (possibly not an IP, if a header entry was garbage)."""
        peer_text = peer or ""
        peer_address = parse_address(peer_text)
        if peer_address is None or not _within(peer_address, self.trusted_proxies):
            return peer_text
        entries = [e.strip() for header in forwarded_for for e in header.split(",") if e.strip()]
        client = peer_text
        for entry in reversed(entries):
            client = entry
            address = parse_address(entry)
            if address is None or not _within(address, self.trusted_proxies):
                return entry
        return client

    def allows(self, client: str) -> bool:
        """Whether ``client`` is inside the allowlist."""
        address = parse_address(client)
        return address is not None and _within(address, self.allowlist)


def networks_of(entries: Iterable[str]) -> tuple[Network, ...]:
    """Parse a source's own allowlist (validated when it was saved).

    Raises:
      ConfigError: for an entry that is no IP address or CIDR.
    """
    return _networks("allowed_ips", entries)


def enforce_source_allowlist(provider: str, own: Sequence[str] | None) -> None:
    """Refuse a gateway callback from outside the source's allowlist: its own ``allowed_ips``, else the provider's.

    Raises:
      SourceNotAllowed: (403) when the client is outside the list.
    """
    policy: SourcePolicy = current_app.extensions["payhook.source_policy"]
    allowed = networks_of(own) if own else policy.gateways.get(provider, ())
    client = policy.client_address(request.remote_addr, request.headers.getlist("X-Forwarded-For"))
    address = parse_address(client)
    if address is None or not _within(address, allowed):
        client = client[:64]
        log.warning("refused %s callback from %s (peer %s): not in its allowlist", provider, client,
                    request.remote_addr)
        raise SourceNotAllowed(f"source address {client or 'unknown'} is not allowed to post {provider} callbacks")


def enforce_mpesa_allowlist() -> None:
    """``before_request`` hook for the M-Pesa callback routes: refuse sources outside the allowlist.

    Raises:
      SourceNotAllowed: (403) when the allowlist is enabled and the client is not on it.
    """
    policy: SourcePolicy = current_app.extensions["payhook.source_policy"]
    if not policy.enabled:
        return
    client = policy.client_address(request.remote_addr, request.headers.getlist("X-Forwarded-For"))
    if not policy.allows(client):
        client = client[:64]  # a forged header entry can be anything; keep logs and answers short
        log.warning("refused callback from %s (peer %s): not in MPESA_IP_ALLOWLIST", client, request.remote_addr)
        raise SourceNotAllowed(f"source address {client or 'unknown'} is not allowed to post M-Pesa callbacks")
