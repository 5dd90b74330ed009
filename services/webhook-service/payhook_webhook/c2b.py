"""C2B validation: deciding, inside Safaricom's ~8 s window, whether to accept a payment.

Each merchant chooses in ``Merchant.settings["c2b_validation"]`` (validated, when
set through the API or the console, by ``payhook_shared.merchant_settings``)::

    {"mode": "accept_all"}                         # the default
    {"mode": "rules", "min_amount": "10", "max_amount": "150000",
     "account_pattern": "INV-[0-9]+", "shortcodes": ["600966"], "require_name": false,
     "fallback": "accept"}
    {"mode": "forward", "forward_url": "https://shop.example/validate",
     "forward_timeout": 3, "fallback": "reject"}

Rules are checked in the order shortcode (C2B00015), MSISDN present (C2B00011),
name present when ``require_name`` (C2B00014), amount a number within bounds
(C2B00013), account number matching ``account_pattern`` in full (C2B00012).

Forwarding POSTs the callback body verbatim to ``forward_url``; the merchant's
``{"ResultCode": "0" | "C2B000xx", ...}`` is passed on. The URL passes the same
SSRF guard as webhook deliveries, with the same ``ENDPOINT_ALLOWLIST``: when it is
set, and at each forward, where its host is resolved once, checked, and the
connection goes to exactly the checked address (``payhook_shared.pinned_http``).
A refused or unresolvable host gets the ``fallback``. A timeout (capped at
``MAX_FORWARD_TIMEOUT``), a refused connection, a non-2xx answer or an answer
that is not one of those codes gets the ``fallback`` instead, as do settings
Payhook cannot use (an unknown mode, an invalid regex or amount): ``accept``
(the default, so a misconfiguration never loses a payment) or ``reject`` with C2B00016.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import re
from typing import Any

import urllib3

from payhook_shared import money, pinned_http
from payhook_shared.callbacks.mpesa import CURRENCY
from payhook_shared.errors import UnsafeURL
from payhook_shared.merchant_settings import DEFAULT_FORWARD_TIMEOUT, MAX_FORWARD_TIMEOUT, MAX_PATTERN_LENGTH

log = logging.getLogger(__name__)

ACCEPT = "0"
INVALID_MSISDN = "C2B00011"
INVALID_ACCOUNT = "C2B00012"
INVALID_AMOUNT = "C2B00013"
INVALID_KYC = "C2B00014"
INVALID_SHORTCODE = "C2B00015"
OTHER_ERROR = "C2B00016"
REJECTION_CODES = frozenset({INVALID_MSISDN, INVALID_ACCOUNT, INVALID_AMOUNT, INVALID_KYC,
                             INVALID_SHORTCODE, OTHER_ERROR})


class SettingsError(ValueError):
    """A merchant's c2b_validation settings cannot be applied."""


@dataclasses.dataclass(frozen=True)
class Decision:
    """Accept (code ``"0"``) or reject with a C2B000xx code, and why."""

    code: str
    reason: str

    @property
    def accepted(self) -> bool:
        return self.code == ACCEPT

    def answer(self) -> dict[str, str]:
        """The body Safaricom expects from a validation URL."""
        return {"ResultCode": self.code, "ResultDesc": "Accepted" if self.accepted else "Rejected"}

    def details(self) -> dict[str, str]:
        """What the recorded validation event keeps about the decision."""
        return {"decision": "accepted" if self.accepted else "rejected", "decision_code": self.code,
                "decision_reason": self.reason}


def http_pool() -> urllib3.PoolManager:
    """The connection pool for forwarding validations: no retries, no redirects."""
    return pinned_http.pool(maxsize=8, num_pools=64)


def decide(merchant_settings: dict[str, Any] | None, c2b: dict[str, Any], raw_body: bytes,
           http: urllib3.PoolManager, allow: tuple[str, ...] = ()) -> Decision:
    """Apply the merchant's validation settings to a loaded C2B validation request.

    ``allow`` lists the non-public CIDRs a ``forward_url`` may lead to (``ENDPOINT_ALLOWLIST``).
    """
    config = (merchant_settings or {}).get("c2b_validation") or {}
    try:
        if not isinstance(config, dict):
            raise SettingsError("c2b_validation must be an object")
        mode = config.get("mode", "accept_all")
        if mode == "accept_all":
            return Decision(ACCEPT, "accept_all")
        if mode == "rules":
            return _apply_rules(config, c2b)
        if mode == "forward":
            return _forward(config, raw_body, http, allow)
        raise SettingsError(f"unknown mode {mode!r}")
    except SettingsError as exc:
        log.warning("c2b_validation settings unusable (%s); applying the fallback", exc)
        return _fallback(config, f"settings: {exc}")


