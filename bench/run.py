"""``make bench``: baseline, ingest, end to end, priority and memory, in one run on a stack of its own.

Prints a table and writes ``var/bench/results.json`` and ``var/bench/results.png``.
The database is PostgreSQL when ``BENCH_DATABASE_URL`` names a reachable server
(a fresh database is created on it and dropped afterwards), else a SQLite file.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import sqlalchemy
from sqlalchemy import func, select

from payhook_shared.priority import Priority
from payhook_shared.store import Delivery, Event, JobState, Store

from . import reference_delivery, streams
from .load import Sender, fill, wrk
from .stack import BIN, ROOT, POOLS, Stack, free_port, wait_for

OUT = ROOT / "var" / "bench"
BACKLOG = int(os.environ.get("BENCH_BACKLOG", "20000"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "12"))
# Baseline and ingest alternate in this many rounds of SECONDS / ROUNDS each; the medians are reported.
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "16"))
WEB_WORKERS = int(os.environ.get("BENCH_WEB_WORKERS", "2"))
WEB_CONNECTIONS = int(os.environ.get("BENCH_WEB_CONNECTIONS", "100"))
# "ingest" stops after the ingest figures, "e2e" after end to end (quick profiling rounds); "all" runs everything;
# "streams" runs only ingest with and without stalled live streams (bench/streams.py).
PHASES = os.environ.get("BENCH_PHASES", "all")
# Issue #24: ingest at least 0.75 of bare Flask recording each body, URGENT p99 under 100 ms while 20,000 LOW drain,
# no process above 100 MB, an idle stack under 2 % of a core; drain against the peer is ../shared/peer's to measure.
TARGETS = {"ingest_to_recording": 0.75, "deliveries_per_s": 300, "urgent_p99_ms": 100, "worker_rss_mb": 100,
           "idle_cpu_percent": 2.0}
IDLE_SECONDS = float(os.environ.get("BENCH_IDLE_SECONDS", "20"))


def _database_url() -> str | None:
    url = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    if not url or url.startswith("sqlite"):
        return None
    try:
        engine = sqlalchemy.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1),
                                          connect_args={"connect_timeout": 2})
        with engine.connect():
            pass
        engine.dispose()
        return url
    except Exception as exc:  # unreachable: fall back to SQLite and say so
        print(f"PostgreSQL at {url} not reachable ({type(exc).__name__}); using SQLite", file=sys.stderr)
        return None


def _count(store: Store, *where) -> int:
    with store.read() as session:
        return session.execute(select(func.count()).select_from(Delivery).where(*where)).scalar_one()


def _drain(store: Store, total: int, timeout: float) -> tuple[float, list[tuple[float, int]]]:
    """Seconds until ``total`` deliveries are done, and (t, done) samples along the way."""
    started = time.monotonic()
    samples = []
    while time.monotonic() - started < timeout:
        done = _count(store, Delivery.state == JobState.DONE.value)
        samples.append((time.monotonic() - started, done))
        if done >= total:
            break
        time.sleep(0.25)
    return samples[-1][0], samples


def _tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process and its live descendants."""
    total = 0.0
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
    return total


def _postgres_cpu() -> float:
    """CPU seconds of every PostgreSQL server process on this machine (its backends come and go)."""
    total = 0.0
    for proc in psutil.process_iter(["name"]):
        if (proc.info["name"] or "").startswith("postgres"):
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
    return total


