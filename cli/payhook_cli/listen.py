"""``payhook listen``: a merchant's live stream, forwarded to a local URL, signed as Payhook signs webhooks.

The listener keeps its place in a small state file (the last event forwarded,
the ids of the most recent ones, and the session's signing secret), so a
restart — or a dropped connection — resumes with ``Last-Event-ID`` and neither
loses nor repeats an event. The server sends a resumed stream's last few
seconds again (an event may commit after a later-stamped one); the recent ids
are what drops those repeats.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import datetime as dt
import hashlib
import json
import os
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import requests
from standardwebhooks.webhooks import Webhook

# Ids remembered to drop repeats of a resumed stream: far more than its window ever holds.
RECENT_IDS = 10_000
# Back-off between reconnections, doubling from the first to the last.
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 10.0
# No byte (not even a heartbeat) for this long: the connection is taken as dead.
READ_TIMEOUT = 60.0


class Refused(Exception):
    """The server refused the stream for good (a bad key, an unknown merchant): retrying cannot help."""


@dataclasses.dataclass
class Forwarded:
    """One event forwarded to the local URL."""

    id: str
    type: str
    amount: str | None
    currency: str | None
    status: int | None
    error: str | None
    duration_ms: float


def new_secret() -> str:
    """A Standard Webhooks secret for a listening session: ``whsec_`` + base64 of 24 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


class State:
    """Where a listener stands, kept in one JSON file written atomically after every event."""

    def __init__(self, path: Path):
        self.path = path
        data = json.loads(path.read_text()) if path.exists() else {}
        self.secret: str = data.get("secret") or new_secret()
        self.last_id: str | None = data.get("last_id")
        self.recent: collections.deque[str] = collections.deque(data.get("recent", []), maxlen=RECENT_IDS)
        self._seen = set(self.recent)

    @staticmethod
    def path_for(directory: Path, api_url: str, api_key: str, merchant_id: str | None) -> Path:
        """The state file of one (server, key, merchant): a hash, so the key itself is never written."""
        digest = hashlib.sha256(f"{api_url}\0{api_key}\0{merchant_id or ''}".encode()).hexdigest()[:16]
        return directory / f"listen-{digest}.json"

    def seen(self, event_id: str) -> bool:
        """Whether ``event_id`` was forwarded already."""
        return event_id in self._seen

    def forwarded(self, event_id: str) -> None:
        """Record ``event_id`` as forwarded and save."""
        if len(self.recent) == self.recent.maxlen:
            self._seen.discard(self.recent[0])
        self.recent.append(event_id)
        self._seen.add(event_id)
        self.last_id = event_id
        self.save()

    def save(self) -> None:
        """Write the state (owner-only: it holds the signing secret)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump({"secret": self.secret, "last_id": self.last_id, "recent": list(self.recent)}, out)
        os.replace(tmp, self.path)


def sse_events(response: requests.Response) -> Iterator[dict[str, str]]:
    """The Server-Sent Events of a streamed response, as ``{"id", "event", "data"}``; comments skipped."""
    fields: dict[str, str] = {}
    data: list[str] = []
    for raw in response.iter_lines(chunk_size=None, decode_unicode=True):
        line = raw.rstrip("\r")
        if not line:
            if data:
                yield {**fields, "data": "\n".join(data)}
            fields, data = {}, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data.append(value)
        elif name in ("id", "event"):
            fields[name] = value


class Listener:
    """Reads the stream, forwards each new event once, reconnects with back-off and resumes."""

    def __init__(self, api_url: str, api_key: str, forward_to: str, state: State, *,
                 types: list[str] | None = None, merchant_id: str | None = None,
                 report: Callable[[Forwarded], None], notify: Callable[[str], None]):
        self.api_url = api_url.rstrip("/")
        self.api_key = api_key
        self.forward_to = forward_to
        self.state = state
        self.types = types
        self.merchant_id = merchant_id
        self.report = report
        self.notify = notify
        self.webhook = Webhook(state.secret)
        self.session = requests.Session()

    def run(self) -> None:
        """Listen until interrupted (``KeyboardInterrupt``) or refused (``Refused``)."""
        backoff = BACKOFF_FIRST
        while True:
            try:
                with self._connect() as response:
                    backoff = BACKOFF_FIRST
                    self.notify("connected")
                    for message in sse_events(response):
                        self._handle(message)
                self.notify("stream closed by the server; reconnecting")
            except requests.RequestException as exc:
                self.notify(f"connection lost ({type(exc).__name__}); retrying in {backoff:.1f}s")
                time.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)

    def _connect(self) -> requests.Response:
        params: dict[str, str] = {}
        if self.types:
            params["types"] = ",".join(self.types)
        if self.merchant_id:
            params["merchant_id"] = self.merchant_id
        headers = {"Authorization": f"Bearer {self.api_key}", "Accept": "text/event-stream"}
        if self.state.last_id:
            headers["Last-Event-ID"] = self.state.last_id
        response = self.session.get(f"{self.api_url}/v1/stream", params=params, headers=headers, stream=True,
                                    timeout=(10, READ_TIMEOUT))
        if response.status_code in (400, 401, 403, 404):
            response.close()
            if response.status_code == 404 and self.state.last_id:
                # The event resumed from is gone (purged): start again from now, losing nothing that still exists.
                self.notify(f"event {self.state.last_id} is no longer stored; listening from now")
                self.state.last_id = None
                return self._connect()
            raise Refused(f"{response.status_code}: {_error_text(response)}")
        response.raise_for_status()
        return response

    def _handle(self, message: dict[str, str]) -> None:
        event = json.loads(message["data"])
        if self.state.seen(event["id"]):
            return
        done = self.forward(event)
        # Saved before it is reported: a line printed is an event a restart will not send again.
        self.state.forwarded(event["id"])
        self.report(done)

    def forward(self, event: dict[str, Any]) -> Forwarded:
        """POST ``event``'s webhook body to the local URL, signed with the session's secret."""
        body = event["body"]
        timestamp = dt.datetime.now(dt.timezone.utc)
        signature = self.webhook.sign(event["id"], timestamp, body)
        headers = {**event["headers"], "webhook-timestamp": str(int(timestamp.timestamp())),
                   "webhook-signature": signature, "user-agent": "payhook-cli"}
        data = json.loads(body).get("data", {})
        started = time.monotonic()
        status, error = None, None
        try:
            answer = self.session.post(self.forward_to, data=body.encode(), headers=headers, timeout=30)
            status = answer.status_code
        except requests.RequestException as exc:
            error = type(exc).__name__
        return Forwarded(event["id"], event["type"], data.get("amount"), data.get("currency"), status, error,
                         (time.monotonic() - started) * 1000)


def _error_text(response: requests.Response) -> str:
    try:
        return response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return response.text[:200]
