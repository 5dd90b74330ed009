"""Pinned HTTP, shared by deliveries and C2B forwarding: check once, connect to the checked address."""

from __future__ import annotations

import pytest
import urllib3

from payhook_shared import pinned_http
from payhook_shared.errors import UnsafeURL

TIMEOUT = urllib3.Timeout(connect=2, read=5, total=5)


def test_the_request_goes_to_the_pinned_address_not_a_new_lookup(receiver):
    # "rebind.example" resolves nowhere: the request can only arrive if no second lookup happens.
    dest = pinned_http.Target("http", "rebind.example", receiver.port, "127.0.0.1", "/in?x=1")
    response = pinned_http.urlopen(pinned_http.pool(2), dest, "POST", b"{}", {}, TIMEOUT)
    assert response.status == 200
    [req] = receiver.received
    assert req.headers["host"] == f"rebind.example:{receiver.port}" and req.path == "/in?x=1"


def test_target_checks_the_url_once_and_pins_what_it_checked(receiver):
    dest = pinned_http.target(f"http://localhost:{receiver.port}/in", ("127.0.0.0/8", "::1/128"))
    assert dest.address in ("127.0.0.1", "::1") and dest.host == "localhost" and dest.path == "/in"
    with pytest.raises(UnsafeURL):
        pinned_http.target(f"http://localhost:{receiver.port}/in")