def _machine_cpu() -> float:
    """CPU seconds every process on the machine has used (all cores, idle and I/O wait excluded)."""
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def _children_cpu() -> float:
    """CPU seconds of this process's finished children: wrk, which each run waits for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class _CpuMeter:
    """CPU seconds by part of the machine over one or more wrk runs, then milliseconds per request.

    Both runs are CPU-bound on a machine this size, so the ratio of their rates follows the ratio of the
    machine CPU each request costs: the parts say where a callback's goes.
    """

    def __init__(self, parts: dict):
        self.parts = {"machine": _machine_cpu, **parts, "load_generator": _children_cpu}
        self.used = dict.fromkeys(self.parts, 0.0)
        self.seconds = 0.0

    @contextlib.contextmanager
    def measure(self) -> Iterator[None]:
        """Add the CPU used by each part while the block runs."""
        before = {name: read() for name, read in self.parts.items()}
        started = time.monotonic()
        yield
        self.seconds += time.monotonic() - started
        for name, read in self.parts.items():
            self.used[name] += read() - before[name]

    def per_request(self, requests: int) -> dict:
        """Milliseconds of CPU per request by part, and the cores the machine kept busy."""
        out = {name: round(cpu * 1000 / max(requests, 1), 3) for name, cpu in self.used.items()}
        out["busy_cores"] = round(self.used["machine"] / max(self.seconds, 1e-9), 2)
        return out


@contextlib.contextmanager
def _reference_app(stack: Stack, app: str, env: dict[str, str] | None = None) -> Iterator[tuple[str, int]]:
    """A reference Flask app (``module:app``) under the webhook-service's gunicorn settings; yields URL and pid."""
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "gunicorn"), "--workers", str(stack.web_workers), "--worker-class", "gevent",
         "--worker-connections", str(stack.web_connections), "--keep-alive", "5", "--reuse-port",
         "--bind", f"127.0.0.1:{port}", app],
        cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    try:
        wait_for(lambda: urllib.request.urlopen(urllib.request.Request(
            f"http://127.0.0.1:{port}/x", data=b"{}", headers={"Content-Type": "application/json"}), timeout=1), 20,
            app)
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        proc.terminate()
        proc.wait(15)


def _baseline_app(stack: Stack) -> contextlib.AbstractContextManager[tuple[str, int]]:
    """The bare Flask echo under the webhook-service's gunicorn settings; yields its URL and pid."""
    return _reference_app(stack, "bench.baseline_app:app")


def _recording_app(stack: Stack) -> contextlib.AbstractContextManager[tuple[str, int]]:
    """Bare Flask that commits each body to the bench's PostgreSQL database; yields its URL and pid."""
    url = stack.db.url.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE bench_recorded (id bigserial PRIMARY KEY, body text NOT NULL)")
    engine.dispose()
    return _reference_app(stack, "bench.recording_app:app", {"BENCH_RECORDING_URL": url})


