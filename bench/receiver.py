"""A small threaded webhook receiver, used when nginx is not installed.

Answers 200 to every POST and appends ``<epoch seconds> <webhook-id> 200`` per
request to a log file, the same format the bench's nginx writes.
"""

from __future__ import annotations

import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def serve(port: int, log_path: str) -> None:
    """Serve on 127.0.0.1:``port`` until killed."""
    lock = threading.Lock()
    log = open(log_path, "a", buffering=1)  # noqa: SIM115 (open for the server's lifetime)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out as two writes: without this, Nagle holds the body for the peer's delayed ACK (40 ms).
        disable_nagle_algorithm = True

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            self.rfile.read(int(self.headers.get("content-length", 0)))
            with lock:
                log.write(f"{time.time():.3f} {self.headers.get('webhook-id', '-')} 200\n")
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", "11")
            self.end_headers()
            self.wfile.write(b'{"ok":true}')

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the webhook log is the record."""

    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    serve(int(sys.argv[1]), sys.argv[2])
