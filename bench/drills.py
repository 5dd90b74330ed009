"""``make drills``: fault drills against the real stack under a steady stream of callbacks.

Each drill sends STK callbacks at a steady rate, injects one fault, keeps
sending, then waits for every callback answered "Accepted" to reach the
receiver. It prints sent / accepted / delivered / lost / duplicate webhook-ids
(a duplicate is a webhook-id the receiver answered 200 more than once). Lost
must be 0. ``--quick`` runs shorter gaps with fewer callbacks (the test suite's
version). The database drill needs PostgreSQL (``DRILL_DATABASE_URL``, or
``TEST_DATABASE_URL``); on SQLite it is skipped.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import signal
import sys
import time
from pathlib import Path

from sqlalchemy import select

from payhook_shared.store import Delivery, DeliveryAttempt, Event, Store

from .load import Sender
from .stack import ROOT, Stack

# Short retries and leases so recovery shows within a drill, not after the production backoff.
WORKER_ENV = {
    "RETRY_SCHEDULE": ",".join(["1", "1", "2", "2"] + ["3"] * 30),
    "CIRCUIT_COOLDOWN": "2",
    "CONNECT_TIMEOUT": "1",
    "TOTAL_TIMEOUT": "3",
    "LEASE_MARGIN": "2",
    "HEARTBEAT_TIMEOUT": "5",
    "SWEEP_INTERVAL": "0.5",
    "LOG_LEVEL": "WARNING",
}


@dataclasses.dataclass
class Outcome:
    """One drill's tally."""

    drill: str
    sent: int
    accepted: int
    refused: int
    delivered: int
    lost: int
    duplicates: int
    drain_seconds: float
    note: str = ""
    undelivered: list[dict] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class Plan:
    """Timings of a drill run: rate, seconds before and after each fault, and each fault's gap."""

    rate: float
    before: float
    after: float
    worker_gap: float
    redis_gap: float
    database_gap: float
    receiver_gap: float
    drain_timeout: float


FULL = Plan(rate=50, before=5, after=10, worker_gap=1, redis_gap=3, database_gap=10, receiver_gap=30,
            drain_timeout=120)
QUICK = Plan(rate=25, before=1.5, after=2, worker_gap=0.5, redis_gap=1, database_gap=3, receiver_gap=4,
             drain_timeout=45)


def _kill_worker(stack: Stack, plan: Plan) -> str:
    stack.procs["delivery"].signal(signal.SIGKILL)
    stack.procs["delivery"].popen.wait(10)
    time.sleep(plan.worker_gap)
    stack.start_workers(("delivery",))
    return f"SIGKILL delivery worker (standard pool), restarted after {plan.worker_gap} s"


def _restart_redis(stack: Stack, plan: Plan) -> str:
    stack.procs["redis"].stop()
    time.sleep(plan.redis_gap)
    stack.start_redis()
    return f"redis-server stopped, started again on its AOF after {plan.redis_gap} s"


def _stop_database(stack: Stack, plan: Plan) -> str:
    stack.db.block()
    time.sleep(plan.database_gap)
    stack.db.unblock()
    return f"database refused connections (backends terminated) for {plan.database_gap} s"


def _receiver_down(stack: Stack, plan: Plan) -> str:
    stack.stop_receiver()
    time.sleep(plan.receiver_gap)
    stack.start_receiver()
    return f"receiver down for {plan.receiver_gap} s"


DRILLS = {"kill-worker": _kill_worker, "restart-redis": _restart_redis, "stop-database": _stop_database,
          "receiver-down": _receiver_down}


def _event_ids(store: Store, merchant_id: str, refs: list[str]) -> dict[str, str]:
    keys = {f"stk:ws_CO_{ref}": ref for ref in refs}
    found: dict[str, str] = {}
    chunk = list(keys)
    with store.read() as session:
        for i in range(0, len(chunk), 500):
            for key, event_id in session.execute(
                select(Event.dedupe_key, Event.id).where(Event.merchant_id == merchant_id,
                                                         Event.dedupe_key.in_(chunk[i:i + 500]))):
                found[keys[key]] = event_id
    return found