def _median_run(runs: list[dict]) -> dict:
    """The run with the median rate, with every round's rate beside it."""
    middle = sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]
    return {**middle, "rounds_rps": [round(r["rps"], 1) for r in runs]}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main() -> None:
    """Run every benchmark once and report."""
    OUT.mkdir(parents=True, exist_ok=True)
    db_url = _database_url()
    results: dict = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                     "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                 "load_average_at_start": os.getloadavg()},
                     "settings": {"backlog": BACKLOG, "seconds": SECONDS, "connections": CONNECTIONS,
                                  "pools": [{"name": n, "pool": p, "threads": t} for n, p, t in POOLS]},
                     "targets": TARGETS}
    # SIGTERM (e.g. a timeout) unwinds like Ctrl-C, so the stack's processes and database go too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    stack = Stack(db_url, web_workers=WEB_WORKERS, web_connections=WEB_CONNECTIONS)
    try:
        stack.start(workers=False)
        results["database"] = stack.db.kind
        results["receiver"] = stack.receiver_kind
        results["settings"]["web"] = {"workers": stack.web_workers, "connections": stack.web_connections}
        store = Store(stack.db.url)
        print(f"stack up: {stack.db.kind}, receiver {stack.receiver_kind}, workdir {stack.workdir}", flush=True)
        if PHASES == "streams":
            results["streams"] = streams.stalled_streams(stack)
            return

        receiver = wrk(f"http://127.0.0.1:{stack.receiver_port}", path="/webhooks", seconds=3,
                       connections=CONNECTIONS, prefix="rcv")
        results["receiver_capacity_rps"] = round(receiver.rps)
        print(f"receiver alone: {receiver.rps:.0f} req/s", flush=True)

        # Baseline and ingest take turns, ROUNDS times each, so both see the same machine: on a shared
        # machine the speed drifts by a factor of two within minutes, and a ratio of runs minutes apart drifts too.
        # On PostgreSQL a third app takes its turn too: bare Flask committing each body (recording_app.py).
        bases, recordings, ingests = [], [], []
        local_database = stack.db.kind == "postgresql" and _postgres_cpu() > 0  # a server here, not elsewhere
        ingest_parts = {"web": stack.procs["web"].cpu_seconds, "redis": stack.procs["redis"].cpu_seconds}
        if local_database:
            ingest_parts["database"] = _postgres_cpu
        ingest_cpu = _CpuMeter(ingest_parts)
        with contextlib.ExitStack() as apps:
            baseline_url, baseline_pid = apps.enter_context(_baseline_app(stack))
            base_cpu = _CpuMeter({"web": lambda: _tree_cpu(baseline_pid)})
            if stack.db.kind == "postgresql":
                recording_url, recording_pid = apps.enter_context(_recording_app(stack))
                recording_cpu = _CpuMeter({"web": lambda: _tree_cpu(recording_pid),
                                           **({"database": _postgres_cpu} if local_database else {})})
            for n in range(ROUNDS):
                with base_cpu.measure():
                    bases.append(vars(wrk(baseline_url, path="/cb/stk", seconds=SECONDS / ROUNDS,
                                          connections=CONNECTIONS, prefix=f"base{n}")))
                if stack.db.kind == "postgresql":
                    with recording_cpu.measure():
                        recordings.append(vars(wrk(recording_url, path="/cb/stk", seconds=SECONDS / ROUNDS,
                                                   connections=CONNECTIONS, prefix=f"rec{n}")))
                with ingest_cpu.measure():
                    ingests.append(vars(wrk(stack.base_url, path=stack.callback_path("stk"),
                                            seconds=SECONDS / ROUNDS, connections=CONNECTIONS, prefix=f"ing{n}")))
        base, ingest = _median_run(bases), _median_run(ingests)
        base["cpu_ms_per_request"] = base_cpu.per_request(sum(r["requests"] for r in bases))
        base["web_cpu_ms_per_request"] = round(base["cpu_ms_per_request"]["web"], 2)
        results["baseline"] = base
        print(f"baseline: {base['rps']:.0f} req/s (rounds {base['rounds_rps']}), "
              f"{base['web_cpu_ms_per_request']} ms CPU per request", flush=True)
        # CPU per callback in the web processes: what the code costs, whatever else the machine runs.
        ingest["cpu_ms_per_request"] = ingest_cpu.per_request(sum(r["requests"] for r in ingests))
        ingest["web_cpu_ms_per_request"] = round(ingest["cpu_ms_per_request"]["web"], 2)
        ingest["recorded"] = _count(store)
        ingest["ratio_to_baseline"] = ingest["rps"] / base["rps"]
        ingest["rounds_ratio"] = [round(i["rps"] / b["rps"], 3) for b, i in zip(bases, ingests)]
        results["ingest"] = ingest
        print(f"ingest: {ingest['rps']:.0f} req/s ({ingest['ratio_to_baseline']:.0%} of baseline; rounds "
              f"{', '.join(f'{r:.0%}' for r in ingest['rounds_ratio'])}), "
              f"{ingest['web_cpu_ms_per_request']} ms web CPU per callback", flush=True)
        print(f"machine CPU per request: {_cpu_line(base['cpu_ms_per_request'])} for the baseline; "
              f"{_cpu_line(ingest['cpu_ms_per_request'])} for a callback", flush=True)
        if recordings:
            recording = _median_run(recordings)
            recording["cpu_ms_per_request"] = recording_cpu.per_request(sum(r["requests"] for r in recordings))
            recording["ratio_to_baseline"] = recording["rps"] / base["rps"]
            ingest["ratio_to_recording"] = ingest["rps"] / recording["rps"]
            results["recording"] = recording
            print(f"bare Flask recording each body: {recording['rps']:.0f} req/s "
                  f"(rounds {recording['rounds_rps']}), "
                  f"{recording['ratio_to_baseline']:.0%} of the baseline; ingest is "
                  f"{ingest['ratio_to_recording']:.0%} of it; machine CPU per request "
                  f"{_cpu_line(recording['cpu_ms_per_request'])}", flush=True)

        if PHASES == "ingest":
            return
        # End to end: top the backlog up to BACKLOG, then start the workers and time the drain.
        fill(stack.base_url, lambda: _count(store), BACKLOG, path=stack.callback_path("stk"),
             connections=CONNECTIONS, prefix="fill")
        backlog = _count(store)
        # The workers start inside the measurement: before they exist they have used nothing.
        drain_cpu = _CpuMeter({"workers": lambda: sum(stack.procs[name].cpu_seconds() for name, _, _ in POOLS
                                                      if name in stack.procs),
                               "redis": stack.procs["redis"].cpu_seconds,
                               "receiver": stack.procs["receiver"].cpu_seconds,
                               **({"database": _postgres_cpu} if local_database else {})})
        with drain_cpu.measure():
            stack.start_workers()
            drain_s, samples = _drain(store, backlog, timeout=600)
        done = samples[-1][1]
        worker_cpu = sum(stack.procs[name].cpu_seconds() for name, _, _ in POOLS)
        # Sustained rate: the middle 80 % of the drain, free of start-up and tail effects.
        lo = next(s for s in samples if s[1] >= 0.1 * backlog)
        hi = next((s for s in samples if s[1] >= 0.9 * backlog), samples[-1])
        results["end_to_end"] = {"backlog": backlog, "delivered": done, "drain_seconds": round(drain_s, 2),
                                 "deliveries_per_s": round(done / drain_s, 1),
                                 "sustained_deliveries_per_s": round((hi[1] - lo[1]) / max(hi[0] - lo[0], 1e-6), 1),
                                 # Includes each worker's start-up (imports), a few hundred ms in all.
                                 "worker_cpu_ms_per_delivery": round(worker_cpu * 1000 / max(done, 1), 2),
                                 # Machine, workers, Redis, receiver and (local) PostgreSQL, per delivery.
                                 "cpu_ms_per_delivery": drain_cpu.per_request(done),
                                 "curve": [(round(t, 2), n) for t, n in samples]}
        print(f"end to end: {backlog} delivered in {drain_s:.1f} s "
              f"({results['end_to_end']['sustained_deliveries_per_s']:.0f}/s sustained, "
              f"{results['end_to_end']['worker_cpu_ms_per_delivery']} ms worker CPU per delivery; machine "
              f"{_cpu_line(results['end_to_end']['cpu_ms_per_delivery'])})", flush=True)
        # The ceiling, in the same minutes: the same receiver and HTTP client, no store, no Dramatiq.
        results["reference_delivery"] = reference_delivery.run(
            stack.redis_url, f"http://127.0.0.1:{stack.receiver_port}/webhooks", backlog,
            sum(threads for _, _, threads in POOLS))
        print(f"bare-Python delivery reference: {results['reference_delivery']['deliveries_per_s']:.0f}/s, "
              f"{results['reference_delivery']['cpu_ms_per_delivery']} ms CPU per delivery", flush=True)
        # Idle: every process up, nothing to do.
        time.sleep(2)
        idle = {name: proc.cpu_seconds() for name, proc in stack.procs.items()}
        time.sleep(IDLE_SECONDS)
        results["idle_cpu_percent"] = {name: round(100 * (stack.procs[name].cpu_seconds() - cpu) / IDLE_SECONDS, 2)
                                       for name, cpu in idle.items()}
        results["idle_cpu_percent"]["total"] = round(sum(results["idle_cpu_percent"].values()), 2)
        print(f"idle stack: {results['idle_cpu_percent']['total']} % of a core ({results['idle_cpu_percent']})",
              flush=True)

        if PHASES == "e2e":
            return
        # Priority: 20,000 LOW queued, then URGENT callbacks trickle in while they drain.
        stack.stop_workers()
        before = _count(store)
        fill(stack.base_url, lambda: _count(store), before + BACKLOG, path=stack.callback_path("balance-result"),
             kind="balance", connections=CONNECTIONS, prefix="low")
        low = _count(store) - before
        stack.start_workers()
        # Overtaking a backlog is the measure, not a worker's start: the URGENT callbacks come once all pools consume.
        stack.wait_workers_up()
        sender = Sender(stack.web_port, stack.callback_path("stk"), kind="stk_failed", rate=20, prefix="urg",
                        threads=2).start()
        time.sleep(SECONDS)
        sender.stop()
        total = _count(store)
        low_drain, _ = _drain(store, total, timeout=600)
        with store.read() as session:
            rows = session.execute(
                select(Event.received_at, Delivery.delivered_at).join(Delivery, Delivery.event_id == Event.id)
                .where(Event.priority == int(Priority.URGENT), Delivery.delivered_at.is_not(None))
            ).all()
        latencies = [(d - r).total_seconds() * 1000 for r, d in rows]
        results["priority"] = {"low_backlog": low, "urgent_sent": len(sender.sent),
                               "urgent_accepted": len(sender.accepted), "urgent_delivered": len(latencies),
                               "urgent_p50_ms": round(_percentile(latencies, 0.5), 1),
                               "urgent_p99_ms": round(_percentile(latencies, 0.99), 1),
                               "urgent_max_ms": round(max(latencies, default=float("nan")), 1),
                               "urgent_answer_p99_ms": round(_percentile([x.seconds * 1000 for x in sender.sent], 0.99), 1),
                               "low_drain_seconds": round(low_drain + SECONDS + 1, 1)}
        print(f"priority: URGENT p99 {results['priority']['urgent_p99_ms']} ms while {low} LOW drain "
              f"(the callbacks answered in p99 {results['priority']['urgent_answer_p99_ms']} ms)", flush=True)
        store.dispose()
        # Last, with the workers off again: what follows changes no figure above.
        stack.stop_workers()
        results["streams"] = streams.stalled_streams(stack)
    finally:
        stack.close()
        if PHASES == "streams" and "streams" in results:
            _streams_only(results)
    results["memory_mb"] = {name: {"peak_process": round(p.peak_rss_per_process / 2**20, 1),
                                   "peak_total": round(p.peak_rss / 2**20, 1)} for name, p in stack.procs.items()}
    # The machine may be shared: its load says how much of it the bench had.
    results["machine"]["load_average_at_end"] = os.getloadavg()
    results["verdict"] = _verdict(results)
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    _table(results)
    _chart(results, OUT / "results.png")
    print(f"\nwritten: {OUT / 'results.json'}, {OUT / 'results.png'}")