def _fallback(config: Any, why: str) -> Decision:
    choice = config.get("fallback", "accept") if isinstance(config, dict) else "accept"
    if choice == "reject":
        return Decision(OTHER_ERROR, f"fallback reject: {why}")
    return Decision(ACCEPT, f"fallback accept: {why}")


def _bound(config: dict[str, Any], name: str) -> int | None:
    value = config.get(name)
    if value is None:
        return None
    try:
        return money.to_minor(value, CURRENCY)
    except money.AmountError as exc:
        raise SettingsError(f"{name}: {exc}") from None


@functools.lru_cache(maxsize=256)
def _pattern(text: str) -> re.Pattern[str]:
    return re.compile(text)


def _account_pattern(config: dict[str, Any]) -> re.Pattern[str] | None:
    text = config.get("account_pattern")
    if text is None:
        return None
    if not isinstance(text, str) or len(text) > MAX_PATTERN_LENGTH:
        raise SettingsError(f"account_pattern must be a regex of at most {MAX_PATTERN_LENGTH} characters")
    try:
        return _pattern(text)
    except re.error as exc:
        raise SettingsError(f"account_pattern: {exc}") from None


def _apply_rules(config: dict[str, Any], c2b: dict[str, Any]) -> Decision:
    low, high = _bound(config, "min_amount"), _bound(config, "max_amount")
    pattern = _account_pattern(config)
    shortcodes = config.get("shortcodes")
    if shortcodes is not None and not isinstance(shortcodes, list):
        raise SettingsError("shortcodes must be a list")

    if shortcodes is not None and c2b["BusinessShortCode"] not in {str(s) for s in shortcodes}:
        return Decision(INVALID_SHORTCODE, f"shortcode {c2b['BusinessShortCode']!r} not accepted")
    if not c2b["MSISDN"]:
        return Decision(INVALID_MSISDN, "no MSISDN")
    if config.get("require_name") and not (c2b["FirstName"] or c2b["LastName"]):
        return Decision(INVALID_KYC, "no customer name")
    try:
        amount = money.to_minor(c2b["TransAmount"], CURRENCY)
    except money.AmountError:
        return Decision(INVALID_AMOUNT, "amount is not a valid KES amount")
    if (low is not None and amount < low) or (high is not None and amount > high):
        return Decision(INVALID_AMOUNT, "amount outside the accepted range")
    if pattern is not None and not pattern.fullmatch(c2b["BillRefNumber"] or ""):
        return Decision(INVALID_ACCOUNT, "account number does not match")
    return Decision(ACCEPT, "rules passed")


def _forward_timeout(config: dict[str, Any]) -> float:
    value = config.get("forward_timeout", DEFAULT_FORWARD_TIMEOUT)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise SettingsError("forward_timeout must be a positive number of seconds")
    return min(float(value), MAX_FORWARD_TIMEOUT)


def _forward(config: dict[str, Any], raw_body: bytes, http: urllib3.PoolManager,
             allow: tuple[str, ...]) -> Decision:
    url = config.get("forward_url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise SettingsError("forward_url must be an http(s) URL")
    timeout = _forward_timeout(config)
    try:
        dest = pinned_http.target(url, allow)
    except UnsafeURL as exc:
        log.warning("c2b_validation forward_url refused: %s", exc)
        return _fallback(config, "forward_url refused by the SSRF guard")
    except OSError as exc:
        return _fallback(config, f"forward_url does not resolve: {type(exc).__name__}")
    try:
        response = pinned_http.urlopen(
            http, dest, "POST", raw_body,
            {"content-type": "application/json", "user-agent": "Payhook-C2B-Validation/0.1"},
            urllib3.Timeout(connect=timeout, read=timeout, total=timeout),
        )
    except urllib3.exceptions.HTTPError as exc:
        return _fallback(config, f"forward failed: {type(exc).__name__}")
    try:
        body = response.read(16 * 1024, decode_content=True)
    except urllib3.exceptions.HTTPError as exc:
        return _fallback(config, f"forward failed reading the answer: {type(exc).__name__}")
    finally:
        # The answer may be longer than was read; never reuse a connection with bytes left on it.
        response.close()
        response.release_conn()
    if not 200 <= response.status < 300:
        return _fallback(config, f"forward answered HTTP {response.status}")
    try:
        code = str(json.loads(body)["ResultCode"]).strip()
    except (ValueError, KeyError, TypeError):
        return _fallback(config, "forward answer has no ResultCode")
    if code == ACCEPT or code in REJECTION_CODES:
        return Decision(code, "forwarded")
    return _fallback(config, f"forward answered unknown ResultCode {code[:40]!r}")
