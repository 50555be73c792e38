"""Does running Fast Downward's search in a forked child (call_with_timeout) cost more than in-process?"""
import random, time, sys
import torch  # the benchmark's processes hold torch: fork copies its page tables
from precision_gym.tasks.alfworld import ALFWorldTask, call_with_timeout
t = ALFWorldTask(planner_cpu_s=30.0)
rng = random.Random(0)
rows = []
for idx in range(0, 400, 20):
    obs = t.reset("train", idx)
    for _ in range(6):
        cmds = [c for c in obs.admissible_commands if not c.startswith(("look", "inventory", "examine", "help"))]
        obs = t.step(rng.choice(cmds))
    pddl = t._pddl_env()
    t._load_replan_task(pddl)
    fn = lambda: list(pddl._pddl_state.replan(pddl._entity_infos) or [])
    a = time.perf_counter(); p1 = fn(); a = time.perf_counter() - a
    b = time.perf_counter(); p2, cut = call_with_timeout(fn, None, 30.0); b = time.perf_counter() - b
    c = time.perf_counter(); p3 = fn(); c = time.perf_counter() - c
    rows.append((a, b, c)); print(f"{idx:4d} inproc {a:.3f} forked {b:.3f} inproc2 {c:.3f} same={p1==p2==p3} len={len(p1)}", flush=True)
import statistics as st
print("sum inproc %.2f forked %.2f inproc2 %.2f" % tuple(sum(r[i] for r in rows) for i in range(3)))
