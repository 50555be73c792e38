"""training.pools: process_pool's workers end with the block, on SIGTERM too; run_logged's
process ends when its caller is interrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT

from training.pools import process_pool, run_logged

#: a parent that starts two workers, prints their pids and waits on work that never ends
PARENT = """
import os, time
from training.pools import process_pool
with process_pool(2) as pool:
    for _ in range(8):  # both workers started
        pool.submit(os.getpid).result()
    pending = [pool.submit(time.sleep, 600) for _ in range(4)]
    print(" ".join(map(str, sorted(set(pool._processes)))), flush=True)
    pending[0].result()
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie has ended
        return f.read().split(")")[-1].split()[0] != "Z"


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
def test_sigterm_to_the_parent_ends_its_workers():
    proc = subprocess.Popen(
        [sys.executable, "-c", PARENT], cwd=ROOT, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2 and all(_alive(p) for p in pids)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(p) for p in pids), "a worker outlived its parent"
    finally:
        proc.kill()


def test_the_pool_returns_results_and_restores_the_sigterm_handler():
    """Its handler goes in only over the default action (another library's, e.g. Ray's after
    ``ray.init`` in this test session, is left alone) and comes out with the block."""
    outer = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        with process_pool(1) as pool:
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
            assert pool.submit(pow, 2, 5).result() == 32
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL

        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # someone else's choice: kept
        with process_pool(1):
            assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, outer)
    with pytest.raises(ValueError, match="max_workers must be >= 1, got 0"), process_pool(0):
        pytest.fail("process_pool(0) must refuse before its block runs")


def test_run_logged_writes_both_streams_to_the_log_and_returns_the_status(tmp_path):
    code = "import os, sys; print('out', os.environ['PG_TEST']); print('err', file=sys.stderr); sys.exit(3)"  # fmt: skip
    log = tmp_path / "unit.log"
    assert run_logged([sys.executable, "-c", code], str(log), env={"PG_TEST": "x"}) == 3
    assert log.read_text().splitlines() == ["out x", "err"]


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
def test_run_logged_stops_its_process_when_interrupted(tmp_path):
    """KeyboardInterrupt (how ray.cancel stops a running task) ends the process it runs."""
    log = tmp_path / "unit.log"
    code = "import os, time; print(os.getpid(), flush=True); time.sleep(600)"

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 3.0)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_logged([sys.executable, "-c", code], str(log))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    pid = int(log.read_text().split()[0])
    assert not _alive(pid)
