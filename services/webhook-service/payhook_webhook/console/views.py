"""The console's pages and forms.

Reads go through ``queries`` with the signed-in key's ``Scope``; every change
posts a form carrying the CSRF token, is recorded in the audit log in the same
transaction where it can be, then redirects (post/redirect/get) with a flash
message saying what happened.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from typing import Any
from urllib.parse import urlencode

from flask import (
    Blueprint, current_app, flash, g, make_response, redirect, render_template, request, url_for,
)
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from payhook_shared import addresses, catalog, deadletters, ids, signing
from payhook_shared import merchant_settings
from payhook_shared.priority import Priority
from payhook_shared.daraja.credentials import ENVIRONMENTS, SECRET_FIELDS
from payhook_shared.store import Endpoint, IntentState, JobState, Merchant, PaymentIntent, QuarantinedCallback
from payhook_shared.store.models import utcnow

from .. import audit, auth, params, quarantine
from ..errors import Forbidden, InvalidPayload, NotFound, WebhookServiceError
from ..schemas import (
    DEFAULT_GRACE_SECONDS, MAX_GRACE_SECONDS, DarajaCredentialsSchema, EndpointCreateSchema, EndpointUpdateSchema,
    MerchantUpdateSchema, load,
)
from ..services import daraja, replays
from ..services.common import page
from ..services.endpoints import (
    WINDOWS, add_endpoint, circuit_state, edit_endpoint, rotate_endpoint_secret, window_stats,
)
from ..services.events import send_test, test_types
from ..services.merchants import callback_urls, change_merchant, change_settings
from . import links, queries, security, settings_form
from .queries import Scope

log = logging.getLogger(__name__)

bp = Blueprint("console", __name__, url_prefix="/console", template_folder="templates",
               static_folder="static", static_url_path="/static")
bp.after_request(security.security_headers)

OPEN = {"console.login", "console.request_link", "console.link", "console.use_link", "console.static"}
STATUSES = ("succeeded", "failed", "unknown")
# A delivery's states: "suppressed" is for emails only.
STATES = tuple(s.value for s in JobState if s is not JobState.SUPPRESSED)
QUARANTINE_STATES = (quarantine.QUARANTINED, quarantine.RESOLVED)
INTENT_STATES = tuple(s.value for s in IntentState)
INTENT_SOURCES = (daraja.API, daraja.REGISTERED)
GRACE_CHOICES = ((0, "none: retire the old secret now"), (3600, "1 hour"),
                 (DEFAULT_GRACE_SECONDS, "24 hours"), (MAX_GRACE_SECONDS, "7 days"))
_PHONE_SUFFIX = re.compile(r"^[0-9]{1,15}$")
_TEXT_LIMIT = 200


@bp.before_request
def _guard():
    security.check_csrf()
    if request.endpoint in OPEN:
        return None
    principal = security.load_principal()
    if principal is None:
        return redirect(url_for("console.login"))
    g.console_principal = principal
    return None


@bp.context_processor
def _globals() -> dict[str, Any]:
    return {"csrf_token": security.csrf_token, "principal": g.get("console_principal"),
            "priority_label": lambda value: Priority(value).label, "when": _when}


@bp.errorhandler(WebhookServiceError)
def _service_error(exc: WebhookServiceError):
    return render_template("console/error.html", status=exc.status, message=exc.message), exc.status


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException):
    return render_template("console/error.html", status=exc.code, message=exc.description), exc.code


def _when(value: dt.datetime | None) -> str:
    """A timestamp as the console shows it: UTC, to the second."""
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "—"


def _store():
    return current_app.extensions["payhook.store"]


def _scope() -> Scope:
    return Scope.of(security.current())


def _text(source, name: str) -> str:
    value = (source.get(name) or "").strip()
    if len(value) > _TEXT_LIMIT:
        raise InvalidPayload(f"{name}: must be at most {_TEXT_LIMIT} characters")
    return value


def _time(source, name: str) -> dt.datetime | None:
    """A date or date-time field (``2026-11-01`` or ``2026-11-01T08:30``), read as UTC."""
    value = _text(source, name)
    return params.parse_time(name, value) if value else None


def _choice(source, name: str, allowed: tuple[str, ...]) -> str:
    value = _text(source, name)
    if value and value not in allowed:
        raise InvalidPayload(f"{name}: must be one of {', '.join(allowed)}")
    return value


def _event_filters(source) -> dict[str, Any]:
    phone = _text(source, "phone")
    if phone and not _PHONE_SUFFIX.match(phone):
        raise InvalidPayload("phone: give the last digits of the phone number, digits only")
    return {"merchant": _text(source, "merchant"), "type": _text(source, "type"),
            "status": _choice(source, "status", STATUSES), "q": _text(source, "q"), "phone": phone,
            "since": _time(source, "since"), "until": _time(source, "until")}


def _dead_filters(source) -> dict[str, Any]:
    return {"merchant": _text(source, "merchant"), "endpoint": _text(source, "endpoint"),
            "category": _text(source, "category"), "since": _time(source, "since"),
            "until": _time(source, "until")}


def _query_args(filters: dict[str, Any]) -> dict[str, str]:
    """Filters as the query string of a link (times back in the form they were typed)."""
    return {k: (v.strftime("%Y-%m-%dT%H:%M") if isinstance(v, dt.datetime) else v)
            for k, v in filters.items() if v}


def _filtered_url(view: str, filters: dict[str, Any]) -> str:
    """A list page's address with ``filters`` as its query (not through url_for: a filter is named ``endpoint``)."""
    args = _query_args(filters)
    return f"{url_for(view)}?{urlencode(args)}" if args else url_for(view)


