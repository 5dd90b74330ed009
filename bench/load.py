"""Load: wrk runs for throughput, and a steady Python sender that remembers every answer."""

from __future__ import annotations

import dataclasses
import http.client
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

LUA = Path(__file__).with_name("lua") / "callbacks.lua"


def callback_body(kind: str, ref: str) -> bytes:
    """One callback body, unique by ``ref``: ``stk`` (succeeded), ``stk_failed`` (1032) or ``balance``."""
    if kind == "balance":
        result = {"ResultType": 0, "ResultCode": 0, "ResultDesc": "ok", "OriginatorConversationID": ref,
                  "ConversationID": f"AG_{ref}", "TransactionID": "OA90000000",
                  "ResultParameters": {"ResultParameter": [
                      {"Key": "AccountBalance", "Value": "Working Account|KES|700000.00|700000.00|0.00|0.00"}]}}
        return json.dumps({"Result": result}).encode()
    callback = {"MerchantRequestID": "29115-34620561-1", "CheckoutRequestID": f"ws_CO_{ref}"}
    if kind == "stk_failed":
        callback.update(ResultCode=1032, ResultDesc="Request cancelled by user")
    else:
        callback.update(ResultCode=0, ResultDesc="The service request is processed successfully.",
                        CallbackMetadata={"Item": [{"Name": "Amount", "Value": 1.0},
                                                   {"Name": "MpesaReceiptNumber", "Value": "NLJ7RT61SV"},
                                                   {"Name": "TransactionDate", "Value": 20191219102115},
                                                   {"Name": "PhoneNumber", "Value": 254708374149}]})
    return json.dumps({"Body": {"stkCallback": callback}}).encode()


@dataclasses.dataclass
class WrkResult:
    """What one wrk run reported."""

    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    errors: int


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk(url: str, *, kind: str = "stk", path: str = "/", seconds: float = 10, connections: int = 16,
        threads: int = 1, limit: int = 0, prefix: str = "bench") -> WrkResult:
    """Run wrk against ``url`` with unique callback bodies; ``limit`` stops after that many requests in all."""
    env = {"WRK_KIND": kind, "WRK_PATH": path, "WRK_PREFIX": prefix,
           "WRK_LIMIT": str(-(-limit // threads) if limit else 0), "PATH": "/usr/bin:/bin:/usr/local/bin"}
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{int(seconds)}s", "--timeout", "10s", "--latency",
         "-s", str(LUA), url],
        capture_output=True, text=True, env=env, timeout=seconds + 60, check=True,
    ).stdout
    total = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)", out)
    secs = _ms(total.group(2) + total.group(3)) / 1000
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, re.M))
    if len(latency) < 2:  # seen once on a loaded machine; say what wrk printed instead of a KeyError
        print(f"wrk printed no latency distribution:\n{out}", file=sys.stderr)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    requests = int(total.group(1))
    return WrkResult(requests=requests, seconds=secs, rps=requests / secs if secs else 0.0,
                     p50_ms=_ms(latency["50"]) if "50" in latency else float("nan"),
                     p99_ms=_ms(latency["99"]) if "99" in latency else float("nan"),
                     non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
                     errors=sum(map(int, errors.groups())) if errors else 0)


def fill(url: str, count, target: int, *, kind: str = "stk", path: str = "/", connections: int = 16,
         prefix: str = "fill", timeout: float = 600) -> float:
    """Send callbacks with wrk until ``count()`` reaches ``target``; returns the seconds it took.

    wrk's scripts can stop sending but not end the run early, so the run is
    ended from here once the store holds enough.
    """
    env = {"WRK_KIND": kind, "WRK_PATH": path, "WRK_PREFIX": prefix, "WRK_LIMIT": str(max(target - count(), 1)),
           "PATH": "/usr/bin:/bin:/usr/local/bin"}
    started = time.monotonic()
    proc = subprocess.Popen(["wrk", "-t1", f"-c{connections}", f"-d{int(timeout)}s", "--timeout", "10s",
                             "-s", str(LUA), url], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while count() < target and proc.poll() is None and time.monotonic() - started < timeout:
            time.sleep(0.25)
    finally:
        proc.terminate()
        proc.wait(10)
    return time.monotonic() - started


@dataclasses.dataclass
class Sent:
    """One callback sent by the steady sender."""

    ref: str
    at: float
    status: int | None
    accepted: bool
    seconds: float  # until the answer (or the failure)


class Sender:
    """Posts callbacks at a steady rate from a few threads, recording every answer.

    "Accepted" means a 200 whose body says ``"Accepted"``; anything else (5xx,
    refused connection, timeout) is sent but not accepted.
    """

    def __init__(self, port: int, path: str, *, kind: str = "stk", rate: float = 50.0, prefix: str = "drill",
                 threads: int = 4, timeout: float = 10.0):
        self.port, self.path, self.kind, self.rate, self.prefix = port, path, kind, rate, prefix
        self.threads, self.timeout = threads, timeout
        self.sent: list[Sent] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._counter = 0
        self._workers: list[threading.Thread] = []

    def _next(self) -> int:
        with self._lock:
            self._counter += 1
            return self._counter

    def _run(self) -> None:
        conn: http.client.HTTPConnection | None = None
        interval = self.threads / self.rate
        next_at = time.monotonic()
        while not self._stop.is_set():
            ref = f"{self.prefix}-{self._next()}"
            at = time.time()
            status, accepted = None, False
            try:
                conn = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
                conn.request("POST", self.path, callback_body(self.kind, ref), {"Content-Type": "application/json"})
                response = conn.getresponse()
                body = response.read()
                status, accepted = response.status, response.status == 200 and b"Accepted" in body
            except (OSError, http.client.HTTPException):
                if conn is not None:
                    conn.close()
                conn = None
            with self._lock:
                self.sent.append(Sent(ref, at, status, accepted, time.time() - at))
            next_at += interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))
        if conn is not None:
            conn.close()

    def start(self) -> "Sender":
        """Start sending."""
        self._workers = [threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)]
        for worker in self._workers:
            worker.start()
        return self

    def stop(self) -> None:
        """Stop sending and wait for the requests in flight."""
        self._stop.set()
        for worker in self._workers:
            worker.join(self.timeout + 5)

    @property
    def accepted(self) -> list[str]:
        """The refs of the callbacks answered "Accepted"."""
        return [s.ref for s in self.sent if s.accepted]
