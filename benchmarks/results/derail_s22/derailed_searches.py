"""Session 22: is the ALFWorld expert's planner time spent on episodes that are already
derailed, and do derailed episodes still win? If both answers were "all" and "never", a cheaper
expert (no planner once derailed) would be a free speed-up; this measures whether it is.

SIMULATED tiers (bf16-sim / w4-sim), DMR-ALFWorld-v0, the first 40 valid_unseen tasks spread
as ``evaluate`` spreads them, episode seed 0, one process, no plan folder (every search runs).
Usage: python derailed_searches.py ROUTER   (a baseline name, or a router file at K = 0.4)

Each real search (``call_with_timeout``, the planner's forked child) is timed inside
``ALFWorldTask._plan`` and keyed by (task, commands so far); the simulated pair's
``derailed(ctx)`` is recorded for the same key when it builds the step's distribution. An
episode is derailed when any of its steps was.
"""

import json
import sys
import time

from precision_gym.threads import configure_torch_threads

configure_torch_threads(1)

import precision_gym.tasks.alfworld as alfworld  # noqa: E402
from precision_gym.backends.simulated import SimulatedPrecisionPair  # noqa: E402
from training.cli.common import make_env  # noqa: E402
from training.evaluation import evaluate  # noqa: E402
from training.policies import load_policy  # noqa: E402

searches: list[tuple[str, int, float]] = []  # (task id, commands so far, search seconds)
derailed: dict[tuple[str, int], bool] = {}
spent = [0.0]

call_with_timeout = alfworld.call_with_timeout


def timed_call(*args, **kwargs):
    start = time.perf_counter()
    try:
        return call_with_timeout(*args, **kwargs)
    finally:
        spent[0] += time.perf_counter() - start


plan = alfworld.ALFWorldTask._plan


def timed_plan(self):
    before = spent[0]
    out = plan(self)
    if spent[0] > before:
        searches.append((self.task_id, len(self._commands), spent[0] - before))
    return out


distribution = SimulatedPrecisionPair.distribution


def recorded_distribution(self, tier, ctx):
    derailed[(ctx.task_id, len(ctx.actions))] = self.derailed(ctx)
    return distribution(self, tier, ctx)


alfworld.call_with_timeout = timed_call
alfworld.ALFWorldTask._plan = timed_plan
SimulatedPrecisionPair.distribution = recorded_distribution

router = sys.argv[1]
env = make_env("DMR-ALFWorld-v0", {})
policy = load_policy(router, env, budget=0.4 if router.endswith(".pt") else None)
start = time.perf_counter()
result = evaluate(policy, env, split="valid_unseen", episodes=40, seeds=(0,), progress=False)
wall = time.perf_counter() - start
lost = {task for (task, _), d in derailed.items() if d}
searched = {task for task, _, _ in searches}
print(
    json.dumps(
        {
            "router": router,
            "episodes": len(result.records),
            "won": sum(r.won for r in result.records),
            "wall_s": round(wall, 1),
            "searches": len(searches),
            "search_s": round(sum(s for *_, s in searches), 1),
            "searches_on_derailed_states": sum(derailed.get((t, k), False) for t, k, _ in searches),
            "search_s_on_derailed_states": round(
                sum(s for t, k, s in searches if derailed.get((t, k), False)), 1
            ),
            "derailed_episodes": len(lost),
            "derailed_episodes_won": sum(r.won for r in result.records if r.task_id in lost),
            "episodes_with_searches": len(searched),
            "episodes_with_searches_won": sum(
                r.won for r in result.records if r.task_id in searched
            ),
        }
    )
)