def _audited(action: str, target: str = "", **details: Any) -> None:
    with _store().write() as session:
        audit.record(session, security.current(), action, target, **details)


# Sign-in ---------------------------------------------------------------------------------------

@bp.route("/login", methods=["GET", "POST"])
def login():
    """Exchange an API key for a console session."""
    if request.method == "GET":
        return render_template("console/login.html")
    security.count_login_attempt()
    key = request.form.get("api_key", "").strip()
    try:
        principal = auth.authenticate(_store(), f"Bearer {key}")
    except WebhookServiceError as exc:
        log.warning("console sign-in refused from %s: %s", security.client_address(), exc.message)
        return render_template("console/login.html", error=exc.message), exc.status
    security.sign_in(principal)
    with _store().write() as session:
        audit.record(session, principal, "sign_in", principal.merchant_id or "admin", method="api_key",
                     address=security.client_address())
    return redirect(url_for("console.overview"))


def _sent_page():
    settings = current_app.extensions["payhook.settings"]
    return render_template("console/login.html", sent=True, minutes=settings.console_link_minutes)


@bp.post("/login/email")
def request_link():
    """Email a sign-in link to an address that may sign in; the answer is the same for any address."""
    security.count_login_attempt()
    email = (request.form.get("email") or "").strip()
    if not addresses.is_valid(email):
        return render_template("console/login.html", link_error="Enter an email address, such as you@shop.example.",
                               email=email[:links.MAX_EMAIL_LENGTH]), 400
    app = current_app._get_current_object()
    address = security.client_address()
    response = make_response(_sent_page())

    @response.call_on_close
    def _send() -> None:
        # After the answer has gone, so its timing cannot tell a known address from an unknown one.
        try:
            links.send(app.extensions["payhook.store"], app.extensions["payhook.broker"],
                       app.extensions["payhook.settings"], email, address)
        except Exception:
            log.exception("sign-in link could not be sent")

    return response


@bp.get("/sign-in/<token>")
def link(token: str):
    """Show what an emailed link signs in to, with the button that uses it (opening it spends nothing)."""
    try:
        found = links.find(_store(), current_app.extensions["payhook.settings"], token)
    except links.LinkRefused as exc:
        return render_template("console/login.html", error=exc.message), exc.status
    merchant = None
    if found.merchant_id:
        with _store().read() as session:
            merchant = session.get(Merchant, found.merchant_id)
    return render_template("console/link.html", link=found, merchant=merchant, token=token)


