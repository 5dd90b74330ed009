"""The demo merchant's webhook receiver for ``make run``.

It verifies each webhook's Standard Webhooks signature with the demo
endpoint's secret (read from ``var/demo.json``), logs what arrived, and
appends one JSON line per webhook to ``var/receiver.jsonl``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from payhook_shared import signing
from payhook_shared.logs import mask_phone

DEMO = Path(os.environ.get("PAYHOOK_DEMO_FILE", "var/demo.json"))
RECEIVED = Path(os.environ.get("PAYHOOK_RECEIVER_LOG", "var/receiver.jsonl"))
PORT = int(os.environ.get("PAYHOOK_RECEIVER_PORT", "8641"))

log = logging.getLogger("demo-receiver")


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        secret = json.loads(DEMO.read_text())["endpoint_secret"]
        try:
            signing.verify(secret, dict(self.headers), body)
        except signing.SignatureError as exc:
            log.warning("REJECTED webhook %s: %s", self.headers.get("webhook-id"), exc)
            self.send_response(401)
            self.end_headers()
            return
        event = json.loads(body)
        data = event["data"]
        log.info("verified webhook %s: %s %s %s %s from %s", event["id"], event["type"], data["status"],
                 data["currency"], data["amount"], mask_phone(data["phone"]))
        with RECEIVED.open("a") as fh:
            fh.write(json.dumps({"received_at": time.time(), "webhook_id": event["id"], "verified": True,
                                 "type": event["type"], "status": data["status"]}) + "\n")
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"ok":true}')

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the handler logs what matters."""


def main() -> None:
    """Serve on 127.0.0.1:$PAYHOOK_RECEIVER_PORT until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)-5s demo-receiver: %(message)s")
    server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    log.info("listening on http://127.0.0.1:%d/webhooks", PORT)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
