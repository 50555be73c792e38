"""Session 19's diagnostic: time every ALFWorld planner call of one ``precision-gym`` command.

    python benchmarks/results/plan_cache_s19/diag_planner_calls.py train-grpo ARGS...

Runs the command in this process with ``call_with_timeout`` wrapped, then prints the run's wall
time, the number of planner searches, their summed wall time and their summed CPU time (the
forked children's), and the longest twelve as (wall s, CPU s, cut). SIMULATED tiers: the planner
is the simulated experts'. Run with ``--workers 1`` (the default): workers' searches are not seen.
"""

from __future__ import annotations

import contextlib
import os
import resource
import sys
import time

os.environ.pop("PRECISION_GYM_PLAN_CACHE", None)  # every search runs

import precision_gym.tasks.alfworld as alfworld
from training.cli.main import main

calls: list[tuple[float, float, str | None]] = []
_search = alfworld.call_with_timeout


def timed(fn, timeout_s, cpu_s=None):
    t = time.perf_counter()
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
    result = _search(fn, timeout_s, cpu_s)
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime - c0
    calls.append((time.perf_counter() - t, cpu, result[1]))
    return result


alfworld.call_with_timeout = timed
t0 = time.perf_counter()
with contextlib.suppress(SystemExit):  # the CLI's exit code; its output says how it went
    main(sys.argv[1:])
calls.sort(reverse=True)
print(
    f"wall {time.perf_counter() - t0:.1f} planner calls {len(calls)} "
    f"sum wall {sum(c[0] for c in calls):.1f} sum child cpu {sum(c[1] for c in calls):.1f}"
)
print("top", [(round(w, 1), round(c, 1), cut) for w, c, cut in calls[:12]])