@bp.post("/sign-in/<token>")
def use_link(token: str):
    """Spend an emailed link and start a session for its account."""
    security.count_login_attempt()
    try:
        used = links.consume(_store(), current_app.extensions["payhook.settings"], token)
    except links.LinkRefused as exc:
        log.warning("console sign-in link refused from %s: %s", security.client_address(), exc.message)
        return render_template("console/login.html", error=exc.message), exc.status
    principal = security.sign_in_by_link(used)
    with _store().write() as session:
        audit.record(session, principal, "sign_in", principal.merchant_id or "admin", method="email_link",
                     email=used.email, address=security.client_address())
    return redirect(url_for("console.overview"))


@bp.post("/logout")
def logout():
    """End the session."""
    _audited("sign_out")
    security.sign_out()
    return redirect(url_for("console.login"))


# Pages -----------------------------------------------------------------------------------------

@bp.get("/")
def overview():
    """The last 24 hours at a glance."""
    with _store().read() as session:
        stats = queries.overview(session, _scope())
        peak = max((n for _, n in stats["chart"]), default=0)
        return render_template("console/overview.html", stats=stats, peak=peak)


@bp.get("/events")
def events():
    """Events, filtered and paginated."""
    filters = _event_filters(request.args)
    scope = _scope()
    with _store().read() as session:
        rows, next_after = queries.events(session, scope, filters, request.args.get("after"))
        types = queries.event_types(session, scope)
        if filters["type"] and filters["type"] not in types:
            types.append(filters["type"])
        return render_template("console/events.html", rows=rows, next_after=next_after, filters=filters,
                               args=_query_args(filters), types=types,
                               statuses=STATUSES, merchants=queries.merchants(session, scope))


def _pretty(raw: str) -> str:
    """The raw payload pretty-printed when it is JSON, verbatim otherwise (escaped by the template)."""
    try:
        return json.dumps(json.loads(raw), indent=2, ensure_ascii=False)
    except ValueError:
        return raw


@bp.get("/events/<event_id>")
def event(event_id: str):
    """One event: normalised fields, raw payload and its deliveries."""
    with _store().read() as session:
        row = queries.event(session, _scope(), event_id)
        return render_template("console/event.html", event=row, raw=_pretty(row.raw_payload),
                               details=json.dumps(row.details or {}, indent=2, ensure_ascii=False),
                               provider_ids=json.dumps(row.provider_ids or {}, indent=2, ensure_ascii=False))


@bp.post("/events/<event_id>/resend")
def resend_event(event_id: str):
    """Deliver an event again, to one endpoint or to every endpoint that takes it (same ``webhook-id``)."""
    with _store().write() as session:
        resent = replays.resend_event(session, _scope(), security.current(), event_id,
                                         _text(request.form, "endpoint") or None)
    queued = [ep for ep, outcome in resent.endpoints.items() if outcome == "queued"]
    flash(f"Resend queued to {', '.join(queued)}: delivered within seconds, with the same webhook-id."
          if queued else "Nothing to resend: the event is being delivered right now.")
    return redirect(url_for("console.event", event_id=event_id))


@bp.get("/deliveries")
def deliveries():
    """Deliveries, by state, endpoint or event."""
    filters = {"state": _choice(request.args, "state", STATES), "endpoint": _text(request.args, "endpoint"),
               "event": _text(request.args, "event")}
    with _store().read() as session:
        rows, next_after = queries.deliveries(session, _scope(), filters, request.args.get("after"))
        return render_template("console/deliveries.html", rows=rows, next_after=next_after, filters=filters,
                               args=_query_args(filters), states=STATES)


@bp.get("/deliveries/<delivery_id>")
def delivery(delivery_id: str):
    """One delivery with every attempt as a timeline."""
    with _store().read() as session:
        row = queries.delivery(session, _scope(), delivery_id)
        return render_template("console/delivery.html", delivery=row)


