"""Stalled live streams during ingest: 20 ``GET /v1/stream`` readers that connect and never read.

Each stalled reader is a raw socket with a small receive buffer that sends the
request with an API key of the merchant whose callbacks wrk posts, then never
reads: the kernel's buffers at both ends fill, the server's write blocks, and
its buffer of notices overflows. The server then hangs up, and the reader
connects again and stalls again at once, as a client that reconnects would:
at a few hundred callbacks a second a stalled stream is hung up within two
seconds, and without reconnecting the rounds "with" stalled streams would
measure none. Ingest is measured with them and without them in alternating
rounds (the order swapped every round), so the shared machine's drift hits
both; then ingest runs for a while with them open and the web workers' RSS is
sampled, to show it levels off rather than grows.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import select
import socket
import subprocess
import termios
import threading
import time
from collections.abc import Iterator

import psutil
import redis

from payhook_shared.store import Store
from payhook_webhook.auth import create_api_key

from .load import wrk
from .stack import Stack, wait_for

READERS = int(os.environ.get("BENCH_STALLED_STREAMS", "20"))
ROUNDS = int(os.environ.get("BENCH_STREAM_ROUNDS", "6"))
ROUND_SECONDS = float(os.environ.get("BENCH_STREAM_ROUND_SECONDS", "4"))
SOAK_SECONDS = float(os.environ.get("BENCH_STREAM_SOAK_SECONDS", "30"))
# Callbacks sent after the readers connect and before a timed round, so their buffers are full when it starts.
FILL_SECONDS = 2
# A stalled client's receive buffer: small, so the kernel's buffers fill within a few hundred events.
RCVBUF = 4096
# How often a stalled reader looks (without reading) whether the server hung up on it.
RECONNECT_POLL = 0.05
#: The web log's line for a stream the server ended because its reader fell behind (stream.py).
SLOW_READER_LOG = "slow reader"


class StalledReader:
    """One connection that asks for the live stream and never reads a byte of the answer; connects again when hung up."""

    def __init__(self, port: int, api_key: str):
        self.server_port, self.api_key = port, api_key
        self.hang_ups = 0
        self._connect()

    def _connect(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        self.sock.connect(("127.0.0.1", self.server_port))
        self.port = self.sock.getsockname()[1]
        self.sock.sendall(f"GET /v1/stream HTTP/1.1\r\nHost: 127.0.0.1:{self.server_port}\r\n"
                          f"Authorization: Bearer {self.api_key}\r\nAccept: text/event-stream\r\n\r\n".encode())

    def hung_up(self) -> bool:
        """Whether the server ended the connection (a reset or a close), seen without reading a byte."""
        poller = select.poll()
        poller.register(self.sock, 0)  # no events asked for: only hang-ups and errors are reported
        return any(mask & (select.POLLHUP | select.POLLERR | select.POLLRDHUP) for _, mask in poller.poll(0))

    def reconnect_if_hung_up(self) -> None:
        """Stall again on a new connection if the server hung up this one."""
        if self.hung_up():
            self.sock.close()
            self.hang_ups += 1
            self._connect()

    def unread(self) -> int:
        """Bytes waiting, unread, in this end's receive buffer."""
        with contextlib.suppress(OSError):
            return int.from_bytes(fcntl.ioctl(self.sock.fileno(), termios.FIONREAD, b"\0\0\0\0"), "little")
        return 0

    def close(self) -> None:
        """Hang up (with unread bytes, the kernel resets the connection)."""
        self.sock.close()


@contextlib.contextmanager
def stalled(stack: Stack, keys: list[tuple[str, str]], client: redis.Redis) -> Iterator[list[StalledReader]]:
    """``len(keys)`` stalled readers, one per ``(key id, key)``, open once the server holds a stream slot for each.

    While open, a reader the server hangs up on connects again within ``RECONNECT_POLL`` seconds.
    """
    readers = [StalledReader(stack.web_port, key) for _, key in keys]
    done = threading.Event()

    def reconnect() -> None:
        while not done.wait(RECONNECT_POLL):
            for reader in readers:
                with contextlib.suppress(OSError):
                    reader.reconnect_if_hung_up()

    reconnector = threading.Thread(target=reconnect, daemon=True)
    try:
        wait_for(lambda: sum(client.zcard(f"payhook:streams:{key_id}") for key_id, _ in keys) == len(keys), 10,
                 "stalled streams")
        reconnector.start()
        yield readers
    finally:
        done.set()
        if reconnector.is_alive():
            reconnector.join()
        for reader in readers:
            reader.close()
        # The server notices the resets on its next write or heartbeat; the slots free as it does.
        with contextlib.suppress(TimeoutError):
            wait_for(lambda: sum(client.zcard(f"payhook:streams:{key_id}") for key_id, _ in keys) == 0, 20,
                     "streams closed")


