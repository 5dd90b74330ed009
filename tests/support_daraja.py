"""A small Daraja stand-in for tests: a real HTTP server answering Daraja-shaped JSON and counting requests.

Kept apart so the local Daraja sandbox (issue #23 item 5) can replace it. It checks what the real
Daraja checks that matters here: Basic auth on OAuth, the Bearer token on every other call, and the
STK Push password (base64 of shortcode, passkey and timestamp).
"""

from __future__ import annotations

import base64
import collections
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

import redis as redis_lib

from payhook_shared.daraja import client as daraja_client
from payhook_shared.daraja.credentials import DarajaCredentials
from support import PeerServer, serving

CONSUMER_KEY = "test-consumer-key-5f1c"
CONSUMER_SECRET = "test-consumer-secret-9a7e"
PASSKEY = "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919"
SHORTCODE = "174379"


def credentials(cache_id: str = "dcr_1:1", key: str = CONSUMER_KEY) -> DarajaCredentials:
    """Credentials this server accepts (``key`` another consumer key to be refused)."""
    return DarajaCredentials(cache_id=cache_id, environment="sandbox", shortcode=SHORTCODE, consumer_key=key,
                             consumer_secret=CONSUMER_SECRET, passkey=PASSKEY, initiator_name="testapi",
                             security_credential="c2VjdXJpdHk=")


def token_in_process(url: str, redis_url: str, out) -> None:
    """In a process of its own: ask a new client for the token of ``credentials()`` and put it in ``out``."""
    client = daraja_client.DarajaClient({"sandbox": url}, redis_lib.Redis.from_url(redis_url))
    out.put(client.access_token(credentials()))


class FakeDaraja:
    """Daraja on 127.0.0.1: OAuth, STK Push, STK Query and Transaction Status.

    ``counts`` holds requests per path; ``scripted[path]`` is a list of ``(status, body)`` answers
    given first, in order; ``delay[path]`` seconds are slept before answering (a slow Daraja);
    ``token_lifetime`` is each token's ``expires_in``.
    """

    def __init__(self, token_lifetime: int = 3599):
        self.token_lifetime = token_lifetime
        self.counts: collections.Counter[str] = collections.Counter()
        self.scripted: dict[str, list[tuple[int, dict]]] = collections.defaultdict(list)
        self.delay: dict[str, float] = {}
        self.tokens: set[str] = set()
        self.requests: list[tuple[str, dict, dict]] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self, status: int, body: dict) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _handle(self) -> None:
                path = urlsplit(self.path).path
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length)) if length else {}
                with fake._lock:
                    fake.counts[path] += 1
                    fake.requests.append((path, dict(self.headers), body))
                    scripted = fake.scripted[path].pop(0) if fake.scripted[path] else None
                if fake.delay.get(path):
                    time.sleep(fake.delay[path])
                if scripted is not None:
                    self._answer(*scripted)
                else:
                    self._answer(*fake.answer(path, self.headers.get("Authorization", ""), body))

            do_GET = do_POST = _handle  # noqa: N815

            def log_message(self, *args) -> None:
                pass

        self.server = PeerServer(("127.0.0.1", 0), Handler)
        self.thread = serving(self.server)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> "FakeDaraja":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.close()

    def count(self, path: str) -> int:
        """Requests received on ``path`` (without its query string)."""
        with self._lock:
            return self.counts[path]

    def answer(self, path: str, authorization: str, body: dict) -> tuple[int, dict]:
        """What Daraja answers, unscripted."""
        request_id = f"req-{secrets.token_hex(4)}"
        if path == "/oauth/v1/generate":
            expected = base64.b64encode(f"{CONSUMER_KEY}:{CONSUMER_SECRET}".encode()).decode()
            if authorization != f"Basic {expected}":
                return 400, {"requestId": request_id, "errorCode": "400.008.01",
                             "errorMessage": "Invalid Authentication passed"}
            token = secrets.token_hex(14)
            with self._lock:
                self.tokens.add(token)
            return 200, {"access_token": token, "expires_in": str(self.token_lifetime)}
        if not authorization.startswith("Bearer ") or authorization[7:] not in self.tokens:
            return 401, {"requestId": request_id, "errorCode": "404.001.03", "errorMessage": "Invalid Access Token"}
        if path == daraja_client.STK_PUSH_PATH:
            expected = daraja_client.password(SHORTCODE, PASSKEY, str(body.get("Timestamp")))
            if body.get("Password") != expected or body.get("BusinessShortCode") != SHORTCODE:
                return 400, {"requestId": request_id, "errorCode": "400.002.02",
                             "errorMessage": "Bad Request - Invalid Password"}
            if not str(body.get("PhoneNumber", "")).startswith("254"):
                return 400, {"requestId": request_id, "errorCode": "400.002.02",
                             "errorMessage": "Bad Request - Invalid PhoneNumber"}
            return 200, {"MerchantRequestID": f"29115-{secrets.token_hex(4)}",
                         "CheckoutRequestID": f"ws_CO_{secrets.token_hex(8)}", "ResponseCode": "0",
                         "ResponseDescription": "Success. Request accepted for processing",
                         "CustomerMessage": "Success. Request accepted for processing"}
        if path == daraja_client.STK_QUERY_PATH:
            return 200, {"ResponseCode": "0", "ResponseDescription": "The service request has been accepted",
                         "MerchantRequestID": "29115-1", "CheckoutRequestID": body.get("CheckoutRequestID"),
                         "ResultCode": "0", "ResultDesc": "The service request is processed successfully."}
        if path == daraja_client.TRANSACTION_STATUS_PATH:
            return 200, {"OriginatorConversationID": "1", "ConversationID": "AG_1", "ResponseCode": "0",
                         "ResponseDescription": "Accept the service request successfully."}
        return 404, {"requestId": request_id, "errorCode": "404.000.01", "errorMessage": "Resource not found"}