@bp.post("/deliveries/<delivery_id>/retry")
def retry_delivery(delivery_id: str):
    """Send one delivery again now."""
    with _store().write() as session:
        changed = queries.retry_now(session, _scope(), delivery_id)
        if changed:
            audit.record(session, security.current(), "retry", delivery_id)
    flash("Retry queued: the delivery will be attempted within seconds." if changed
          else "Nothing to retry: the delivery is delivered or being attempted right now.")
    return redirect(url_for("console.delivery", delivery_id=delivery_id))


@bp.get("/dead-letters")
def dead_letters():
    """Dead letters, filtered, with retry, recover and purge."""
    filters = _dead_filters(request.args)
    scope = _scope()
    with _store().read() as session:
        rows, next_after = queries.dead_letters(session, queries.dead_filter(scope, filters),
                                                request.args.get("after"))
        return render_template("console/dead_letters.html", rows=rows, next_after=next_after,
                               filters=filters, args=_query_args(filters),
                               endpoints=queries.endpoints(session, scope),
                               merchants=queries.merchants(session, scope))


@bp.post("/dead-letters/retry")
def retry_dead_letters():
    """Retry the selected dead letters, or every one matching the filters."""
    scope = _scope()
    filters = _dead_filters(request.form)
    if request.form.get("which") == "matching":
        count = deadletters.retry_matching(_store(), queries.dead_filter(scope, filters))
        _audited("retry_all", "dead-letters", count=count, **_query_args(filters))
    else:
        chosen = request.form.getlist("delivery_id")[:queries.PAGE]
        with _store().write() as session:
            count = queries.retry_selected(session, scope, chosen)
            audit.record(session, security.current(), "retry_selected", "dead-letters", count=count,
                         deliveries=chosen)
    flash(f"{count} dead letter{'s' if count != 1 else ''} put back in line for delivery.")
    return redirect(_filtered_url("console.dead_letters", filters))


@bp.post("/dead-letters/purge")
def purge_dead_letters():
    """Delete every dead letter matching the filters, once confirmed."""
    filters = _dead_filters(request.form)
    if request.form.get("confirm") != "yes":
        raise InvalidPayload("confirm: tick the box to confirm the purge; purged dead letters cannot be recovered")
    count = deadletters.purge_matching(_store(), queries.dead_filter(_scope(), filters))
    _audited("purge", "dead-letters", count=count, **_query_args(filters))
    flash(f"{count} dead letter{'s' if count != 1 else ''} purged.")
    return redirect(_filtered_url("console.dead_letters", filters))


@bp.post("/dead-letters/recover")
def recover_endpoint():
    """Re-deliver every failed delivery of an endpoint created since a time."""
    endpoint_id = _text(request.form, "endpoint")
    since = _time(request.form, "since")
    if not endpoint_id or since is None:
        raise InvalidPayload("recover needs an endpoint and a since time")
    with _store().read() as session:
        queries.endpoint(session, _scope(), endpoint_id)
    count = deadletters.recover(_store(), endpoint_id, since)
    _audited("recover", endpoint_id, count=count, since=since.isoformat())
    flash(f"{count} failed {'delivery' if count == 1 else 'deliveries'} of {endpoint_id} put back in line.")
    return redirect(url_for("console.dead_letters"))


@bp.get("/quarantine")
def quarantined_list():
    """Callbacks on a valid URL that failed validation, newest first, with what was wrong."""
    scope = _scope()
    filters = {"merchant": _text(request.args, "merchant"),
               "state": _choice(request.args, "state", QUARANTINE_STATES) if "state" in request.args
               else quarantine.QUARANTINED}
    with _store().read() as session:
        rows, next_after = quarantine.page(session, scope.merchant_filter(filters["merchant"]), filters["state"],
                                           request.args.get("after"), queries.PAGE)
        return render_template("console/quarantine.html", rows=rows, next_after=next_after, filters=filters,
                               args={**_query_args(filters), "state": filters["state"]},
                               states=QUARANTINE_STATES, merchants=queries.merchants(session, scope))


