"""The ``payhook`` commands: ``listen``, ``simulate``, ``trigger`` and ``events``.

Exit codes, for scripts: 0 done; 1 the server (or the local URL) refused, or
the thing named is not found; 2 a usage error (click's); 3 the server could not
be reached.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import uuid
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import click
import requests

from . import __version__, daraja
from .common import (EXIT_REFUSED, api_key_option, api_url_option, call, emit, json_option, json_or_text,
                     merchant_option, unreachable)
from .events import events
from .listen import Forwarded, Listener, Refused, State

#: How long ``trigger --endpoint`` waits for the server, which itself waits up to ENDPOINT_TEST_WAIT (20 s).
TEST_TIMEOUT = 60


def _state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "payhook"


def _amount(value: str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise click.BadParameter(f"{value!r} is not an amount") from None
    if not amount.is_finite() or amount <= 0:
        raise click.BadParameter("must be a positive amount")
    return amount


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="payhook")
def main() -> None:
    """Develop against Payhook locally: receive a merchant's webhooks, simulate M-Pesa callbacks, trigger events."""


@main.command()
@click.option("--forward-to", required=True, help="The local URL each event is POSTed to, e.g. http://localhost:3000/webhooks.")
@click.option("--events", default=None, help="Comma-separated event types to forward (default: every type).")
@click.option("--state-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where the session's place and secret are kept (default: under $XDG_STATE_HOME/payhook).")
@click.option("--fresh", is_flag=True, help="Forget the saved place and secret: a new secret, events from now on.")
@api_url_option
@api_key_option
@merchant_option
@json_option
def listen(forward_to: str, events: str | None, state_file: Path | None, fresh: bool, api_url: str, api_key: str,
           merchant_id: str | None, as_json: bool) -> None:
    """Forward a merchant's events, as they are recorded, to a local URL, signed with a session secret.

    Prints the signing secret (whsec_...) first, then one line per event. Reconnects
    and resumes where it stopped, this run or the last, without repeating an event.
    Ctrl-C stops it.
    """
    path = state_file or State.path_for(_state_dir(), api_url, api_key, merchant_id)
    if fresh and path.exists():
        path.unlink()
    state = State(path)
    state.save()
    types = [t.strip() for t in events.split(",") if t.strip()] if events else None
    emit(as_json, {"secret": state.secret, "forward_to": forward_to},
          f"Ready. Forwarding to {forward_to}\nWebhook signing secret for this session: {state.secret}")

    def report(done: Forwarded) -> None:
        when = dt.datetime.now().strftime("%H:%M:%S")
        amount = f"{done.currency} {done.amount}" if done.amount is not None else "-"
        outcome = str(done.status) if done.status is not None else done.error
        emit(as_json, {"time": dt.datetime.now(dt.timezone.utc).isoformat(), **vars(done)},
              f"{when}  {done.type:<28} {amount:>14}  -> {outcome:<5} {done.duration_ms:7.0f} ms  {done.id}")

    def notify(text: str) -> None:
        click.echo(f"-- {text}", err=True)

    listener = Listener(api_url, api_key, forward_to, state, types=types, merchant_id=merchant_id,
                        report=report, notify=notify)
    try:
        listener.run()
    except Refused as exc:
        click.echo(f"Error: the stream was refused ({exc})", err=True)
        sys.exit(EXIT_REFUSED)
    except KeyboardInterrupt:
        click.echo("Stopped.", err=True)


@main.command()
@click.argument("kind", type=click.Choice(daraja.KINDS))
@click.option("--result-code", default=None,
              help="Daraja result code: 0 success, 1032 cancelled, 2001 wrong PIN, 1019 expired, 1037 unreachable, "
                   "1 insufficient funds; SFC_IC0003 or R000002 for the timeout kinds. Default: success.")
@click.option("--amount", default=None, help="Amount in KES (default 10).")
@click.option("--phone", default=None, help="The customer's MSISDN, 2547XXXXXXXX (masked in C2B callbacks).")
@click.option("--to", "to", envvar="PAYHOOK_CALLBACK_URL", default=None,
              help="The merchant's callback URL for KIND, or its base .../cb/<merchant>/<token> (env "
                   "PAYHOOK_CALLBACK_URL); without it the callback is printed, not sent.")
@json_option
def simulate(kind: str, result_code: str | None, amount: str | None, phone: str | None, to: str | None,
             as_json: bool) -> None:
    """Build a realistic Safaricom (Daraja) callback of KIND and post it to a Payhook callback URL."""
    fields: dict[str, Any] = {}
    if result_code is not None:
        if kind.startswith("c2b-"):
            raise click.BadParameter("C2B callbacks carry no result code", param_hint="--result-code")
        fields["result_code"] = result_code
    if amount is not None:
        fields["amount"] = _amount(amount)
    if phone is not None:
        if not (phone.isdigit() and phone.startswith("254") and len(phone) == 12):
            raise click.BadParameter("must be 2547XXXXXXXX or 2541XXXXXXXX", param_hint="--phone")
        fields["phone"] = phone
    payload = daraja.build(kind, daraja.Options(**fields))
    if to is None:
        click.echo(json.dumps(payload, indent=None if as_json else 2))
        return
    url = to.rstrip("/")
    if url.rsplit("/", 1)[-1] not in daraja.KINDS:
        url = f"{url}/{kind}"
    try:
        response = requests.post(url, json=payload, timeout=30)
    except requests.RequestException as exc:
        unreachable(url, exc)
    answer = json_or_text(response)
    emit(as_json, {"url": url, "status": response.status_code, "answer": answer, "payload": payload},
          f"{kind} -> {url}\n{response.status_code} {json.dumps(answer) if not isinstance(answer, str) else answer}")
    if response.status_code != 200:
        sys.exit(EXIT_REFUSED)