def _undelivered(store: Store, ids: dict[str, str], refs: list[str]) -> list[dict]:
    """What the store says about each callback that never reached the receiver: the evidence for a loss."""
    found = []
    with store.read() as session:
        for ref in refs[:20]:
            event_id = ids.get(ref)
            row: dict = {"ref": ref, "event_id": event_id, "deliveries": []}
            for d in session.scalars(select(Delivery).where(Delivery.event_id == event_id)) if event_id else ():
                attempts = session.execute(
                    select(DeliveryAttempt.number, DeliveryAttempt.status_code, DeliveryAttempt.category,
                           DeliveryAttempt.started_at).where(DeliveryAttempt.delivery_id == d.id)
                    .order_by(DeliveryAttempt.id)).all()
                row["deliveries"].append({
                    "id": d.id, "state": d.state, "attempts": d.attempts, "next_attempt_at": str(d.next_attempt_at),
                    "lease_until": str(d.lease_until), "queue": d.queue_name, "message_id": d.message_id,
                    "last_error": d.last_error, "updated_at": str(d.updated_at),
                    "log": [[n, code, cat, str(at)] for n, code, cat, at in attempts]})
            found.append(row)
    return found


def run_drill(stack: Stack, name: str, plan: Plan) -> Outcome:
    """Run drill ``name`` on ``stack`` and tally what the receiver saw."""
    store = Store(stack.db.url, pool_size=1)
    sender = Sender(stack.web_port, stack.callback_path("stk"), rate=plan.rate,
                    prefix=f"{name}-{int(time.time() * 1000)}").start()
    try:
        time.sleep(plan.before)
        note = DRILLS[name](stack, plan)
        time.sleep(plan.after)
    finally:
        sender.stop()
    accepted = sender.accepted
    started = time.monotonic()
    while True:
        ids = _event_ids(store, stack.merchant.id, accepted)
        ok = collections.Counter(w for _, w, status in stack.received() if status == 200)
        delivered = [ref for ref in accepted if ok.get(ids.get(ref, ""), 0) > 0]
        if len(delivered) == len(accepted) or time.monotonic() - started > plan.drain_timeout:
            break
        time.sleep(0.5)
    missing = [ref for ref in accepted if ref not in set(delivered)]
    undelivered = _undelivered(store, ids, missing) if missing else []
    store.dispose()
    ours = set(ids.values())
    return Outcome(drill=name, sent=len(sender.sent), accepted=len(accepted),
                   refused=len(sender.sent) - len(accepted), delivered=len(delivered),
                   lost=len(accepted) - len(delivered),
                   duplicates=sum(1 for w, n in ok.items() if w in ours and n > 1),
                   drain_seconds=round(time.monotonic() - started, 1), note=note,
                   undelivered=undelivered)


def run(database_url: str | None, plan: Plan, only: list[str] | None = None) -> list[Outcome]:
    """Run the drills on one fresh stack; the database drill only on PostgreSQL."""
    outcomes = []
    with Stack(database_url, worker_env=WORKER_ENV) as stack:
        for name in only or list(DRILLS):
            if name == "stop-database" and stack.db.kind != "postgresql":
                print(f"{name}: skipped (needs PostgreSQL: set DRILL_DATABASE_URL)", flush=True)
                continue
            outcome = run_drill(stack, name, plan)
            outcomes.append(outcome)
            print(f"{outcome.drill:<14} sent {outcome.sent:>5}  accepted {outcome.accepted:>5}  "
                  f"refused {outcome.refused:>4}  delivered {outcome.delivered:>5}  lost {outcome.lost}  "
                  f"duplicates {outcome.duplicates}  (drained in {outcome.drain_seconds} s; {outcome.note})",
                  flush=True)
            for row in outcome.undelivered:
                print(f"  undelivered: {json.dumps(row)}", flush=True)
    return outcomes


def main(argv: list[str] | None = None) -> int:
    """Run the drills; exit 1 if any accepted callback was lost."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter gaps, fewer callbacks")
    parser.add_argument("--only", action="append", choices=list(DRILLS), help="run just this drill (repeatable)")
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "bench" / "drills.json")
    args = parser.parse_args(argv)
    # SIGTERM (e.g. a timeout) unwinds like Ctrl-C, so the stack's processes and database go too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    url = os.environ.get("DRILL_DATABASE_URL", os.environ.get("TEST_DATABASE_URL")) or None
    outcomes = run(url, QUICK if args.quick else FULL, args.only)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps([dataclasses.asdict(o) for o in outcomes], indent=2))
    lost = sum(o.lost for o in outcomes)
    print(f"{'FAIL' if lost else 'ok'}: {lost} accepted callback(s) lost; written {args.out}")
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