def _quarantined(session, quarantine_id: str):
    row = session.get(QuarantinedCallback, quarantine_id)
    # Another merchant's callback is answered as an unknown one.
    if row is None or _scope().merchant_filter(row.merchant_id) != row.merchant_id:
        raise NotFound(f"no quarantined callback {quarantine_id}")
    return row


@bp.get("/quarantine/<quarantine_id>")
def quarantined(quarantine_id: str):
    """One quarantined callback: the error, the headers kept and the raw body."""
    with _store().read() as session:
        row = _quarantined(session, quarantine_id)
        text = quarantine.body_text(row)
        return render_template("console/quarantined.html", row=row,
                               body=_pretty(text) if text is not None else None,
                               body_hex=row.body[:4096].hex(" ") if text is None else None,
                               fields=json.dumps(row.error_fields or {}, indent=2, ensure_ascii=False))


@bp.post("/quarantine/<quarantine_id>/reprocess")
def reprocess_quarantined(quarantine_id: str):
    """Validate and record a quarantined callback again, as a live one."""
    with _store().read() as session:
        _quarantined(session, quarantine_id)
    outcome = quarantine.reprocess(quarantine_id)
    _audited("reprocess", quarantine_id, state=outcome.state, event_id=outcome.event_id)
    if outcome.state == quarantine.RESOLVED:
        flash(f"Recorded as event {outcome.event_id}" + (" (it had already been recorded)." if outcome.duplicate
                                                          else "."))
    else:
        flash(f"Still invalid: {outcome.error}")
    return redirect(url_for("console.quarantined", quarantine_id=quarantine_id))


@bp.get("/endpoints")
def endpoints():
    """Endpoints with their health, and the form to add one."""
    scope = _scope()
    with _store().read() as session:
        return render_template("console/endpoints.html", rows=queries.endpoints(session, scope),
                               merchants=queries.merchants(session, scope), now=utcnow(),
                               grace_choices=GRACE_CHOICES, test_types=test_types(),
                               catalog_types=catalog.selectable(), show_headers=settings_form.show_headers)


@bp.get("/endpoints/<endpoint_id>")
def endpoint_page(endpoint_id: str):
    """One endpoint: its health over the last hour and day, its replays, and the form to start one."""
    now = utcnow()
    with _store().read() as session:
        endpoint = queries.endpoint(session, _scope(), endpoint_id)
        stats = {name: window_stats(session, endpoint.id, now - span)
                 for name, span in WINDOWS.items()}
        recent = [replays.replay_json(r) for r in replays.recent_replays(session, endpoint.id)]
        return render_template("console/endpoint.html", endpoint=endpoint, stats=stats, replays=recent,
                               circuit=circuit_state(endpoint, now))


@bp.post("/endpoints/<endpoint_id>/replay")
def replay_endpoint(endpoint_id: str):
    """Deliver to the endpoint every matching event received in a range, in the background."""
    types = [t.strip() for t in _text(request.form, "types").split(",") if t.strip()]
    form = {"since": _time(request.form, "since"), "until": _time(request.form, "until"), "types": types or None,
            "only_failed": request.form.get("only_failed") == "yes"}
    if form["since"] is None:
        raise InvalidPayload("since: give the time the replay starts from")
    if form["until"] is not None and form["until"] <= form["since"]:
        raise InvalidPayload("until: must be after since")
    with _store().write() as session:
        replay, message = replays.start_replay(session, _scope(), security.current(), endpoint_id, form)
        replay_id = replay.id
    replays.send(message)
    flash(f"Replay {replay_id} started: its progress is below.")
    return redirect(url_for("console.endpoint_page", endpoint_id=endpoint_id))


def _secret_page(endpoint: Endpoint, secret: str, created: bool):
    response = make_response(render_template("console/secret.html", endpoint=endpoint, secret=secret,
                                             created=created))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/endpoints")
def create_endpoint():
    """Add an endpoint, validated by the API's schema; its signing secret is shown on the answer page only."""
    scope = _scope()
    body = load(EndpointCreateSchema(), settings_form.read_endpoint(request.form))
    with _store().write() as session:
        merchant = queries.merchant(session, scope, scope.merchant_filter(_text(request.form, "merchant")) or "")
        endpoint = add_endpoint(session, security.current(), merchant, body)
    return _secret_page(endpoint, endpoint.secret, created=True)


