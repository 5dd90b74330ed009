"""``make test-priority``: does priority hold under backlog on the running stack?

Through the real ingest (the admin-only ``/test/priority`` endpoint), it
queues a backlog of LOW test events, then NORMAL, HIGH and URGENT ones, waits
until the demo receiver has them all, and prints per level: count, first and
last delivery, p50 and p99 latency from ingest to delivery. Each request records
its events in batches, so the backlog builds faster than the pools drain it on
any machine. It exits non-zero if no LOW was still waiting when the first URGENT
came (no backlog, nothing shown), or if a higher level's p99 is worse than a lower level's.

It uses the stack ``make run`` started (``var/demo.json``); if none answers,
it starts one itself and stops it afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "var/demo.json"
RECEIVED = ROOT / "var/receiver.jsonl"
PLAN = [("low", int(os.environ.get("PRIORITY_LOW", "2000"))), ("normal", 200), ("high", 100), ("urgent", 50)]
LEVELS = ["urgent", "high", "normal", "low"]


def _request(url: str, key: str | None = None, body: dict | None = None, timeout: float = 60) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data else {}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers,
                                                       method="POST" if data else "GET"), timeout=timeout) as r:
        return json.loads(r.read())


def _up(base: str) -> bool:
    try:
        return _request(f"{base}/health/ready", timeout=2)["status"] == "ok"
    except (OSError, urllib.error.URLError, ValueError, KeyError):
        return False


def _start_stack() -> subprocess.Popen:
    print("no stack answering: starting one (as `make run` does)", flush=True)
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts/devstack.py")], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if DEMO.exists() and _up(json.loads(DEMO.read_text())["base_url"]):
            return proc
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGTERM)
    sys.exit("the stack did not come up within 60 s")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    """Run the check; the exit status is the verdict."""
    proc = None
    if not (DEMO.exists() and _up(json.loads(DEMO.read_text()).get("base_url", ""))):
        proc = _start_stack()
    try:
        demo = json.loads(DEMO.read_text())
        base, key, merchant = demo["base_url"], demo["admin_api_key"], demo["merchant_id"]
        offset = RECEIVED.stat().st_size if RECEIVED.exists() else 0
        ingested: dict[str, tuple[str, float]] = {}
        for level, count in PLAN:
            for start in range(0, count, 500):
                answer = _request(f"{base}/test/priority/{merchant}/{level}", key,
                                  {"count": min(500, count - start)})
                ingested.update({e["id"]: (level, e["received_at"]) for e in answer["events"]})
            print(f"queued {count} {level.upper()}", flush=True)

        delivered: dict[str, float] = {}
        deadline = time.monotonic() + 300
        while len(delivered) < len(ingested) and time.monotonic() < deadline:
            time.sleep(0.5)
            with RECEIVED.open() as fh:
                fh.seek(offset)
                for line in fh:
                    entry = json.loads(line)
                    if entry["webhook_id"] in ingested:
                        delivered.setdefault(entry["webhook_id"], entry["received_at"])
        missing = len(ingested) - len(delivered)

        print(f"\n{'level':<8}{'count':>7}{'first (s)':>11}{'last (s)':>10}{'p50 (ms)':>10}{'p99 (ms)':>10}")
        t0 = min(at for _, at in ingested.values())
        p99: dict[str, float] = {}
        for level in LEVELS:
            ids = [i for i, (lvl, _) in ingested.items() if lvl == level and i in delivered]
            if not ids:
                continue
            latencies = [(delivered[i] - ingested[i][1]) * 1000 for i in ids]
            p99[level] = _percentile(latencies, 0.99)
            print(f"{level.upper():<8}{len(ids):>7}{min(delivered[i] for i in ids) - t0:>11.2f}"
                  f"{max(delivered[i] for i in ids) - t0:>10.2f}{statistics.median(latencies):>10.0f}"
                  f"{p99[level]:>10.0f}")
        # The check means something only if URGENT met a backlog: LOW still waiting when the first URGENT came.
        first_urgent = min(at for lvl, at in ingested.values() if lvl == "urgent")
        low_waiting = sum(1 for i, (lvl, _) in ingested.items() if lvl == "low" and delivered.get(i, 1e18) > first_urgent)
        print(f"\nLOW still waiting when the first URGENT was recorded: {low_waiting}")
        failures = [] if low_waiting else ["no backlog formed: every LOW was delivered before the first URGENT came"]
        failures += [f"{hi.upper()} p99 {p99[hi]:.0f} ms is worse than {lo.upper()} p99 {p99[lo]:.0f} ms"
                    for hi, lo in zip(LEVELS, LEVELS[1:]) if hi in p99 and lo in p99 and p99[hi] > p99[lo]]
        if missing:
            failures.append(f"{missing} event(s) not delivered within 300 s")
        print("\n" + ("\n".join(f"FAIL: {f}" for f in failures) if failures else "PASS: priority holds"))
        return 1 if failures else 0
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(60)


if __name__ == "__main__":
    sys.exit(main())
