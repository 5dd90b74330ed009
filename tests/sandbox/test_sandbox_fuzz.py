"""No body, however odd, makes a Daraja endpoint of the sandbox fail with a 5xx it did not mean.

The sandbox's own 500s are Daraja's "being processed" and the faults a test asks for; anything else is
a 400 naming the field (or a 401 without a token).
"""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payhook_sandbox.app import create_app
from payhook_sandbox.settings import load
from payhook_sandbox import routes

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                    max_leaves=6)


@pytest.fixture(scope="module")
def sandbox_client():
    # Callbacks a lucky body schedules would come due in an hour: nothing is ever sent.
    app = create_app({"callback_delay": 3600.0, "late_delay": 3600.0})
    client = app.test_client()
    basic = base64.b64encode(b"payhook-sandbox-key:payhook-sandbox-secret").decode()
    token = client.get("/oauth/v1/generate?grant_type=client_credentials",
                       headers={"Authorization": f"Basic {basic}"}).get_json()["access_token"]
    yield client, {"Authorization": f"Bearer {token}"}
    app.extensions["payhook_sandbox"].dispatcher.stop()


#: The fields each endpoint reads, so that bodies reach every check, not only the first.
FIELDS = {
    "/mpesa/stkpush/v1/processrequest": routes.STK_FIELDS,
    "/mpesa/stkpushquery/v1/query": ("BusinessShortCode", "Password", "Timestamp", "CheckoutRequestID"),
    "/mpesa/transactionstatus/v1/query": (*routes.STATUS_FIELDS, "Remarks", "Occasion"),
    "/mpesa/b2c/v1/paymentrequest": (*routes.B2C_FIELDS, "Remarks", "Occassion", "OriginatorConversationID"),
    "/mpesa/b2c/v3/paymentrequest": (*routes.B2C_FIELDS, "Remarks", "Occassion", "OriginatorConversationID"),
    "/mpesa/c2b/v2/registerurl": ("ShortCode", "ResponseType", "ConfirmationURL", "ValidationURL"),
    "/mpesa/c2b/v2/simulate": ("ShortCode", "CommandID", "Amount", "Msisdn", "BillRefNumber"),
}


TIMESTAMP = "20261203120000"
PASSWORD = base64.b64encode(f"174379{load({}).passkey}{TIMESTAMP}".encode()).decode()
NOWHERE = "http://127.0.0.1:9/cb"
_B2C = {"InitiatorName": "api", "SecurityCredential": "c2Vj", "CommandID": "BusinessPayment", "Amount": 10,
        "PartyA": 600996, "PartyB": 254712345678, "Remarks": "r", "QueueTimeOutURL": NOWHERE, "ResultURL": NOWHERE}
#: A valid body per endpoint: a few of its fields replaced by anything reach the checks behind the Password.
VALID = {
    "/mpesa/stkpush/v1/processrequest": {
        "BusinessShortCode": 174379, "Password": PASSWORD, "Timestamp": TIMESTAMP,
        "TransactionType": "CustomerPayBillOnline", "Amount": 1, "PartyA": 254708374149, "PartyB": 174379,
        "PhoneNumber": 254708374149, "CallBackURL": NOWHERE, "AccountReference": "A", "TransactionDesc": "D"},
    "/mpesa/stkpushquery/v1/query": {"BusinessShortCode": "174379", "Password": PASSWORD, "Timestamp": TIMESTAMP,
                                     "CheckoutRequestID": "ws_CO_1"},
    "/mpesa/transactionstatus/v1/query": {
        "Initiator": "api", "SecurityCredential": "c2Vj", "CommandID": "TransactionStatusQuery",
        "TransactionID": "SKL4ABCD12", "PartyA": "600977", "IdentifierType": "4", "ResultURL": NOWHERE,
        "QueueTimeOutURL": NOWHERE, "Remarks": "r", "Occasion": ""},
    "/mpesa/b2c/v1/paymentrequest": _B2C,
    "/mpesa/b2c/v3/paymentrequest": {**_B2C, "OriginatorConversationID": "o-1"},
    "/mpesa/c2b/v2/registerurl": {"ShortCode": "600977", "ResponseType": "Completed", "ConfirmationURL": NOWHERE,
                                  "ValidationURL": NOWHERE},
    "/mpesa/c2b/v2/simulate": {"ShortCode": "600977", "CommandID": "CustomerPayBillOnline", "Amount": 1,
                               "Msisdn": 254708374149, "BillRefNumber": "A"},
}