@bp.post("/endpoints/<endpoint_id>/test")
def test_endpoint(endpoint_id: str):
    """Send one example event, marked test, to an endpoint, and say how the attempt went."""
    event_type = _text(request.form, "type") or ""
    with _store().read() as session:
        endpoint = queries.endpoint(session, _scope(), endpoint_id)
    outcome = send_test(endpoint.id, endpoint.merchant_id, event_type)
    _audited("test_endpoint", endpoint_id, type=event_type, delivery_id=outcome["delivery_id"])
    if outcome["delivered"]:
        flash(f"Test {event_type} delivered to {endpoint_id}: HTTP {outcome['status']} in {outcome['duration_ms']} merchant_settings.")
    elif outcome["delivered"] is None:
        flash(f"Test {event_type} to {endpoint_id} is still waiting for the delivery-worker "
              f"(delivery {outcome['delivery_id']}).")
    else:
        status = f"HTTP {outcome['status']}" if outcome["status"] is not None else outcome["error"]
        flash(f"Test {event_type} to {endpoint_id} failed: {outcome['category']} ({status}).")
    return redirect(url_for("console.endpoints"))


@bp.post("/endpoints/<endpoint_id>/<action>")
def change_endpoint(endpoint_id: str, action: str):
    """Edit the settings of an endpoint, disable or enable it, or rotate its secret."""
    if action not in ("edit", "disable", "enable", "rotate"):
        raise InvalidPayload(f"unknown action {action}")
    with _store().write() as session:
        endpoint = queries.endpoint(session, _scope(), endpoint_id, for_update=True)
        if action == "edit":
            changes = load(EndpointUpdateSchema(), settings_form.read_endpoint(request.form))
            edit_endpoint(session, security.current(), endpoint, changes)
            flash(f"Settings of endpoint {endpoint_id} saved.")
            return redirect(url_for("console.endpoints"))
        if action == "rotate":
            try:
                grace = int(request.form.get("grace_period_seconds", DEFAULT_GRACE_SECONDS))
            except ValueError:
                grace = -1
            if not 0 <= grace <= MAX_GRACE_SECONDS:
                raise InvalidPayload(f"grace_period_seconds: must be 0 to {MAX_GRACE_SECONDS}")
            secret = rotate_endpoint_secret(endpoint, grace)
            audit.record(session, security.current(), "rotate_secret", endpoint_id, grace_period_seconds=grace)
            session.flush()
            return _secret_page(endpoint, secret, created=False)
        endpoint.enabled = action == "enable"
        audit.record(session, security.current(), action, endpoint_id)
    flash(f"Endpoint {endpoint_id} {action}d.")
    return redirect(url_for("console.endpoints"))


@bp.get("/callback-urls")
def callback_url_list():
    """Each merchant's callback URLs, to paste into Daraja."""
    base = current_app.extensions["payhook.settings"].public_base_url
    with _store().read() as session:
        rows = [(m, callback_urls(base, m)) for m in queries.merchants(session, _scope())]
    return render_template("console/callback_urls.html", rows=rows)


def _settings_page(merchant, merchants, values: dict[str, Any], errors: list[str] | None = None,
                   status: int = 200):
    with _store().read() as session:
        types = queries.event_types(session, Scope(merchant.id))
    page = render_template(
        "console/settings.html", merchant=merchant, merchants=merchants, values=values, errors=errors or [],
        types=types, statuses=STATUSES, priorities=[p.label for p in Priority],
        spare_rules=settings_form.SPARE_RULES, profiles=merchant_settings.RETRY_PROFILES,
        custom=settings_form.CUSTOM, describe=settings_form.describe_schedule, notices=settings_form.NOTICES,
        notice_defaults=merchant_settings.NOTICE_DEFAULTS, receipt=merchant_settings.RECEIPT,
        min_days=merchant_settings.MIN_RETENTION_DAYS, max_days=merchant_settings.MAX_RETENTION_DAYS,
        max_recipients=merchant_settings.MAX_RECIPIENTS, c2b_modes=merchant_settings.C2B_MODES,
        c2b_fallbacks=merchant_settings.C2B_FALLBACKS, c2b_max_pattern=merchant_settings.MAX_PATTERN_LENGTH,
        c2b_max_timeout=merchant_settings.MAX_FORWARD_TIMEOUT)
    return page, status