main.add_command(events)


@main.command()
@click.argument("event_type", required=False)
@click.option("--endpoint", "endpoint_id", default=None,
              help="Send the catalog's example of EVENT_TYPE to this endpoint only, and print the outcome.")
@click.option("--list", "list_types", is_flag=True, help="Print the event catalog's types, and exit.")
@click.option("--amount", default=None, help="Amount in major units (e.g. 10.50); not with --endpoint.")
@click.option("--currency", default=None, help="ISO 4217 currency of the amount [default: KES]; not with --endpoint.")
@click.option("--status", type=click.Choice(["succeeded", "failed", "unknown"]), default=None,
              help="The payment's status [default: succeeded]; not with --endpoint.")
@api_url_option
@api_key_option
@merchant_option
@json_option
def trigger(event_type: str | None, endpoint_id: str | None, list_types: bool, amount: str | None,
            currency: str | None, status: str | None, api_url: str, api_key: str, merchant_id: str | None,
            as_json: bool) -> None:
    """Send a test event of EVENT_TYPE, marked "test": true.

    With --endpoint: the catalog's example of EVENT_TYPE goes to that endpoint
    only, signed with its secret; prints the attempt's outcome and exits 1 if it
    was not delivered. Without: a test event with your amount and status is
    recorded for the merchant and delivered to every endpoint that takes it, and
    to `payhook listen`. --list prints the types the catalog has examples of.
    """
    if list_types:
        _list_types(api_url, api_key, as_json)
        return
    if event_type is None:
        raise click.UsageError("Missing argument 'EVENT_TYPE' (or use --list).")
    if endpoint_id is None:
        _record_test_event(event_type, amount, currency or "KES", status or "succeeded", api_url, api_key,
                           merchant_id, as_json)
        return
    # The endpoint test sends the catalog's own example, so a made-up amount or status has nowhere to go.
    for name, value in (("--amount", amount), ("--currency", currency), ("--status", status),
                        ("--merchant-id", merchant_id)):
        if value is not None:
            raise click.UsageError(f"{name} does not go with --endpoint: the catalog's example is sent as it is.")
    code, answer = call("POST", api_url, api_key, f"/v1/endpoints/{endpoint_id}/test", as_json=as_json,
                        body={"type": event_type}, timeout=TEST_TIMEOUT)
    if code == 202:
        text = (f"{event_type} -> {endpoint_id}: no outcome yet (the delivery-worker has not answered); "
                f"see payhook events show {answer['event_id']}")
    else:
        outcome = answer["status"] if answer["status"] is not None else answer.get("error") or "-"
        verdict = "delivered" if answer["delivered"] else "NOT delivered"
        text = (f"{event_type} -> {endpoint_id}: {verdict}, {outcome} {answer['category']} "
                f"{answer['duration_ms']} ms  {answer['event_id']}")
        if not answer["delivered"] and answer.get("response"):
            text += f"\n  response: {answer['response']}"
    emit(as_json, answer, text)
    if answer["delivered"] is not True:
        sys.exit(EXIT_REFUSED)


def _list_types(api_url: str, api_key: str, as_json: bool) -> None:
    """Print the catalog: the type to give ``trigger``, and what it is (a family shows its example's type)."""
    _, catalog = call("GET", api_url, api_key, "/v1/event-types", as_json=as_json)
    for entry in catalog["data"]:
        example = entry["example"]["type"]
        pattern = entry["type"] if entry["type"] != "*" else "any type"
        note = f" (an example of {pattern})" if example != entry["type"] else ""
        emit(as_json, {"type": example, "family": entry["type"], "provider": entry["provider"],
                       "description": entry["description"]},
             f"{example:<34} {entry['description']}{note}")


def _record_test_event(event_type: str, amount: str | None, currency: str, status: str, api_url: str, api_key: str,
                       merchant_id: str | None, as_json: bool) -> None:
    """Record a test event through ``POST /v1/events``, delivered like any other and seen by ``payhook listen``.

    The endpoint test cannot stand in for it: that reaches one endpoint, not the
    merchant's stream, and sends only the catalog's examples.
    """
    data: dict[str, Any] = {"test": True, "status": status}
    if amount is not None:
        data.update(amount=str(_amount(amount)), currency=currency)
    # The idempotency key and data.test mark it as a test event.
    body: dict[str, Any] = {"type": event_type, "data": data, "idempotency_key": f"payhook-trigger:{uuid.uuid4()}"}
    if merchant_id:
        body["merchant_id"] = merchant_id
    _, answer = call("POST", api_url, api_key, "/v1/events", as_json=as_json, body=body)
    emit(as_json, {"id": answer["id"], "type": event_type}, f"Triggered {event_type}: {answer['id']}")
