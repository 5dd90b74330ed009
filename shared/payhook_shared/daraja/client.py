"""The one Daraja client: OAuth tokens shared through Redis, timeouts, errors, metrics and a rate limit.

Every call goes to the base URL configured for the credentials' environment (``DARAJA_SANDBOX_URL``,
``DARAJA_PRODUCTION_URL``), never to a URL a merchant supplied.

Access tokens are cached in Redis per credential version, so every process and thread shares one.
A token is refreshed ``refresh_before`` seconds before it expires by the one process that takes the
refresh lock; the others keep using the current token meanwhile, or, when there is none yet, wait
for the lock holder's. Daraja thus sees one OAuth request per token lifetime, however many
processes ask at once.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import redis
import urllib3
from prometheus_client import Histogram

from .credentials import DarajaCredentials
from .errors import DarajaAuthError, DarajaError, DarajaRateLimited, DarajaRejected, DarajaUnavailable

log = logging.getLogger(__name__)

OAUTH_PATH = "/oauth/v1/generate?grant_type=client_credentials"
STK_PUSH_PATH = "/mpesa/stkpush/v1/processrequest"
STK_QUERY_PATH = "/mpesa/stkpushquery/v1/query"
TRANSACTION_STATUS_PATH = "/mpesa/transactionstatus/v1/query"

# Daraja reads timestamps in Kenyan time; Nairobi keeps UTC+3 all year (no daylight saving).
NAIROBI = dt.timezone(dt.timedelta(hours=3), "Africa/Nairobi")
# Safaricom numbers: 2547XXXXXXXX and 2541XXXXXXXX, also written 07…/01… or +254….
_PHONE = re.compile(r"(?:\+?254|0)([17]\d{8})")
# STK Push accepts whole shillings; Daraja's own ceiling for one push.
MAX_STK_AMOUNT = 250_000

REQUEST_SECONDS = Histogram(
    "payhook_daraja_request_seconds", "Daraja calls by operation and outcome, in seconds",
    ["operation", "outcome"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))

TOKEN_KEY = "payhook:daraja:token:{}"
TOKEN_LOCK = "payhook:daraja:token-lock:{}"
RATE_KEY = "payhook:daraja:rate:{}:{}"
# How often a caller with no token looks again while another process fetches it.
TOKEN_POLL = 0.02


def normalise_phone(value: str) -> str:
    """A Safaricom number as Daraja wants it: ``0712345678``, ``+254712345678`` → ``254712345678``.

    Raises:
      ValueError: for anything but a 2547/2541 number (spaces and dashes aside).
    """
    match = _PHONE.fullmatch(re.sub(r"[\s-]", "", value))
    if match is None:
        raise ValueError("must be a Safaricom number: 2547XXXXXXXX or 2541XXXXXXXX (07…, 01… and +254… are read too)")
    return "254" + match.group(1)


def password(shortcode: str, passkey: str, timestamp: str) -> str:
    """STK Push's ``Password``: base64 of shortcode, passkey and timestamp."""
    return base64.b64encode(f"{shortcode}{passkey}{timestamp}".encode()).decode("ascii")


def timestamp(now: dt.datetime | None = None) -> str:
    """``YYYYMMDDHHMMSS`` in Nairobi time, as Daraja's ``Timestamp``."""
    return (now or dt.datetime.now(dt.timezone.utc)).astimezone(NAIROBI).strftime("%Y%m%d%H%M%S")


@dataclasses.dataclass(frozen=True)
class StkPushAccepted:
    """Daraja's answer to an accepted STK Push: the ids its callback will carry."""

    merchant_request_id: str
    checkout_request_id: str
    response_description: str
    customer_message: str


