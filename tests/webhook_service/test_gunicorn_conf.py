"""gunicorn's configuration for the webhook-service, loaded as gunicorn loads it: in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = ("import payhook_webhook.gunicorn_conf as conf, os, prometheus_client.values as values; "
         "print(values.ValueClass.__name__, conf.reuse_port, conf.worker_class, "
         "os.environ['PROMETHEUS_MULTIPROC_DIR'])")


@pytest.mark.parametrize("given", [False, True])
def test_metrics_are_multiprocess_with_or_without_a_directory_given(tmp_path, given):
    # A directory of its own, made under TMPDIR when none is given.
    env = {**{k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}, "TMPDIR": str(tmp_path)}
    if given:
        env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "metrics")
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True,
                         cwd=tmp_path).stdout.split()
    # MutexValue would keep each worker's samples to itself, and /metrics would report none of them.
    assert out[:3] == ["MmapedValue", "True", "gevent"], out
    assert os.path.isdir(out[3]) and (not given or out[3] == str(tmp_path / "metrics"))
