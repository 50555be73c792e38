"""Session 21: does Fast Downward's search cost more in a forked child (``call_with_timeout``,
as the ALFWorld expert runs it) than in-process? The same search, on 20 train games, each
after six random commands (not look/inventory/examine/help), timed in-process, forked, and
in-process again; the plans must be equal."""

import random
import time

import torch  # noqa: F401  (the benchmark's processes hold torch when they fork)

from precision_gym.tasks.alfworld import ALFWorldTask, call_with_timeout

SKIP = ("look", "inventory", "examine", "help")


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


task = ALFWorldTask(planner_cpu_s=30.0)
rng = random.Random(0)
totals = [0.0, 0.0, 0.0]
for index in range(0, 400, 20):
    obs = task.reset("train", index)
    for _ in range(6):
        obs = task.step(rng.choice([c for c in obs.admissible_commands if not c.startswith(SKIP)]))
    pddl = task._pddl_env()
    task._load_replan_task(pddl)

    def search(pddl=pddl):
        return list(pddl._pddl_state.replan(pddl._entity_infos) or [])

    p1, a = timed(search)
    (p2, _cut), b = timed(lambda: call_with_timeout(search, None, 30.0))
    p3, c = timed(search)
    totals = [totals[0] + a, totals[1] + b, totals[2] + c]
    print(
        f"{index:4d} inproc {a:.3f} forked {b:.3f} inproc2 {c:.3f} "
        f"same={p1 == p2 == p3} len={len(p1)}",
        flush=True,
    )
print(f"sum inproc {totals[0]:.2f} forked {totals[1]:.2f} inproc2 {totals[2]:.2f}")