def _streams_only(results: dict) -> None:
    """Write and print what ``BENCH_PHASES=streams`` measured."""
    results["machine"]["load_average_at_end"] = os.getloadavg()
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    m = results["machine"]
    rows = [("machine", f"{m['cpus']} CPUs, load average {m['load_average_at_start'][0]:.1f} at start, "
                        f"{m['load_average_at_end'][0]:.1f} at end", ""),
            ("database", results["database"], ""), *streams.table_rows(results["streams"])]
    _print_rows(rows)
    print(f"\nwritten: {OUT / 'results.json'}")


def _print_rows(rows: list[tuple[str, str, str]]) -> None:
    width = max(len(a) for a, _, _ in rows)
    print()
    for name, value, verdict in rows:
        print(f"{name:<{width}}  {value:<90}  {verdict}")


def _cpu_line(cpu: dict) -> str:
    """``1.52 ms (web 1.21, database 0.24, …; 1.9 cores busy)``."""
    parts = ", ".join(f"{name.replace('_', ' ')} {ms:.2f}" for name, ms in cpu.items()
                      if name not in ("machine", "busy_cores"))
    return f"{cpu['machine']:.2f} ms ({parts}; {cpu['busy_cores']} cores busy)"


def _verdict(r: dict) -> dict:
    worker_peak = max(r["memory_mb"][n]["peak_process"] for n, _, _ in POOLS)
    return {
        "ingest_to_recording": r["ingest"].get("ratio_to_recording", 0.0) >= TARGETS["ingest_to_recording"],
        "deliveries_per_s": r["end_to_end"]["sustained_deliveries_per_s"] >= TARGETS["deliveries_per_s"],
        "urgent_p99_ms": r["priority"]["urgent_p99_ms"] < TARGETS["urgent_p99_ms"],
        "worker_rss_mb": worker_peak < TARGETS["worker_rss_mb"],
        "idle_cpu_percent": r["idle_cpu_percent"]["total"] < TARGETS["idle_cpu_percent"],
    }


