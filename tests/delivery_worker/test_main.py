"""``payhook-delivery-worker``, the real process: how it starts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from support import wait_until


def _log(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


@pytest.mark.parametrize("env, added", [({"POOL": "urgent"}, 0), ({"POOL": "low"}, 10),
                                        ({"POOL": "low", "NICENESS": "3"}, 3)])
def test_a_pool_runs_as_nice_as_its_priority(sqlite_template, redis_url, tmp_path, env, added):
    """On a shared host the kernel runs URGENT work before LOW: each pool adds its niceness at start."""
    database = tmp_path / "payhook.db"
    shutil.copy(sqlite_template, database)
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "payhook-delivery-worker")],
            env={**os.environ, "DATABASE_URL": f"sqlite:///{database}", "REDIS_URL": redis_url, "HEALTH_PORT": "0",
                 "THREADS": "1", "LOG_FORMAT": "text", **env},
            stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        wait_until(lambda: "delivery worker up" in _log(log), timeout=60, what="the worker up")
        assert psutil.Process(proc.pid).nice() == os.nice(0) + added
        assert f"niceness {os.nice(0) + added}" in _log(log)
    finally:
        proc.terminate()
        proc.wait(30)
