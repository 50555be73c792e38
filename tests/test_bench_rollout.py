"""``benchmarks/bench_rollout.py`` runs top to bottom as a user runs it (tiny sizes)."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import ROOT


def test_bench_rollout_quick_smoke():
    proc = subprocess.run(
        [sys.executable, "benchmarks/bench_rollout.py", "--quick", "--no-ray", "--no-vllm"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert re.fullmatch(r"speedup_workers=\d+\.\d\d", lines[-2]), lines[-2]
    assert lines[-1] == "speedup_batched_http=nan"  # (e) skipped and said so
    assert any(line.startswith("(c) batched N=2, 2 worker processes") for line in lines)
    assert "encoder share of a cold step" in proc.stdout
