"""``payhook events``: find a merchant's events, look at one and its deliveries, resend one (the events API)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import click

from .common import api_key_option, api_url_option, call, emit, json_option, merchant_option

#: The API's largest page; ``--limit`` beyond it is fetched in several.
MAX_PAGE = 100
DELIVERY_STATES = ("delivered", "failing", "dead", "undelivered")


def _when(value: str | None) -> str:
    """An API time (UTC) in the local zone, as ``payhook listen`` prints times."""
    if not value:
        return "-"
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _money(event: dict[str, Any]) -> str:
    return f"{event['currency']} {event['amount']}" if event.get("amount") is not None else "-"


def event_line(event: dict[str, Any]) -> str:
    """One event as ``payhook events list`` prints it."""
    key = event.get("receipt") or event.get("reference") or event.get("provider_key") or "-"
    return (f"{_when(event['received_at'])}  {event['type']:<28} {event['status']:<9} {_money(event):>14}  "
            f"{key:<24} {event['delivery_status']:<11} {event['id']}")


@click.group()
def events() -> None:
    """Find the merchant's events, show one with its deliveries and attempts, resend one."""


@events.command("list")
@click.option("--type", "type_", default=None, help="Only this event type, e.g. mpesa.stk_push.")
@click.option("--status", type=click.Choice(["succeeded", "failed", "unknown"]), default=None,
              help="Only events with this payment status.")
@click.option("--provider", default=None, help="Only this provider: mpesa, api, stripe, paystack, …")
@click.option("--since", default=None, help="Received at or after (ISO 8601; no zone means UTC).")
@click.option("--until", default=None, help="Received before (ISO 8601; no zone means UTC).")
@click.option("--receipt", default=None, help="The M-Pesa receipt (or a gateway's receipt or charge).")
@click.option("--reference", default=None,
              help="The provider's own key: CheckoutRequestID, TransID, ConversationID, a gateway's event id.")
@click.option("--bill-ref", default=None, help="A C2B payment's account number (BillRefNumber).")
@click.option("--phone-suffix", default=None, help="The phone number's last digits.")
@click.option("--delivery", type=click.Choice(DELIVERY_STATES), default=None,
              help="What became of its deliveries: delivered, failing (waits for a retry), dead, undelivered.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True,
              help="Print at most this many events, newest first.")
@click.option("--all", "every", is_flag=True, help="Print every matching event (no --limit).")
@click.option("--after", default=None, help="Start after this event id (the one a truncated list names).")
@api_url_option
@api_key_option
@merchant_option
@json_option
def list_events(type_: str | None, status: str | None, provider: str | None, since: str | None, until: str | None,
                receipt: str | None, reference: str | None, bill_ref: str | None, phone_suffix: str | None,
                delivery: str | None, limit: int, every: bool, after: str | None, api_url: str, api_key: str,
                merchant_id: str | None, as_json: bool) -> None:
    """List the merchant's events, newest first, one line each.

    Each line: time received, type, status, amount, receipt (or reference),
    what became of its deliveries, id. Filters combine; a list cut short by
    --limit says on stderr how to go on.
    """
    filters = {"type": type_, "status": status, "provider": provider, "since": since, "until": until,
               "receipt": receipt, "reference": reference, "bill_ref": bill_ref, "phone_suffix": phone_suffix,
               "delivery": delivery, "merchant_id": merchant_id}
    printed = 0
    while True:
        page_size = MAX_PAGE if every else min(MAX_PAGE, limit - printed)
        _, page = call("GET", api_url, api_key, "/v1/events", as_json=as_json,
                       params={**filters, "limit": page_size, "after": after})
        for event in page["data"]:
            emit(as_json, event, event_line(event))
        printed += len(page["data"])
        after = page["next_after"]
        if not page["has_more"]:
            return
        if not every and printed >= limit:
            click.echo(f"-- more events: go on with --after {after}, or use --all", err=True)
            return


@events.command("show")
@click.argument("event_id")
@api_url_option
@api_key_option
@json_option
def show_event(event_id: str, api_url: str, api_key: str, as_json: bool) -> None:
    """Show one event: its webhook data, and each delivery with every attempt.

    --json prints the API's whole answer, the raw payload included.
    """
    _, event = call("GET", api_url, api_key, f"/v1/events/{event_id}", as_json=as_json)
    if as_json:
        emit(True, event, "")
        return
    data = event["data"]
    lines = [
        f"{event['id']}  {event['type']}",
        f"  received   {_when(event['received_at'])}",
        f"  merchant   {event['merchant_id']}",
        f"  status     {data['status']}  {_money(data)}",
        f"  receipt    {data.get('receipt') or '-'}",
        f"  reference  {data.get('reference') or '-'}  (provider key {event.get('provider_key') or '-'})",
        f"  delivery   {event['delivery_status']}",
    ]
    for delivery in event["deliveries"]:
        lines.append(f"  -> {delivery['endpoint_id']}  {delivery['state']}")
        for attempt in delivery["attempt_log"]:
            outcome = attempt["status_code"] if attempt["status_code"] is not None else attempt["error"] or "-"
            duration = f"{attempt['duration_ms']} ms" if attempt["duration_ms"] is not None else "-"
            lines.append(f"     #{attempt['number']}  {_when(attempt['started_at'])}  {outcome}  "
                         f"{attempt['category']}  {duration}")
    lines.append("  data:")
    lines.extend("    " + line for line in json.dumps(data, indent=2).splitlines())
    click.echo("\n".join(lines))


@events.command("resend")
@click.argument("event_id")
@click.option("--endpoint", "endpoint_id", default=None,
              help="Only to this endpoint (default: every enabled endpoint that takes the event).")
@api_url_option
@api_key_option
@json_option
def resend_event(event_id: str, endpoint_id: str | None, api_url: str, api_key: str, as_json: bool) -> None:
    """Deliver an event again: the same webhook (same webhook-id and body), delivered before or not."""
    body = {"endpoint_id": endpoint_id} if endpoint_id else {}
    _, answer = call("POST", api_url, api_key, f"/v1/events/{event_id}/resend", as_json=as_json, body=body)
    emit(as_json, answer, "\n".join(f"Resending {answer['event_id']} to {endpoint}: {state}"
                                    for endpoint, state in answer["endpoints"].items()))
