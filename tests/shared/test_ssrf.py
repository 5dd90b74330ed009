"""The SSRF guard: which endpoint URLs Payhook refuses to call, and the allowlist that overrides it."""

from __future__ import annotations

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