def _server_side(web_port: int, client_ports: set[int]) -> tuple[int, int]:
    """The web service's established connections to ``client_ports``, and the bytes they hold unsent (``ss``)."""
    out = subprocess.run(["ss", "-tnH", "state", "established", f"sport = :{web_port}"], capture_output=True,
                         text=True, check=False).stdout
    connections = unsent = 0
    for line in out.splitlines():
        fields = line.split()
        # With a state filter ss leaves the State column out: Recv-Q Send-Q Local:Port Peer:Port
        if len(fields) >= 4 and int(re.sub(r".*:", "", fields[3])) in client_ports:
            connections += 1
            unsent += int(fields[1])
    return connections, unsent


def _web_rss(stack: Stack) -> list[float]:
    """RSS of each gunicorn worker (the web processes' children), in MB."""
    sizes = []
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(stack.procs["web"].popen.pid).children():
            with contextlib.suppress(psutil.Error):
                sizes.append(round(child.memory_info().rss / 2**20, 1))
    return sorted(sizes)


def _ingest(stack: Stack, prefix: str, seconds: float) -> dict:
    cpu = stack.procs["web"].cpu_seconds()
    result = vars(wrk(stack.base_url, path=stack.callback_path("stk"), seconds=seconds, connections=16, prefix=prefix))
    result["web_cpu_seconds"] = stack.procs["web"].cpu_seconds() - cpu
    result["web_cpu_ms_per_request"] = round(result["web_cpu_seconds"] * 1000 / max(result["requests"], 1), 2)
    return result


def _buffers(stack: Stack, readers: list[StalledReader]) -> dict:
    connections, unsent = _server_side(stack.web_port, {r.port for r in readers})
    return {"client_unread_bytes": sum(r.unread() for r in readers), "server_unsent_bytes": unsent,
            "still_connected": connections}


def _median(runs: list[dict]) -> dict:
    middle = sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]
    return {**middle, "rounds_rps": [round(r["rps"], 1) for r in runs],
            "rounds_p99_ms": [round(r["p99_ms"], 1) for r in runs],
            "rounds_web_cpu_ms_per_request": [r["web_cpu_ms_per_request"] for r in runs],
            # Over every round: steadier than the median round's own figure.
            "web_cpu_ms_per_request_all_rounds": round(sum(r["web_cpu_seconds"] for r in runs) * 1000
                                                       / max(sum(r["requests"] for r in runs), 1), 3)}


def _slow_reader_lines(stack: Stack) -> int:
    log = stack.workdir / "web.log"
    return log.read_text(errors="replace").count(SLOW_READER_LOG) if log.exists() else 0