@bp.get("/settings")
def settings_page():
    """A merchant's settings: priority rules, retry profile, notices, retention and C2B validation."""
    scope = _scope()
    with _store().read() as session:
        merchants = queries.merchants(session, scope)
        chosen = scope.merchant_filter(_text(request.args, "merchant"))
        if chosen is None:
            return render_template("console/settings.html", merchant=None, merchants=merchants)
        merchant = queries.merchant(session, scope, chosen)
        values = merchant_settings.view(merchant.settings)
    return _settings_page(merchant, merchants, values)


@bp.post("/settings")
def save_settings():
    """Validate the settings form with the shared schema; save and audit the sections that changed."""
    scope = _scope()
    chosen = scope.merchant_filter(_text(request.form, "merchant"))
    if chosen is None:
        raise InvalidPayload("merchant: choose a merchant")
    errors: list[str] = []
    with _store().write() as session:
        merchant = queries.merchant(session, scope, chosen)
        stored = merchant_settings.view(merchant.settings)
        wanted = settings_form.read(request.form, stored)
        try:
            allow = current_app.extensions["payhook.settings"].endpoint_allowlist
            changed = settings_form.changes(stored, merchant_settings.load(wanted, allow))
        except ValidationError as exc:
            errors = settings_form.explain(exc.messages)
        else:
            change_settings(session, security.current(), merchant, changed)
    if errors:
        with _store().read() as session:
            merchants = queries.merchants(session, scope)
        return _settings_page(merchant, merchants, wanted, errors, status=400)
    flash(f"Settings of {merchant.name} saved: {', '.join(sorted(changed)).replace('_', ' ')} changed."
          if changed else "Nothing changed.")
    return redirect(url_for("console.settings_page", merchant=merchant.id))


@bp.post("/settings/merchant")
def save_merchant():
    """Change a merchant's name and notification email (an operator may also disable or enable it), audited."""
    scope = _scope()
    chosen = scope.merchant_filter(_text(request.form, "merchant"))
    if chosen is None:
        raise InvalidPayload("merchant: choose a merchant")
    body: dict[str, Any] = {"name": (request.form.get("name") or "").strip(),
                            "notification_email": (request.form.get("notification_email") or "").strip() or None}
    if "enabled" in request.form:
        if not security.current().is_admin:
            raise Forbidden("only an operator may disable or enable a merchant")
        body["enabled"] = request.form["enabled"]
    changes = load(MerchantUpdateSchema(), body)
    with _store().write() as session:
        merchant = queries.merchant(session, scope, chosen)
        change_merchant(session, security.current(), merchant, changes)
    flash(f"Merchant {merchant.name} saved.")
    return redirect(url_for("console.settings_page", merchant=merchant.id))


def _operator() -> auth.Principal:
    """The signed-in operator; merchants may not see or revoke API keys."""
    principal = security.current()
    if not principal.is_admin:
        raise Forbidden("only operators manage API keys")
    return principal


@bp.get("/api-keys")
def api_keys():
    """Every API key (never the key itself) with a button to revoke it; operators only."""
    _operator()
    with _store().read() as session:
        return render_template("console/api_keys.html", rows=auth.list_api_keys(session))


@bp.post("/api-keys/<key_id>/revoke")
def revoke_api_key(key_id: str):
    """Revoke an API key at once; the console sessions it opened end with it. Operators only."""
    principal = _operator()
    with _store().write() as session:
        try:
            key, newly = auth.revoke_api_key(session, key_id)
        except LookupError:
            raise NotFound(f"no API key {key_id}") from None
        if newly:
            audit.record(session, principal, "revoke_api_key", key_id, key_merchant_id=key.merchant_id)
    flash(f"API key {key_id} revoked: it is refused from now on, and its console sessions have ended."
          if newly else f"API key {key_id} was revoked already.")
    return redirect(url_for("console.api_keys"))