def test_every_daraja_endpoint_is_fuzzed():
    assert set(VALID) == set(FIELDS)
    assert set(FIELDS) == {path for path, name in routes.ENDPOINTS.items() if name != "oauth"}


@given(path=st.sampled_from(sorted(FIELDS)), data=st.data())
def test_any_body_is_answered_without_an_unmeant_5xx(sandbox_client, path, data):
    client, headers = sandbox_client
    anything = st.one_of(JSON, st.fixed_dictionaries({}, optional={f: JSON | st.text() for f in FIELDS[path]}))
    nearly_valid = st.fixed_dictionaries({}, optional={f: JSON | st.text() for f in VALID[path]}).map(
        lambda changes: {**VALID[path], **changes})
    body = data.draw(anything | nearly_valid)
    answer = client.post(path, json=body, headers=headers)
    if answer.status_code >= 500:
        assert path.startswith("/mpesa/stkpushquery") and answer.get_json()["errorCode"] == "500.001.1001"
    assert answer.status_code in (200, 400, 500), answer.get_data(as_text=True)
    assert answer.is_json


HEADER_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=60)
BASIC = st.binary(max_size=40).map(lambda raw: "Basic " + base64.b64encode(raw).decode())


@given(query=st.text(max_size=40), auth=HEADER_TEXT | BASIC)
def test_any_oauth_request_is_a_200_or_a_400(sandbox_client, query, auth):
    client, _ = sandbox_client
    answer = client.get("/oauth/v1/generate", query_string={"grant_type": query}, headers={"Authorization": auth})
    assert answer.status_code in (200, 400) and answer.is_json


@given(body=JSON)
def test_any_control_body_is_a_2xx_or_a_400(sandbox_client, body):
    client, _ = sandbox_client
    for method, path in (("PUT", "/_sandbox/config"), ("POST", "/_sandbox/faults"),
                         ("POST", "/_sandbox/credentials")):
        answer = client.open(path, method=method, json=body)
        assert answer.status_code in (200, 201, 400), answer.get_data(as_text=True)
    client.delete("/_sandbox/faults")  # a fault this body set must not fail the next example


def test_the_valid_bodies_the_fuzz_starts_from_are_accepted(sandbox_client):
    client, headers = sandbox_client
    register = client.post("/mpesa/c2b/v2/registerurl", json=VALID["/mpesa/c2b/v2/registerurl"], headers=headers)
    assert register.status_code == 200
    for path, body in VALID.items():
        answer = client.post(path, json=body, headers=headers)
        if path == "/mpesa/stkpushquery/v1/query":
            assert answer.get_json()["errorMessage"] == "Bad Request - Invalid CheckoutRequestID"
        else:
            assert answer.status_code == 200, (path, answer.get_json())


def test_non_ascii_secrets_and_passwords_are_refused_not_crashed_on(sandbox_client):
    """Found by the fuzz: comparing a non-ASCII password or secret must be a 400, not a 500."""
    client, headers = sandbox_client
    push = client.post("/mpesa/stkpush/v1/processrequest", headers=headers,
                       json={**VALID["/mpesa/stkpush/v1/processrequest"], "Password": "é"})
    assert (push.status_code, push.get_json()["errorMessage"]) == (400, "Bad Request - Invalid Password")
    basic = base64.b64encode("payhook-sandbox-key:é".encode()).decode()
    oauth = client.get("/oauth/v1/generate?grant_type=client_credentials", headers={"Authorization": f"Basic {basic}"})
    assert (oauth.status_code, oauth.get_json()["errorCode"]) == (400, "400.008.01")
