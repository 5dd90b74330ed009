"""The M-Pesa source-IP allowlist: the client is the peer, or the right-most untrusted X-Forwarded-For entry."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from factories import fixture_bytes, merchant_with_endpoints, stk_url
from payhook_shared.errors import ConfigError
from payhook_shared.store import Event
from payhook_webhook.app import create_app
from payhook_webhook.settings import SAFARICOM_CALLBACK_IPS, Settings
from payhook_webhook.source_ip import SourcePolicy

SAFARICOM = "196.201.214.200"
PROXY = "10.0.0.5"


@pytest.fixture
def guarded_app(database_url, redis_url):
    app = create_app({"database_url": database_url, "redis_url": redis_url, "log_format": "text",
                      "mpesa_ip_allowlist_enabled": True, "trusted_proxies": ("10.0.0.0/8",)})
    app.config["TESTING"] = True
    yield app
    app.extensions["payhook.store"].dispose()


def post_stk(client, merchant, remote_addr, forwarded_for=None):
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return client.post(stk_url(merchant), data=fixture_bytes("mpesa/stk_success.json"),
                       content_type="application/json", headers=headers,
                       environ_base={"REMOTE_ADDR": remote_addr})


def test_spoofed_forwarded_for_from_an_untrusted_peer_is_refused(guarded_app, store):
    merchant, _ = merchant_with_endpoints(store, "https://shop.example/a")
    response = post_stk(guarded_app.test_client(), merchant, "127.0.0.1", SAFARICOM)
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "source_not_allowed"
    assert "127.0.0.1" in response.get_json()["error"]["message"]


def test_trusted_proxy_with_forwarded_for_ending_in_safaricom_is_accepted(guarded_app, store):
    merchant, _ = merchant_with_endpoints(store, "https://shop.example/a")
    response = post_stk(guarded_app.test_client(), merchant, PROXY, f"6.6.6.6, {SAFARICOM}, 10.1.2.3")
    assert response.status_code == 200
    assert response.get_json() == {"ResultCode": 0, "ResultDesc": "Accepted"}


def test_left_most_forwarded_for_entry_is_never_believed(guarded_app, store):
    merchant, _ = merchant_with_endpoints(store, "https://shop.example/a")
    response = post_stk(guarded_app.test_client(), merchant, PROXY, f"{SAFARICOM}, 6.6.6.6")
    assert response.status_code == 403
    assert "6.6.6.6" in response.get_json()["error"]["message"]


def test_direct_safaricom_peer_is_accepted_and_refusals_record_nothing(guarded_app, store):
    merchant, _ = merchant_with_endpoints(store, "https://shop.example/a")
    client = guarded_app.test_client()
    assert post_stk(client, merchant, "8.8.8.8").status_code == 403
    with store.read() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 0
    assert post_stk(client, merchant, SAFARICOM).status_code == 200


def test_allowlist_is_off_by_default(client, store):
    merchant, _ = merchant_with_endpoints(store, "https://shop.example/a")
    assert post_stk(client, merchant, "8.8.8.8").status_code == 200


def test_allowlist_does_not_guard_the_api(guarded_app, store):
    assert guarded_app.test_client().get("/health", environ_base={"REMOTE_ADDR": "8.8.8.8"}).status_code == 200


@pytest.mark.parametrize("peer, forwarded, client", [
    ("127.0.0.1", [SAFARICOM], "127.0.0.1"),                      # untrusted peer: header ignored
    (PROXY, [f"1.1.1.1, {SAFARICOM}"], SAFARICOM),                # right-most untrusted entry
    (PROXY, [f"{SAFARICOM}, 10.9.9.9, 10.8.8.8"], SAFARICOM),     # skip our own proxies
    (PROXY, ["1.1.1.1", SAFARICOM], SAFARICOM),                   # repeated headers read in order
    (PROXY, [], PROXY),                                           # no header: the proxy itself
    (PROXY, ["10.1.1.1, 10.2.2.2"], "10.1.1.1"),                  # only proxies: the left-most of them
    (PROXY, [f"{SAFARICOM}, garbage"], "garbage"),                # garbage is the client, and refused
    ("::ffff:10.0.0.5", [SAFARICOM], SAFARICOM),                  # IPv4-mapped peer
])
def test_client_address(peer, forwarded, client):
    policy = SourcePolicy.from_settings(Settings.from_env({}, trusted_proxies=("10.0.0.0/8",)))
    assert policy.client_address(peer, forwarded) == client


def test_allowlist_accepts_cidrs_and_mapped_addresses():
    policy = SourcePolicy.from_settings(Settings.from_env({}, mpesa_ip_allowlist=("196.201.212.0/24",)))
    assert policy.allows("196.201.212.7") and policy.allows("::ffff:196.201.212.7")
    assert not policy.allows("196.201.213.7") and not policy.allows("garbage")


def test_default_allowlist_is_safaricoms_and_settings_read_from_env():
    settings = Settings.from_env({"MPESA_IP_ALLOWLIST_ENABLED": "true",
                                  "TRUSTED_PROXIES": "10.0.0.0/8, 192.168.0.1"})
    assert settings.mpesa_ip_allowlist == SAFARICOM_CALLBACK_IPS and len(SAFARICOM_CALLBACK_IPS) == 12
    policy = SourcePolicy.from_settings(settings)
    assert policy.enabled and all(policy.allows(ip) for ip in SAFARICOM_CALLBACK_IPS)
    assert policy.client_address("192.168.0.1", [SAFARICOM]) == SAFARICOM


def test_bad_entries_fail_at_start_up():
    with pytest.raises(ConfigError, match="TRUSTED_PROXIES"):
        SourcePolicy.from_settings(Settings.from_env({"TRUSTED_PROXIES": "10.0.0.0/33"}))
    with pytest.raises(ConfigError, match="MPESA_IP_ALLOWLIST"):
        SourcePolicy.from_settings(Settings.from_env({"MPESA_IP_ALLOWLIST": "safaricom.example"}))
