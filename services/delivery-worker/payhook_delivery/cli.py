"""``payhook-deliveries``: inspect, retry, purge and recover dead letters from a shell."""

from __future__ import annotations

import datetime as dt
import json

import click

from payhook_shared import deadletters
from payhook_shared.store import Store

from .settings import Settings


def _when(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def _filters(f):
    for name in ("until", "since", "category", "endpoint", "merchant"):
        f = click.option(f"--{name}", default=None,
                         help=f"only dead letters with this {name}" + (" (ISO time, UTC)" if name in ("since", "until") else ""))(f)
    return f


def _filter(merchant, endpoint, category, since, until) -> deadletters.Filter:
    return deadletters.Filter(merchant_id=merchant, endpoint_id=endpoint, category=category,
                              since=_when(since), until=_when(until))


@click.group()
@click.version_option(package_name="payhook-delivery-worker", prog_name="payhook-deliveries")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Operate on Payhook's dead letters (uses DATABASE_URL)."""
    ctx.obj = Store(Settings.from_env().database_url)
    ctx.call_on_close(ctx.obj.dispose)


@main.group()
def dead() -> None:
    """Dead letters: deliveries that ran out of attempts."""


@dead.command("list")
@_filters
@click.option("--limit", default=50, show_default=True)
@click.option("--after", default=None, help="continue after this delivery id")
@click.pass_obj
def list_(store: Store, merchant, endpoint, category, since, until, limit, after) -> None:
    """List dead letters, newest first, one JSON object per line."""
    with store.read() as session:
        for d in deadletters.list_dead(session, _filter(merchant, endpoint, category, since, until), limit, after):
            click.echo(json.dumps({"id": d.id, "event_id": d.event_id, "endpoint_id": d.endpoint_id,
                                   "merchant_id": d.merchant_id, "attempts": d.attempts,
                                   "category": d.last_category, "status": d.last_status, "error": d.last_error,
                                   "dead_at": d.dead_at.isoformat() if d.dead_at else None}))


@dead.command()
@click.argument("delivery_id")
@click.pass_obj
def show(store: Store, delivery_id: str) -> None:
    """Show one delivery with every attempt."""
    with store.read() as session:
        d = deadletters.inspect(session, delivery_id)
        if d is None:
            raise click.ClickException(f"no delivery {delivery_id}")
        click.echo(json.dumps({
            "id": d.id, "state": d.state, "event_id": d.event_id, "type": d.event.type,
            "endpoint_id": d.endpoint_id, "attempts": [
                {"number": a.number, "started_at": a.started_at.isoformat(), "duration_ms": a.duration_ms,
                 "status": a.status_code, "category": a.category, "error": a.error,
                 "response": a.response_snippet} for a in d.attempt_log],
        }, indent=2))


@dead.command()
@click.argument("delivery_ids", nargs=-1, required=True)
@click.pass_obj
def retry(store: Store, delivery_ids: tuple[str, ...]) -> None:
    """Retry the given dead letters now, with a fresh schedule."""
    with store.write() as session:
        click.echo(f"{deadletters.retry(session, delivery_ids)} dead letter(s) queued for retry")


@dead.command("retry-all")
@_filters
@click.pass_obj
def retry_all(store: Store, merchant, endpoint, category, since, until) -> None:
    """Retry every dead letter matching the filters."""
    count = deadletters.retry_matching(store, _filter(merchant, endpoint, category, since, until))
    click.echo(f"{count} dead letter(s) queued for retry")


@dead.command()
@_filters
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
@click.pass_obj
def purge(store: Store, merchant, endpoint, category, since, until, yes) -> None:
    """Delete dead letters matching the filters, with their attempts."""
    if not yes:
        click.confirm("Delete the matching dead letters for good?", abort=True)
    click.echo(f"{deadletters.purge_matching(store, _filter(merchant, endpoint, category, since, until))} "
               "dead letter(s) purged")


@main.command()
@click.option("--endpoint", required=True, help="endpoint id")
@click.option("--since", required=True, help="ISO time (UTC): deliveries created since then")
@click.pass_obj
def recover(store: Store, endpoint: str, since: str) -> None:
    """Re-deliver every failed delivery of an endpoint since a time."""
    click.echo(f"{deadletters.recover(store, endpoint, _when(since))} delivery(ies) queued for recovery")
