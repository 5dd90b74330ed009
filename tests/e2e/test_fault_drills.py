"""The short fault drills (`make drills --quick`): a real stack, a steady stream, one fault at a time.

Every callback answered "Accepted" must reach the receiver: lost is 0 in every drill.
The database drill runs only with TEST_DATABASE_URL (PostgreSQL).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_quick_drills_lose_nothing(tmp_path):
    out = tmp_path / "drills.json"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DRILL_DATABASE_URL")}
    proc = subprocess.run([sys.executable, "-m", "bench.drills", "--quick", "--out", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=140)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    outcomes = {o["drill"]: o for o in json.loads(out.read_text())}
    expected = {"kill-worker", "restart-redis", "receiver-down"}
    if os.environ.get("TEST_DATABASE_URL"):
        expected.add("stop-database")
    assert set(outcomes) == expected, proc.stdout
    for outcome in outcomes.values():
        assert outcome["accepted"] > 0, outcome
        assert outcome["lost"] == 0, outcome
        assert outcome["delivered"] == outcome["accepted"], outcome
    if "stop-database" in outcomes:
        # While the database is away the callbacks go to the Redis spool: answered, none refused, none lost.
        assert outcomes["stop-database"]["refused"] == 0, outcomes["stop-database"]