@bp.get("/audit")
def audit_log():
    """Who did what, newest first."""
    after = request.args.get("after") or None
    if after is not None and not (after.isascii() and after.isdigit() and len(after) <= 18):
        raise InvalidPayload("after: must be an audit entry number")
    with _store().read() as session:
        rows, next_after = queries.audit_log(session, _scope(), after)
        return render_template("console/audit.html", rows=rows, next_after=next_after)


# Daraja: credentials (write-only) and payment intents ------------------------------------------------------------

def _daraja_page(merchant, merchants, errors: list[str] | None = None, status: int = 200):
    with _store().read() as session:
        summary = daraja.credentials_summary(daraja.stored_credentials(session, merchant.id)) if merchant else None
    return render_template("console/daraja.html", merchant=merchant, merchants=merchants, summary=summary,
                           errors=errors or [], environments=ENVIRONMENTS, secret_fields=SECRET_FIELDS), status


@bp.get("/daraja")
def daraja_page():
    """A merchant's Daraja credentials: which fields are set (never their values), and a form to set them."""
    scope = _scope()
    with _store().read() as session:
        merchants = queries.merchants(session, scope)
        chosen = scope.merchant_filter(_text(request.args, "merchant"))
        merchant = queries.merchant(session, scope, chosen) if chosen else None
    return _daraja_page(merchant, merchants)


@bp.post("/daraja")
def save_daraja():
    """Store the form's Daraja credentials, encrypted; an empty secret field keeps the stored value."""
    scope = _scope()
    chosen = scope.merchant_filter(_text(request.form, "merchant"))
    if chosen is None:
        raise InvalidPayload("merchant: choose a merchant")
    # Secrets are read as typed (not through _text, which trims and caps them) and never shown back.
    body = {name: request.form.get(name) or None for name in DarajaCredentialsSchema.FIELDS}
    try:
        loaded = load(DarajaCredentialsSchema(), body)
        with _store().write() as session:
            merchant = queries.merchant(session, scope, chosen)
            daraja.set_credentials(session, security.current(), merchant, loaded)
    except InvalidPayload as exc:
        with _store().read() as session:
            merchant = queries.merchant(session, scope, chosen)
            merchants = queries.merchants(session, scope)
        fields = exc.fields or {}
        errors = [f"{name}: {' '.join(map(str, messages))}" for name, messages in fields.items()] or [exc.message]
        return _daraja_page(merchant, merchants, errors, status=400)
    flash(f"Daraja credentials of {merchant.name} saved.")
    return redirect(url_for("console.daraja_page", merchant=merchant.id))


@bp.get("/intents")
def intents():
    """Payment intents (STK Pushes awaiting or settled by their callback), filtered."""
    scope = _scope()
    filters = {"merchant": _text(request.args, "merchant"),
               "state": _choice(request.args, "state", INTENT_STATES),
               "source": _choice(request.args, "source", INTENT_SOURCES),
               "checkout": _text(request.args, "checkout"), "reference": _text(request.args, "reference"),
               "since": _time(request.args, "since"), "until": _time(request.args, "until")}
    query_filters = {"merchant_id": scope.merchant_filter(filters["merchant"]), "state": filters["state"],
                     "source": filters["source"], "checkout_request_id": filters["checkout"],
                     "account_reference": filters["reference"], "since": filters["since"],
                     "until": filters["until"]}
    with _store().read() as session:
        found = page(session, daraja.intents_query(query_filters), PaymentIntent.id, lambda row: row,
                     queries.PAGE, request.args.get("after"))
        return render_template("console/intents.html", rows=found["data"], next_after=found["next_after"],
                               filters=filters, args=_query_args(filters), states=INTENT_STATES,
                               sources=INTENT_SOURCES, merchants=queries.merchants(session, scope))
