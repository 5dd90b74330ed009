"""make bench's CPU accounting: where the machine's CPU went while a load ran."""

from __future__ import annotations

import subprocess
import sys

from bench.run import _CpuMeter, _cpu_line

SPIN = "import time\nend = time.process_time() + 0.4\nwhile time.process_time() < end: pass"


def test_a_finished_childs_cpu_counts_as_the_load_generator_and_on_the_machine():
    meter = _CpuMeter({"web": lambda: 0.0})
    with meter.measure():
        subprocess.run([sys.executable, "-c", SPIN], check=True)
    cpu = meter.per_request(4)
    # 0.4 s spun, and the interpreter's start on top, over 4 requests: at least 100 ms each.
    assert cpu["load_generator"] >= 100, cpu
    assert cpu["machine"] >= cpu["load_generator"] * 0.9, cpu
    assert cpu["web"] == 0
    assert 0 < cpu["busy_cores"] <= 64
    assert _cpu_line(cpu).startswith(f"{cpu['machine']:.2f} ms (web 0.00, load generator ")


def test_parts_add_up_over_several_runs():
    clock = iter([1.0, 1.5, 3.0, 4.0])
    meter = _CpuMeter({"database": lambda: next(clock)})
    for _ in range(2):
        with meter.measure():
            pass
    assert meter.per_request(3)["database"] == 500.0  # (0.5 + 1.0) s over 3 requests
