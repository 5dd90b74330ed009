"""The SSRF guard: which endpoint URLs Payhook refuses to call, and the allowlist that overrides it."""

from __future__ import annotations

import ipaddress

import pytest

from payhook_shared.errors import ConfigError, PayhookError, UnsafeURL
from payhook_shared.ssrf import check_url, networks, resolve_safe

REFUSED = [
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata
    "http://10.0.0.1/",
    "http://172.16.5.4/",
    "http://192.168.1.1:8080/hook",
    "http://127.0.0.1/",
    "http://localhost:8000/",                    # a name that resolves to loopback
    "http://0.0.0.0/",
    "http://[::1]/",
    "http://[::]/",
    "http://[fe80::1]/",
    "http://[fd00:ec2::254]/",                   # AWS metadata over IPv6
    "http://[::ffff:10.0.0.1]/",                 # IPv4-mapped private
    "http://[::ffff:169.254.169.254]/",
    "http://[64:ff9b::a9fe:a9fe]/",              # NAT64 form of 169.254.169.254
    "http://[2002:a00:1::]/",                    # 6to4 form of 10.0.0.1
    "http://100.100.100.200/",                   # Alibaba metadata
    "http://168.63.129.16/",                     # Azure WireServer, a public-looking address
    "http://100.64.1.1/",                        # carrier-grade NAT
    "http://224.0.0.1/",
    "http://[ff02::1]/",
    "http://240.0.0.1/",
    "https://255.255.255.255/",
]


@pytest.mark.parametrize("url", REFUSED)
def test_non_public_addresses_are_refused(url):
    with pytest.raises(UnsafeURL, match="refused"):
        check_url(url)


@pytest.mark.parametrize("url", ["ftp://example.com/", "file:///etc/passwd", "/relative/path", "http:///nohost",
                                 "gopher://8.8.8.8/", "http://8.8.8.8:notaport/"])
def test_only_absolute_http_urls_are_accepted(url):
    with pytest.raises(UnsafeURL):
        check_url(url)


@pytest.mark.parametrize("url", ["http://8.8.8.8/hook", "https://1.1.1.1:8443/x?y=1", "https://[2606:4700::1111]/"])
def test_public_addresses_pass(url):
    check_url(url)


def test_unsafe_url_is_a_payhook_error():
    assert issubclass(UnsafeURL, PayhookError)


def test_the_allowlist_lets_named_networks_through():
    check_url("http://127.0.0.1:8641/webhooks", allow=("127.0.0.0/8",))
    check_url("http://[::ffff:127.0.0.1]/", allow=("127.0.0.0/8",))
    check_url("http://10.1.2.3/", allow=("10.1.2.3",))
    with pytest.raises(UnsafeURL):
        check_url("http://10.1.2.4/", allow=("10.1.2.3",))
    with pytest.raises(UnsafeURL, match="metadata"):
        check_url("http://169.254.169.254/", allow=("127.0.0.0/8",))


def test_a_host_that_does_not_resolve_is_refused_at_registration():
    with pytest.raises(UnsafeURL, match="does not resolve"):
        check_url("http://nothing-here.invalid/")


def test_resolve_safe_returns_the_checked_address():
    assert resolve_safe("127.0.0.1", 80, ("127.0.0.0/8",)) == "127.0.0.1"
    assert resolve_safe("8.8.4.4", 443) == "8.8.4.4"
    with pytest.raises(UnsafeURL):
        resolve_safe("localhost", 80)
    with pytest.raises(OSError):  # DNS failure is not a verdict on safety: the caller retries it
        resolve_safe("nothing-here.invalid", 80)


def test_a_bad_allowlist_entry_is_a_config_error():
    assert [str(n) for n in networks([" 10.0.0.0/8", "::1"])] == ["10.0.0.0/8", "::1/128"]
    with pytest.raises(ConfigError, match="not-a-cidr"):
        networks(["not-a-cidr"])


# IANA IPv4 and IPv6 special-purpose registries (plus multicast and site-local), one address at each end
# of every range, so a range missing from the guard, or narrowed, fails here.
SPECIAL_RANGES = [
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.0.0/29", "192.0.0.8/32", "192.0.0.170/31", "192.0.2.0/24", "192.88.99.0/24",
    "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    "255.255.255.255/32",
    "::/128", "::1/128", "::ffff:0:0/96", "64:ff9b:1::/48", "100::/64", "100:0:0:1::/64", "2001::/23",
    "2001::/32", "2001:2::/48", "2001:10::/28", "2001:20::/28", "2001:db8::/32", "3fff::/20", "5f00::/16",
    "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
    "::/96",           # IPv4-compatible (deprecated)
    "::ffff:0:0:0/96",  # IPv4-translated
    "4000::/3",        # unassigned, outside global unicast
]


def _host(addr) -> str:
    return f"[{addr}]" if addr.version == 6 else str(addr)


@pytest.mark.parametrize("cidr", SPECIAL_RANGES)
def test_every_special_purpose_range_is_refused_at_both_ends(cidr):
    net = ipaddress.ip_network(cidr)
    for addr in (net.network_address, net.broadcast_address):
        with pytest.raises(UnsafeURL, match="refused"):
            check_url(f"http://{_host(addr)}/")


@pytest.mark.parametrize("url", [
    "http://[fec0::1]/", "http://192.88.99.1/", "http://[3fff::1]/", "http://[100:0:0:1::1]/",
    "http://[2001:20::1]/", "http://[::7f00:1]/",
])
def test_ranges_python_ipaddress_calls_global_are_refused(url):
    with pytest.raises(UnsafeURL, match="refused"):
        check_url(url)


@pytest.mark.parametrize("url", [
    "http://[2002:7f00:1::]/",     # 6to4 form of 127.0.0.1: the packets go to a 6to4 relay, not to loopback
    "http://[64:ff9b::7f00:1]/",   # NAT64 form of 127.0.0.1: the packets go to the NAT64 translator
    "http://[2002:a00:1::]/",      # 6to4 form of 10.0.0.1
])
def test_an_ipv4_allowlist_does_not_pass_ipv6_forms_of_it(url):
    # The allowlist names the address connected to; the IPv4 inside a 6to4 or NAT64 address is not it.
    with pytest.raises(UnsafeURL, match="refused"):
        check_url(url, allow=("127.0.0.0/8", "10.0.0.0/8"))


def test_an_allowlisted_ipv6_range_passes_and_mapped_addresses_connect_over_ipv4():
    check_url("http://[64:ff9b::7f00:1]/", allow=("64:ff9b::/96",))
    # An IPv4-mapped address is connected to as its IPv4 address, so that is what is checked and returned.
    assert resolve_safe("::ffff:127.0.0.1", 80, ("127.0.0.0/8",)) == "127.0.0.1"
    with pytest.raises(UnsafeURL):
        resolve_safe("::ffff:127.0.0.1", 80, ("::ffff:0:0/96",))


@pytest.mark.parametrize("url", ["http://192.31.196.1/", "http://192.52.193.1/", "http://192.175.48.1/",
                                 "http://[2620:4f:8000::1]/", "http://[2606:4700::1111]/"])
def test_globally_reachable_special_addresses_pass(url):
    check_url(url)
