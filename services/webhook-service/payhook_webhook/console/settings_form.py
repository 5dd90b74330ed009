"""The console's settings forms, read into the shapes the API's schemas validate.

The settings page's form becomes a ``payhook_shared.merchant_settings`` document,
an endpoint form the body of an endpoint request. The forms are only parsed
here; the schemas judge every value, so the console accepts exactly what the
API accepts and the services apply. Values the schema refuses are passed on as
typed, so its message names them.
"""

from __future__ import annotations

import re
from typing import Any

from payhook_shared import merchant_settings
from payhook_shared.callbacks.base import validation_message

#: Blank rule rows offered below the merchant's rules, to add new ones.
SPARE_RULES = 2
RETRY_CHOICES = tuple(merchant_settings.RETRY_PROFILES)
# An explicit schedule, typed in as seconds.
CUSTOM = "custom"
NOTICES = (
    (merchant_settings.PAYMENT_RECEIVED, "Payment received", "to you, for every successful payment"),
    (merchant_settings.PAYMENT_FAILED, "Payment failed", "to you, for every failed payment"),
    (merchant_settings.RECEIPT, "Buyer receipts", "to the buyer named in the payment, for every successful payment"),
    (merchant_settings.ENDPOINT_FAILING, "Endpoint failing",
     "to you, once per incident, when an endpoint keeps failing"),
    (merchant_settings.ENDPOINT_DISABLED, "Endpoint disabled", "to you, when Payhook stops sending to an endpoint"),
    (merchant_settings.PAYMENT_UNRESOLVED, "Payment unresolved",
     "to you, when an STK Push's callback never came and Daraja could not say whether it was paid"),
    (merchant_settings.TRANSACTION_UNRESOLVED, "Transaction unresolved",
     "to you, when a B2C, B2B or reversal timed out in Daraja's queue and Transaction Status could not settle it"),
)


def _whole(value: str) -> int | str:
    """A whole number typed in a field, or the text itself for the schema to refuse."""
    value = value.strip().replace(",", "").replace("_", "")
    return int(value) if value.isascii() and value.isdigit() else value


def _items(value: str) -> list[str]:
    """Items typed in one field, separated by commas, semicolons or new lines."""
    return [part.strip() for part in value.replace(";", ",").replace("\n", ",").split(",") if part.strip()]


def _rules(form) -> list[dict[str, Any]]:
    rules = []
    for i in range(merchant_settings.MAX_PRIORITY_RULES + SPARE_RULES):
        prefix = f"rule-{i}-"
        if f"{prefix}priority" not in form:
            break
        rule: dict[str, Any] = {}
        event_type = form.get(f"{prefix}event_type", "").strip()
        status = form.get(f"{prefix}status", "").strip()
        amount = form.get(f"{prefix}min_amount_minor", "").strip()
        priority = form.get(f"{prefix}priority", "").strip()
        if event_type:
            rule["event_type"] = event_type
        if status:
            rule["status"] = status
        if amount:
            rule["min_amount_minor"] = _whole(amount)
        if priority:
            rule["priority"] = priority
        # A blank row is room for a new rule, not a rule; a rule ticked for removal goes.
        if rule and form.get(f"{prefix}remove") != "on":
            rules.append(rule)
    return rules


def _notifications(form) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for kind, _, _ in NOTICES:
        chosen: dict[str, Any] = {"enabled": form.get(f"notice-{kind}-enabled") == "on"}
        if kind == merchant_settings.RECEIPT:
            fallback = form.get(f"notice-{kind}-fallback_email", "").strip()
            if fallback:
                chosen["fallback_email"] = fallback
        else:
            recipients = _items(form.get(f"notice-{kind}-recipients", ""))
            if recipients:
                chosen["recipients"] = recipients
        out[kind] = chosen
    return out


def _number(value: str) -> float | str:
    """A number typed in a field, or the text itself for the schema to refuse."""
    try:
        return float(value)
    except ValueError:
        return value