def _table(r: dict) -> None:
    v = r["verdict"]
    ok = {True: "ok", False: "MISS"}
    rows = [
        ("machine", f"{r['machine']['cpus']} CPUs, load average {r['machine']['load_average_at_start'][0]:.1f} at start, "
                    f"{r['machine']['load_average_at_end'][0]:.1f} at end", ""),
        ("database / receiver", f"{r['database']} / {r['receiver']} ({r['receiver_capacity_rps']} req/s alone)", ""),
        ("baseline (bare Flask echo)", f"{r['baseline']['rps']:.0f} req/s, p50 {r['baseline']['p50_ms']:.1f} ms, "
                                       f"p99 {r['baseline']['p99_ms']:.1f} ms", ""),
        ("ingest (STK, unique)", f"{r['ingest']['rps']:.0f} req/s, p50 {r['ingest']['p50_ms']:.1f} ms, "
                                 f"p99 {r['ingest']['p99_ms']:.1f} ms, non-2xx {r['ingest']['non_2xx']}, "
                                 f"{r['ingest']['web_cpu_ms_per_request']} ms web CPU each", ""),
        ("ingest / baseline", f"{r['ingest']['ratio_to_baseline']:.0%}", ""),
        ("machine CPU per request", f"baseline {_cpu_line(r['baseline']['cpu_ms_per_request'])}", ""),
        ("machine CPU per callback", f"ingest {_cpu_line(r['ingest']['cpu_ms_per_request'])}", ""),
        *([("bare Flask recording each body", f"{r['recording']['rps']:.0f} req/s, "
                                              f"{r['recording']['ratio_to_baseline']:.0%} of the baseline; ingest is "
                                              f"{r['ingest']['ratio_to_recording']:.0%} of it",
                                              ok[v["ingest_to_recording"]] + " (>= 75 %)")]
          if "recording" in r else []),
        ("end to end", f"{r['end_to_end']['sustained_deliveries_per_s']:.0f} deliveries/s sustained; "
                       f"{r['end_to_end']['backlog']} drained in {r['end_to_end']['drain_seconds']} s",
         ok[v["deliveries_per_s"]] + " (>= 300/s)"),
        ("machine CPU per delivery", _cpu_line(r["end_to_end"]["cpu_ms_per_delivery"]), ""),
        ("bare-Python delivery", f"{r['reference_delivery']['deliveries_per_s']:.0f}/s, "
                                 f"{r['reference_delivery']['cpu_ms_per_delivery']} ms CPU each", "reference"),
        ("idle stack", f"{r['idle_cpu_percent']['total']} % of a core", ok[v["idle_cpu_percent"]] + " (< 2 %)"),
        ("URGENT while LOW drain", f"p50 {r['priority']['urgent_p50_ms']} ms, p99 {r['priority']['urgent_p99_ms']} ms "
                                   f"({r['priority']['urgent_delivered']} URGENT, {r['priority']['low_backlog']} LOW; "
                                   f"answered in p99 {r['priority']['urgent_answer_p99_ms']} ms)",
         ok[v["urgent_p99_ms"]] + " (< 100 ms)"),
        *streams.table_rows(r["streams"]),
    ]
    for name, mem in r["memory_mb"].items():
        rows.append((f"peak RSS {name}", f"{mem['peak_process']} MB per process, {mem['peak_total']} MB in all",
                     ok[mem["peak_process"] < TARGETS["worker_rss_mb"]] + " (< 100 MB)"))
    _print_rows(rows)