class DarajaClient:
    """Calls Daraja for any merchant's credentials; one per process, safe to share between threads.

    ``base_urls`` maps an environment (``sandbox``, ``production``) to its base URL;
    ``rate_limit`` is the most calls per second one credential may make (Payhook's side, across
    processes); ``clock`` gives seconds (``time.time``; tests move their own).
    """

    def __init__(self, base_urls: Mapping[str, str], redis_client: redis.Redis, connect_timeout: float = 5.0,
                 read_timeout: float = 30.0, rate_limit: int = 10, refresh_before: float = 300.0,
                 clock: Callable[[], float] = time.time):
        self.base_urls = {env: url.rstrip("/") for env, url in base_urls.items()}
        self.redis = redis_client
        self.rate_limit = rate_limit
        self.refresh_before = refresh_before
        self.clock = clock
        self._wait = connect_timeout + read_timeout
        self._http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
                                         retries=False, maxsize=10)

    # -- the operations ---------------------------------------------------------------------------

    def oauth(self, creds: DarajaCredentials) -> tuple[str, int]:
        """A new access token from Daraja and its lifetime in seconds (uncached: use ``access_token``)."""
        basic = base64.b64encode(f"{creds.consumer_key}:{creds.consumer_secret}".encode()).decode("ascii")
        body = self._call("oauth", creds, "GET", OAUTH_PATH, {"Authorization": f"Basic {basic}"})
        try:
            return str(body["access_token"]), int(body["expires_in"])
        except (KeyError, TypeError, ValueError):
            raise DarajaUnavailable("Daraja oauth: the answer has no access_token and expires_in") from None

    def access_token(self, creds: DarajaCredentials) -> str:
        """The credentials' access token: cached, or fetched by one process for all.

        Raises:
          DarajaError: when Daraja refuses the credentials or cannot be reached; DarajaUnavailable
          when another process's fetch did not finish in time.
        """
        key, deadline = TOKEN_KEY.format(creds.cache_id), time.monotonic() + self._wait
        while True:
            cached = self._cached_token(key)
            if cached is not None and self.clock() < cached[1]:
                return cached[0]
            lock = self.redis.lock(TOKEN_LOCK.format(creds.cache_id), timeout=self._wait + 5, blocking=False)
            if lock.acquire():
                try:
                    again = self._cached_token(key)  # fetched by the previous lock holder meanwhile
                    if again is not None and self.clock() < again[1]:
                        return again[0]
                    return self._fetch_token(creds, key)
                finally:
                    lock.release()
            if cached is not None:
                return cached[0]  # still valid: another process is refreshing it
            if time.monotonic() > deadline:
                raise DarajaUnavailable("Daraja oauth: another process's token request did not finish in time")
            time.sleep(TOKEN_POLL)

    def stk_push(self, creds: DarajaCredentials, amount: int, phone: str, callback_url: str,
                 account_reference: str, description: str) -> StkPushAccepted:
        """Ask Daraja to prompt ``phone`` to pay ``amount`` whole shillings to the credentials' shortcode.

        Raises:
          DarajaRejected: for a request Daraja refused (``ResponseCode`` other than ``0`` or a 4xx).
          DarajaError: as every call.
        """
        stamp = timestamp()
        body = self._call("stk_push", creds, "POST", STK_PUSH_PATH, self._bearer(creds), {
            "BusinessShortCode": creds.shortcode,
            "Password": password(creds.shortcode, creds.passkey, stamp),
            "Timestamp": stamp,
            "TransactionType": "CustomerPayBillOnline",
            "Amount": amount,
            "PartyA": phone,
            "PartyB": creds.shortcode,
            "PhoneNumber": phone,
            "CallBackURL": callback_url,
            "AccountReference": account_reference,
            "TransactionDesc": description,
        })
        if str(body.get("ResponseCode")) != "0" or not body.get("CheckoutRequestID"):
            raise DarajaRejected(f"Daraja stk_push: {body.get('ResponseDescription') or 'not accepted'}",
                                 200, str(body.get("ResponseCode")))
        return StkPushAccepted(str(body.get("MerchantRequestID") or ""), str(body["CheckoutRequestID"]),
                               str(body.get("ResponseDescription") or ""), str(body.get("CustomerMessage") or ""))

    def stk_query(self, creds: DarajaCredentials, checkout_request_id: str) -> dict[str, Any]:
        """Daraja's word on one STK Push (``ResultCode``, ``ResultDesc``, …), as its JSON answer."""
        stamp = timestamp()
        return self._call("stk_query", creds, "POST", STK_QUERY_PATH, self._bearer(creds), {
            "BusinessShortCode": creds.shortcode,
            "Password": password(creds.shortcode, creds.passkey, stamp),
            "Timestamp": stamp,
            "CheckoutRequestID": checkout_request_id,
        })

    def transaction_status(self, creds: DarajaCredentials, transaction_id: str, result_url: str,
                           timeout_url: str, remarks: str = "status", occasion: str = "",
                           original_conversation_id: str = "") -> dict[str, Any]:
        """Ask for a transaction's status; Daraja acknowledges at once, the result goes to ``result_url``.

        The transaction is ``transaction_id`` (its M-Pesa receipt) or, for one whose result never came
        and so has no receipt known, ``original_conversation_id`` (the request's OriginatorConversationID).
        Returns the acknowledgement, whose ``ConversationID`` and ``OriginatorConversationID`` the result carries.

        Raises:
          DarajaRejected: for a request Daraja refused (``ResponseCode`` other than ``0`` or a 4xx).
          DarajaError: as every call.
        """
        body = {
            "Initiator": creds.initiator_name,
            "SecurityCredential": creds.security_credential,
            "CommandID": "TransactionStatusQuery",
            "TransactionID": transaction_id,
            "PartyA": creds.shortcode,
            "IdentifierType": "4",
            "ResultURL": result_url,
            "QueueTimeOutURL": timeout_url,
            "Remarks": remarks,
            "Occasion": occasion,
        }
        if original_conversation_id:
            body["OriginalConversationID"] = original_conversation_id
        answer = self._call("transaction_status", creds, "POST", TRANSACTION_STATUS_PATH, self._bearer(creds), body)
        if str(answer.get("ResponseCode")) != "0":
            raise DarajaRejected(f"Daraja transaction_status: {answer.get('ResponseDescription') or 'not accepted'}",
                                 200, str(answer.get("ResponseCode")))
        return answer

    # -- plumbing ---------------------------------------------------------------------------------

    def _bearer(self, creds: DarajaCredentials) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token(creds)}"}

    def _cached_token(self, key: str) -> tuple[str, float] | None:
        raw = self.redis.get(key)
        if raw is None:
            return None
        cached = json.loads(raw)
        return cached["token"], cached["refresh_at"]

    def _fetch_token(self, creds: DarajaCredentials, key: str) -> str:
        token, lifetime = self.oauth(creds)
        # Refresh ahead of expiry, but never sooner than half the token's life. The cache forgets it a little
        # before Daraja does (5 s, or a quarter of a short life), so it never hands out an expired token,
        # and keeps it past ``refresh_at``, so the others use it while one process fetches the next.
        refresh_at = self.clock() + max(lifetime - self.refresh_before, lifetime / 2)
        keep = lifetime - min(5.0, lifetime / 4)
        self.redis.set(key, json.dumps({"token": token, "refresh_at": refresh_at}), px=max(int(keep * 1000), 1))
        return token

    def _admit(self, creds: DarajaCredentials, operation: str) -> None:
        """Count the call against the credentials' per-second limit, shared by every process."""
        second = int(self.clock())
        key = RATE_KEY.format(creds.cache_id, second)
        with self.redis.pipeline(transaction=False) as pipe:
            count, _ = pipe.incr(key).expire(key, 2).execute()
        if count > self.rate_limit:
            REQUEST_SECONDS.labels(operation, "rate_limited").observe(0)
            raise DarajaRateLimited(f"Daraja {operation}: more than {self.rate_limit} calls a second for "
                                    f"shortcode {creds.shortcode}; try again shortly", 429)

    def _call(self, operation: str, creds: DarajaCredentials, method: str, path: str, headers: dict[str, str],
              body: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            base = self.base_urls[creds.environment]
        except KeyError:
            raise DarajaRejected(f"no Daraja base URL for environment {creds.environment!r}") from None
        self._admit(creds, operation)
        started = time.perf_counter()
        outcome = "ok"
        try:
            answer = self._http.request(method, base + path, headers={**headers, "Accept": "application/json"},
                                        json=body)
            parsed = _json(answer.data)
            if answer.status >= 300:
                raise _refusal(operation, answer.status, parsed)
            if parsed is None:
                raise DarajaUnavailable(f"Daraja {operation}: the answer is not a JSON object", answer.status)
            return parsed
        except urllib3.exceptions.NewConnectionError as exc:
            # Checked first: urllib3 makes a refused connection a kind of connect timeout.
            outcome = "network"
            raise DarajaUnavailable(f"Daraja {operation}: could not be reached ({type(exc).__name__})") from None
        except urllib3.exceptions.TimeoutError:
            outcome = "timeout"
            raise DarajaUnavailable(f"Daraja {operation}: no answer within the timeout") from None
        except urllib3.exceptions.HTTPError as exc:
            outcome = "network"
            raise DarajaUnavailable(f"Daraja {operation}: could not be reached ({type(exc).__name__})") from None
        except DarajaError as exc:
            outcome = _OUTCOMES.get(type(exc), "error")
            if isinstance(exc, DarajaAuthError) and operation != "oauth":
                # The cached token was refused (revoked, or the app changed): the next call fetches one.
                self.redis.delete(TOKEN_KEY.format(creds.cache_id))
            raise
        finally:
            elapsed = time.perf_counter() - started
            REQUEST_SECONDS.labels(operation, outcome).observe(elapsed)
            log.info("daraja %s %s in %.3fs (shortcode %s)", operation, outcome, elapsed, creds.shortcode)


_OUTCOMES = {DarajaAuthError: "auth", DarajaRejected: "rejected", DarajaRateLimited: "rate_limited",
             DarajaUnavailable: "unavailable"}


def _json(data: bytes) -> dict[str, Any] | None:
    try:
        parsed = json.loads(data)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _refusal(operation: str, status: int, body: dict[str, Any] | None) -> DarajaError:
    """The error for Daraja's non-2xx answer, with its ``errorCode``, ``errorMessage`` and ``requestId``."""
    body = body or {}
    code = body.get("errorCode")
    message = body.get("errorMessage") or body.get("ResponseDescription") or f"HTTP {status}"
    request_id = body.get("requestId")
    text = f"Daraja {operation}: {message}" + (f" ({code})" if code else "") + \
        (f", request {request_id}" if request_id else "")
    kind: type[DarajaError]
    if status == 429:
        kind = DarajaRateLimited
    elif status >= 500:
        kind = DarajaUnavailable
    elif status in (401, 403) or operation == "oauth" or str(code or "").startswith("404.001"):
        # 404.001.03 is Daraja's "Invalid Access Token"; any refused OAuth request is the app's key or secret.
        kind = DarajaAuthError
    else:
        kind = DarajaRejected
    return kind(text, status, str(code) if code else None, str(request_id) if request_id else None)