def stalled_streams(stack: Stack, progress=print) -> dict:
    """Ingest with ``READERS`` stalled streams and with none, in alternating rounds; then a soak with RSS sampled."""
    store = Store(stack.db.url)
    keys = []
    for n in range(READERS):
        row, key = create_api_key(store, stack.merchant.id, f"stalled reader {n}")
        keys.append((row.id, key))
    store.dispose()
    client = redis.Redis.from_url(stack.redis_url)
    rss_start = _web_rss(stack)
    # A just-started web service runs its first seconds slower: warm it up before the first timed round.
    wrk(stack.base_url, path=stack.callback_path("stk"), seconds=3, connections=16, prefix="stall-warm")
    runs: dict[str, list[dict]] = {"none": [], "stalled": []}
    buffers = []
    for n in range(ROUNDS):
        for arm in (("none", "stalled") if n % 2 == 0 else ("stalled", "none")):
            if arm == "none":
                runs["none"].append(_ingest(stack, f"nostall{n}-", ROUND_SECONDS))
                continue
            with stalled(stack, keys, client) as readers:
                wrk(stack.base_url, path=stack.callback_path("stk"), seconds=FILL_SECONDS, connections=16,
                    prefix=f"stallfill{n}-")
                before, hang_ups = _buffers(stack, readers), sum(r.hang_ups for r in readers)
                run = _ingest(stack, f"stall{n}-", ROUND_SECONDS)
                run["buffers_before"], run["buffers_after"] = before, _buffers(stack, readers)
                run["hang_ups"] = sum(r.hang_ups for r in readers) - hang_ups
                run["web_rss_mb"] = _web_rss(stack)
                runs["stalled"].append(run)
                buffers.append(run["buffers_after"])
        none_, stalled_ = runs["none"][-1], runs["stalled"][-1]
        progress(f"stalled streams round {n + 1}/{ROUNDS}: none {none_['rps']:.0f} req/s (p99 {none_['p99_ms']:.0f} ms, "
                 f"{none_['web_cpu_ms_per_request']} ms web CPU each), {READERS} stalled {stalled_['rps']:.0f} req/s "
                 f"(p99 {stalled_['p99_ms']:.0f} ms, {stalled_['web_cpu_ms_per_request']} ms web CPU each); server "
                 f"unsent {buffers[-1]['server_unsent_bytes']:,} B, client unread "
                 f"{buffers[-1]['client_unread_bytes']:,} B; connected {stalled_['buffers_before']['still_connected']} "
                 f"at the round's start, {buffers[-1]['still_connected']} at its end, {stalled_['hang_ups']} hung up "
                 "and connected again during it", flush=True)

    # Soak: the stalled readers stay (hung up, they connect again) while callbacks keep coming; RSS is sampled.
    samples: list[tuple[float, list[float]]] = []
    with stalled(stack, keys, client) as readers:
        done = threading.Event()

        def sample() -> None:
            started = time.monotonic()
            while not done.is_set():
                samples.append((round(time.monotonic() - started, 1), _web_rss(stack)))
                done.wait(1.0)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        soak = _ingest(stack, "stallsoak-", SOAK_SECONDS)
        done.set()
        sampler.join()
        soak["buffers_after"] = _buffers(stack, readers)
        soak["hang_ups"] = sum(r.hang_ups for r in readers)
    client.close()
    none, with_stalled = _median(runs["none"]), _median(runs["stalled"])
    totals = [sum(sizes) for _, sizes in samples]
    return {
        "readers": READERS, "rounds": ROUNDS, "round_seconds": ROUND_SECONDS,
        "none": none, "stalled": with_stalled,
        "rps_ratio": with_stalled["rps"] / max(none["rps"], 1e-6),
        "rounds_rps_ratio": [round(s["rps"] / max(o["rps"], 1e-6), 3) for o, s in zip(runs["none"], runs["stalled"])],
        "soak": {"seconds": SOAK_SECONDS, "requests": soak["requests"], "rps": round(soak["rps"], 1),
                 "p99_ms": soak["p99_ms"], "buffers_after": soak["buffers_after"], "hang_ups": soak["hang_ups"],
                 "web_rss_mb": samples,
                 # Growth over the second half of the soak: a leak keeps growing, a bounded buffer has levelled off.
                 "rss_total_mb_start": round(totals[0], 1) if totals else None,
                 "rss_total_mb_middle": round(totals[len(totals) // 2], 1) if totals else None,
                 "rss_total_mb_end": round(totals[-1], 1) if totals else None},
        "web_rss_mb_before": rss_start,
        "slow_reader_closes_logged": _slow_reader_lines(stack),
    }


def table_rows(s: dict) -> list[tuple[str, str, str]]:
    """Rows for ``make bench``'s table."""
    none, stalled_ = s["none"], s["stalled"]
    soak = s["soak"]
    return [
        ("ingest, no stream", f"{none['rps']:.0f} req/s, p99 {none['p99_ms']:.1f} ms, "
                              f"{none['web_cpu_ms_per_request_all_rounds']} ms web CPU each over all rounds "
                              f"(rounds {none['rounds_rps']} req/s, {none['rounds_web_cpu_ms_per_request']} ms)", ""),
        (f"ingest, {s['readers']} stalled streams", f"{stalled_['rps']:.0f} req/s, p99 {stalled_['p99_ms']:.1f} ms, "
                                                     f"{stalled_['web_cpu_ms_per_request_all_rounds']} ms web CPU each "
                                                     f"over all rounds (rounds {stalled_['rounds_rps']} req/s, "
                                                     f"{stalled_['rounds_web_cpu_ms_per_request']} ms)",
         f"{s['rps_ratio']:.0%} of none (rounds {', '.join(f'{r:.0%}' for r in s['rounds_rps_ratio'])})"),
        ("web RSS, stalled streams", f"{soak['rss_total_mb_start']} → {soak['rss_total_mb_middle']} → "
                                     f"{soak['rss_total_mb_end']} MB (both workers) over a {soak['seconds']:.0f} s soak "
                                     f"at {soak['rps']:.0f} req/s; {soak['buffers_after']['still_connected']} of "
                                     f"{s['readers']} connected after it; {s['slow_reader_closes_logged']} "
                                     "slow readers closed in the phase", ""),
    ]
