"""A local process pool that does not outlive its caller.

``concurrent.futures.ProcessPoolExecutor`` leaves its workers running when the parent dies of
a ``SIGTERM`` (``kill``, ``pkill -f script.py``, a batch scheduler's time limit): the signal's
default action ends the parent at once, no ``finally`` runs, and the workers play on as
orphans. :func:`process_pool` turns ``SIGTERM`` into ``SystemExit(143)`` while it is open (in
the main thread, where no other handler was set), and on any exception leaving the block,
``KeyboardInterrupt`` and ``SystemExit`` included, cancels the pending work and terminates the
workers. Workers start with ``forkserver`` (``spawn`` where that is missing), never ``fork``.

:func:`run_logged` runs one command in its own process, its output to a log, and stops that
process if the caller is interrupted (a Ray task cancelled, ``KeyboardInterrupt``).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import multiprocessing as mp
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["PARENT_PID_ENV", "child_environment", "process_pool", "run_logged", "start_method"]

#: set in a :func:`run_logged` child's environment to the pid of the process that started it,
#: so that the child can tell whether it was orphaned before it could ask to end with its parent
PARENT_PID_ENV = "PRECISION_GYM_PARENT_PID"


def start_method() -> str:
    """``forkserver`` where the platform has it, else ``spawn``."""
    return "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _terminate(pool: concurrent.futures.ProcessPoolExecutor) -> None:
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()


@contextlib.contextmanager
def process_pool(
    max_workers: int,
    *,
    initializer: Callable[..., Any] | None = None,
    initargs: tuple[Any, ...] = (),
) -> Iterator[concurrent.futures.ProcessPoolExecutor]:
    """A ``ProcessPoolExecutor`` of ``max_workers`` processes whose workers end with the block:
    on a normal exit after their work (``shutdown(wait=True)``), on an exception or a
    ``SIGTERM`` at once (pending work cancelled, workers terminated)."""
    if max_workers < 1:
        raise ValueError(f"max_workers must be >= 1, got {max_workers}")
    pool = concurrent.futures.ProcessPoolExecutor(
        max_workers=max_workers,
        mp_context=mp.get_context(start_method()),
        initializer=initializer,
        initargs=initargs,
    )
    restore = None
    main = threading.current_thread() is threading.main_thread()
    if main and signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        restore = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        yield pool
    except BaseException:
        _terminate(pool)
        raise
    else:
        pool.shutdown(wait=True)
    finally:
        if restore is not None:
            signal.signal(signal.SIGTERM, restore)


def child_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a child process this one starts: its own, ``extra`` added, and
    :data:`PARENT_PID_ENV` set to this process's pid."""
    return {**os.environ, **(extra or {}), PARENT_PID_ENV: str(os.getpid())}


def run_logged(
    cmd: list[str], log_path: str, *, cwd: str | None = None, env: dict[str, str] | None = None
) -> int:
    """Run ``cmd`` in its own process, stdout and stderr to ``log_path``, in
    :func:`child_environment` (``env`` added); returns its exit status. Whatever interrupts the
    wait (``KeyboardInterrupt``: how ``ray.cancel`` stops a running task) stops the process
    first: SIGTERM, then SIGKILL after 30 s."""
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env=child_environment(env)
        )
        try:
            return proc.wait()
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