def _chart(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    ax = axes[0]
    bars = {"baseline": r["baseline"]["rps"], **({"recording": r["recording"]["rps"]} if "recording" in r else {}),
            "ingest": r["ingest"]["rps"]}
    colors = {"baseline": "#999", "recording": "#bbb", "ingest": "#2a7"}
    ax.bar(list(bars), list(bars.values()), color=[colors[name] for name in bars])
    if "recording" in r:
        ax.axhline(r["recording"]["rps"] * TARGETS["ingest_to_recording"], ls="--", color="r",
                   label="target: 75 % of recording")
    ax.set_title(f"requests/s ({r['database']})")
    ax.legend()
    ax = axes[1]
    curve = r["end_to_end"]["curve"]
    ax.plot([t for t, _ in curve], [n for _, n in curve], color="#27a")
    ax.set_title(f"backlog drain: {r['end_to_end']['sustained_deliveries_per_s']:.0f}/s")
    ax.set_xlabel("s")
    ax.set_ylabel("delivered")
    ax = axes[2]
    names = list(r["memory_mb"])
    ax.barh(names, [r["memory_mb"][n]["peak_process"] for n in names], color="#a72")
    ax.axvline(TARGETS["worker_rss_mb"], ls="--", color="r", label="worker target")
    ax.set_title(f"peak RSS per process (MB); URGENT p99 {r['priority']['urgent_p99_ms']} ms")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    main()
