"""The webhook-service Flask application factory."""

from __future__ import annotations

import functools
from typing import Any

from flask import Flask, g, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.utils import cached_property
from werkzeug.wsgi import LimitedStream

from payhook_shared import logs
from payhook_shared.store import Store

from . import (
    c2b, cli, console, drain, errors, ingest, merchants, metrics, params, reconcile, resolve, spool, stream,
)
from .api import (
    callbacks, deliveries, event_types, events, events_read, health, inbound, keys, management, mpesa, openapi,
    quarantine, replays, sources, synthetic,
)
from .api import stream as stream_api
from .broker import broker_for
from .services import daraja
from .settings import Settings
from .source_ip import SourcePolicy


class _BodyLimit(LimitedStream):
    """``MAX_BODY_BYTES`` on a body of unknown length: a body longer than the limit is refused, not cut.

    Werkzeug's own maximum stops reading at the limit and returns what it read, so a chunked body
    (no Content-Length) one byte or 1 MiB over the limit reached the routes cut short and was accepted.
    """

    def on_exhausted(self) -> None:
        # At the limit: a byte more in the stream means the body is over it.
        if self._stream.read(1):
            raise RequestEntityTooLarge()

    def readall(self) -> bytes:
        data = super().readall()
        if self.is_exhausted:
            self.on_exhausted()
        return data


class Request(Flask.request_class):
    """Flask's request, with ``MAX_BODY_BYTES`` enforced on chunked bodies as on those with a Content-Length."""

    @cached_property
    def stream(self):
        """The body stream; one of unknown length (chunked) is refused with 413 past ``max_content_length``."""
        limit = self.max_content_length
        if self.content_length is None and limit is not None and self.environ.get("wsgi.input_terminated"):
            return _BodyLimit(self.environ["wsgi.input"], limit, is_max=True)
        return super().stream


def create_app(config: dict[str, Any] | Settings | None = None) -> Flask:
    """Build the app; ``config`` is a ``Settings`` or a dict of setting overrides."""
    settings = config if isinstance(config, Settings) else Settings.from_env(**(config or {}))
    logs.configure("webhook-service", settings.log_format, settings.log_level)

    app = Flask(__name__)
    app.request_class = Request
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False
    app.extensions["payhook.settings"] = settings
    app.extensions["payhook.store"] = Store(settings.database_url, pool_size=settings.db_pool_size,
                                          prepared=settings.db_prepared_statements)
    app.extensions["payhook.merchants"] = merchants.Directory(app.extensions["payhook.store"])
    app.extensions["payhook.broker"] = broker_for(settings)
    app.extensions["payhook.recorder"] = ingest.Recorder(app.extensions["payhook.store"],
                                                         app.extensions["payhook.broker"])
    app.extensions["payhook.stream_hub"] = stream.Hub(settings.redis_url, settings.stream_buffer)
    app.extensions["payhook.stream_frames"] = stream.Frames(app.extensions["payhook.store"])
    # A stream shows life at least every heartbeat; three missed and its slot is free again.
    app.extensions["payhook.stream_slots"] = stream.StreamSlots(
        app.extensions["payhook.broker"].client, settings.stream_max_per_key, 3 * settings.stream_heartbeat_seconds)
    app.extensions["payhook.http"] = c2b.http_pool()
    app.extensions["payhook.source_policy"] = SourcePolicy.from_settings(settings)
    app.extensions["payhook.daraja"] = daraja.build_client(settings, app.extensions["payhook.broker"].client)

    @app.before_request
    def _correlate() -> None:
        g.request_id = logs.correlation_id(request.headers.get("X-Request-ID"))
        g.log_token = logs.push(correlation_id=g.request_id)

    # After _correlate, so the refusal carries the request id too.
    app.before_request(params.refuse_nul)

    @app.teardown_request
    def _uncorrelate(_exc: BaseException | None) -> None:
        token = g.pop("log_token", None)
        if token is not None:
            logs.pop(token)

    @app.after_request
    def _echo_request_id(response):
        response.headers["X-Request-ID"] = g.get("request_id", "")
        return response

    errors.register(app)
    metrics.register(app, settings.queue_stats_ttl)
    app.extensions["payhook.queue_registry"].register(
        metrics.SpoolWaiting(functools.partial(spool.waiting, app.extensions["payhook.broker"].client)))
    # Started by gunicorn in each web process (gunicorn_conf.post_worker_init), never at import or in tests.
    app.extensions["payhook.spool_drainer"] = drain.Drainer(app, settings.spool_drain_interval)
    policy = reconcile.policy_of(settings)
    app.extensions["payhook.status_checks"] = resolve.StatusChecks(app, policy)
    app.extensions["payhook.reconciler"] = reconcile.Reconciler(
        app, settings.reconcile_interval, policy, also=(app.extensions["payhook.status_checks"].tick,))
    app.register_blueprint(health.bp)
    app.register_blueprint(callbacks.bp)
    app.register_blueprint(management.bp)
    app.register_blueprint(event_types.bp)
    app.register_blueprint(keys.bp)
    app.register_blueprint(events.bp)
    app.register_blueprint(events_read.bp)
    app.register_blueprint(replays.bp)
    app.register_blueprint(deliveries.bp)
    app.register_blueprint(synthetic.bp)
    app.register_blueprint(stream_api.bp)
    app.register_blueprint(sources.bp)
    app.register_blueprint(inbound.bp)
    app.register_blueprint(quarantine.bp)
    app.register_blueprint(mpesa.bp)
    app.register_blueprint(openapi.bp)
    console.init_app(app)
    app.register_blueprint(console.bp)
    cli.register(app)
    return app