# Choices offered for the yes/no and one-of C2B fields; "" keeps the default, so a save changes nothing unasked.
C2B_BOOLEANS = {"true": True, "false": False}


def _c2b(form) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("mode", "min_amount", "max_amount", "account_pattern", "forward_url", "fallback"):
        value = form.get(f"c2b-{name}", "").strip()
        if value:
            out[name] = value
    timeout = form.get("c2b-forward_timeout", "").strip()
    if timeout:
        out["forward_timeout"] = _number(timeout)
    shortcodes = _items(form.get("c2b-shortcodes", ""))
    if shortcodes:
        out["shortcodes"] = shortcodes
    require_name = form.get("c2b-require_name", "").strip()
    if require_name:
        out["require_name"] = C2B_BOOLEANS.get(require_name, require_name)
    return out


def _retention(form) -> dict[str, Any]:
    out = {}
    for name in ("raw_payload_days", "events_days"):
        value = form.get(f"retention-{name}", "").strip()
        if value:
            out[name] = _whole(value)
    return out


def read(form, stored: dict[str, Any]) -> dict[str, Any]:
    """Every section as the form gives it, unvalidated; ``stored`` is the merchant's current view."""
    profile = form.get("retry-profile", "").strip()
    if profile == CUSTOM:
        retry = {"schedule": [_number(step) for step in _items(form.get("retry-schedule", ""))]}
        if "profile" in stored["retry"]:
            retry["profile"] = stored["retry"]["profile"]
    elif profile:
        retry = {"profile": profile}
    else:
        retry = {}
    return {"priority_rules": _rules(form), "retry": retry, "notifications": _notifications(form),
            "retention": _retention(form), "c2b_validation": _c2b(form)}


def _headers(text: str) -> dict[str, str] | None:
    """``Name: value`` lines as a header map; a line without a colon becomes a name the schema refuses."""
    headers = {}
    for line in text.splitlines():
        if line.strip():
            name, _, value = line.partition(":")
            headers[name.strip()] = value.strip()
    return headers or None


def show_headers(headers: dict[str, str] | None) -> str:
    """A header map as the endpoint form's ``Name: value`` lines (what ``read_endpoint`` reads back)."""
    return "\n".join(f"{name}: {value}" for name, value in (headers or {}).items())


def read_endpoint(form) -> dict[str, Any]:
    """An endpoint form (add or edit) in the shape of the API's endpoint schemas, unvalidated.

    Empty event types mean every type, empty limits mean unlimited, no header lines mean no custom headers.
    """
    out: dict[str, Any] = {"url": form.get("url", "").strip(), "description": form.get("description", "").strip(),
                           "event_types": _items(form.get("event_types", "")) or None}
    for name in ("rate_limit_per_second", "max_in_flight"):
        value = form.get(name, "").strip()
        out[name] = _whole(value) if value else None
    out["custom_headers"] = _headers(form.get("custom_headers", ""))
    return out


_RULE = re.compile(r"^priority_rules\.(\d+)\.")


def explain(messages: Any) -> list[str]:
    """The schema's complaints, naming rules as the page numbers them (``rule 1: priority: …``)."""
    return [_RULE.sub(lambda m: f"rule {int(m.group(1)) + 1}: ", line) for line in validation_message(messages)]


def changes(stored: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """The sections of ``wanted`` (validated) that differ from ``stored``."""
    return {name: value for name, value in wanted.items() if stored.get(name) != value}


def describe_schedule(steps: tuple[float, ...] | list[float] | None) -> str:
    """``(5, 300, 3600)`` as ``5 s, 5 min, 1 h``."""
    if steps is None:
        return "the installation's default (out of the box: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h)"
    if not steps:
        return "no retries"

    def one(seconds: float) -> str:
        for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
            if seconds >= size and seconds % size == 0:
                return f"{int(seconds // size)} {unit}"
        return f"{seconds:g} s"

    return ", ".join(one(s) for s in steps)
