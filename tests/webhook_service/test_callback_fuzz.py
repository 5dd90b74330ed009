"""Property: no body, however wrong, makes any callback route (M-Pesa or gateway source) answer 5xx.

Generated bodies: arbitrary JSON, random and truncated bytes, and the fixtures
with values replaced by wrong types or removed, each posted to a random
callback route. How many is the Hypothesis profile's budget (tests/conftest.py:
CI=true runs 4,500 in all, HYPOTHESIS_PROFILE=fuzz 45,000). One app, merchant
and SQLite store serve the whole module so the examples stay fast.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from factories import FIXTURES, callback_url, merchant_with_endpoints
from payhook_shared.store import Store
from payhook_webhook.api.callbacks import KINDS

FUZZ = settings()  # the profile's budget (tests/conftest.py)
SAMPLES = [json.loads(p.read_bytes()) for p in sorted((FIXTURES / "mpesa").glob("*.json"))]
RAW_SAMPLES = [p.read_bytes() for p in sorted((FIXTURES / "mpesa").glob("*.json"))]

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=-(10**40), max_value=10**40),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40),
                    st.sampled_from(["0", "5.00", "-1", "1e999", "R000002", "20240706224852",
                                     "06.07.2024 22:48:52", "2547 ***** 126", "", " "]))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)), max_leaves=12)


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory, sqlite_template, redis_server):
    from payhook_webhook.app import create_app

    path = Path(tmp_path_factory.mktemp("fuzz")) / "payhook.db"
    shutil.copy(sqlite_template, path)
    url = f"sqlite:///{path}"
    store = Store(url)
    merchant, _ = merchant_with_endpoints(store, "http://127.0.0.1:9/a")
    store.dispose()
    app = create_app({"database_url": url, "redis_url": redis_server.url, "log_level": "ERROR"})
    yield app.test_client(), merchant
    app.extensions["payhook.store"].dispose()


def _post(fuzz_client, kind: str, body: bytes) -> None:
    client, merchant = fuzz_client
    response = client.post(callback_url(merchant, kind), data=body, content_type="application/json")
    assert response.status_code < 500, (kind, body[:300], response.get_data()[:300])
    if response.status_code >= 400:
        assert response.get_json()["error"]["message"]


def _mutate(value, path: list[int], replacement, delete: bool):
    """Replace (or delete) the node that ``path`` picks among ``value``'s children, recursively."""
    if not path or not isinstance(value, (dict, list)) or not value:
        return replacement
    keys = list(value) if isinstance(value, dict) else list(range(len(value)))
    key = keys[path[0] % len(keys)]
    copy = dict(value) if isinstance(value, dict) else list(value)
    if len(path) == 1 and delete:
        del copy[key]
    else:
        copy[key] = _mutate(copy[key], path[1:], replacement, delete)
    return copy


@pytest.mark.slow
@FUZZ
@given(kind=st.sampled_from(KINDS), value=json_values)
def test_arbitrary_json(fuzz_client, kind, value):
    _post(fuzz_client, kind, json.dumps(value).encode())


@pytest.mark.slow
@FUZZ
@given(kind=st.sampled_from(KINDS), sample=st.sampled_from(SAMPLES),
       path=st.lists(st.integers(min_value=0, max_value=20), min_size=1, max_size=6),
       replacement=json_values, delete=st.booleans())
def test_mutated_fixtures(fuzz_client, kind, sample, path, replacement, delete):
    _post(fuzz_client, kind, json.dumps(_mutate(sample, path, replacement, delete)).encode())


@pytest.mark.slow
@FUZZ
@given(kind=st.sampled_from(KINDS), sample=st.sampled_from(RAW_SAMPLES), cut=st.integers(min_value=0),
       junk=st.binary(max_size=20))
def test_truncated_and_spliced_bytes(fuzz_client, kind, sample, cut, junk):
    cut %= len(sample) + 1
    _post(fuzz_client, kind, sample[:cut] + junk)


@pytest.mark.slow
@FUZZ
@given(kind=st.sampled_from(KINDS), body=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)))
def test_random_bytes(fuzz_client, kind, body):
    _post(fuzz_client, kind, body)


# Gateway sources: bodies are signed correctly, so every one reaches parsing and normalisation.
# A quarter of the profile's budget: each body is signed and most are recorded, several times the cost.
GATEWAY_FUZZ = settings(max_examples=max(1, FUZZ.max_examples // 4),
                        suppress_health_check=[*FUZZ.suppress_health_check, HealthCheck.function_scoped_fixture])
GATEWAY_SAMPLES = [json.loads(p.read_bytes()) for provider in ("stripe", "paystack", "flutterwave")
                   for p in sorted((FIXTURES / provider).glob("*.json"))]


@pytest.fixture(scope="module")
def gateway_paths(fuzz_client):
    from factories import make_source
    from support_gateways import (
        FLUTTERWAVE_SECRET, HMAC_CONFIG, HMAC_SECRET, PAYSTACK_SECRET, STANDARD_SECRET, STRIPE_SECRET,
        flutterwave_headers, hmac_headers, paystack_headers, standard_headers, stripe_headers,
    )

    client, merchant = fuzz_client
    store = client.application.extensions["payhook.store"]
    specs = [("stripe", STRIPE_SECRET, stripe_headers, {}), ("paystack", PAYSTACK_SECRET, paystack_headers, {}),
             ("flutterwave", FLUTTERWAVE_SECRET, flutterwave_headers, {}),
             ("standard-webhooks", STANDARD_SECRET, standard_headers, {}),
             ("hmac", HMAC_SECRET, hmac_headers, {"hmac": HMAC_CONFIG})]
    return [(make_source(store, merchant, provider, secret, config=config)[1], signer)
            for provider, secret, signer, config in specs]


def _post_gateway(fuzz_client, gateway_paths, index: int, body: bytes, signed: bool, headers: dict) -> None:
    client, _ = fuzz_client
    path, signer = gateway_paths[index % len(gateway_paths)]
    sent = {**headers, **(signer(body) if signed else {})}
    response = client.post(path, data=body, headers=sent, content_type="application/json")
    assert response.status_code < 500, (path, body[:300], response.get_data()[:300])
    if response.status_code >= 400:
        assert response.get_json()["error"]["message"]


@GATEWAY_FUZZ
@given(index=st.integers(min_value=0, max_value=4), sample=st.sampled_from(GATEWAY_SAMPLES),
       path=st.lists(st.integers(min_value=0, max_value=20), min_size=1, max_size=6),
       replacement=json_values, delete=st.booleans())
def test_gateway_signed_mutations(fuzz_client, gateway_paths, index, sample, path, replacement, delete):
    body = json.dumps(_mutate(sample, path, replacement, delete)).encode()
    _post_gateway(fuzz_client, gateway_paths, index, body, True, {})


@GATEWAY_FUZZ
@given(index=st.integers(min_value=0, max_value=4), body=st.one_of(st.binary(max_size=200), json_values.map(
    lambda v: json.dumps(v).encode())), signed=st.booleans(),
       headers=st.dictionaries(st.sampled_from(["Stripe-Signature", "x-paystack-signature", "verif-hash",
                                                "flutterwave-signature", "webhook-id", "webhook-timestamp",
                                                "webhook-signature", "X-Shop-Signature", "X-Shop-Timestamp"]),
                               st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80),
                               max_size=4))
def test_gateway_random_bodies_and_headers(fuzz_client, gateway_paths, index, body, signed, headers):
    _post_gateway(fuzz_client, gateway_paths, index, body, signed, headers)
