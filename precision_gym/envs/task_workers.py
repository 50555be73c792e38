"""Task engines in worker processes: :class:`WorkerTaskSlots`, the multi-process ``TaskSlots``.

TextWorld (ALFWorld) and the WebShop engine are CPU-bound Python, so threads do not run them
in parallel; each worker process owns the task instances of its share of the slots (and keeps
their planner memo warm) and answers batched commands over a ``multiprocessing`` pipe, the way
Gymnasium's ``AsyncVectorEnv`` runs its workers. Workers start with ``forkserver`` (``spawn``
where that is missing), import the package themselves and set one torch intra-op thread
(:func:`precision_gym.threads.configure_torch_threads`).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import pickle
import traceback
from collections.abc import Sequence
from typing import Any

from precision_gym.envs.agent_step import LocalTaskSlots, TaskStart
from precision_gym.error import ConfigError, PrecisionGymError
from precision_gym.tasks.base import TaskObservation, TextTask
from precision_gym.threads import available_cores

__all__ = ["RayTaskSlots", "WorkerTaskSlots"]


_COMMANDS = (
    "reset",
    "step",
    "expert_commands",
    "forced_pending",
    "reset_flags",
    "step_flags",
    "prefetch_experts",
)
#: commands the driver sends without waiting: the worker does them between two calls
_NO_REPLY = ("prefetch_experts",)


def _worker(conn: Any, task_blob: bytes, n_slots: int) -> None:
    """Worker loop: owns ``n_slots`` copies of the task; answers until "close"."""
    from precision_gym.threads import configure_torch_threads

    configure_torch_threads(explicit=False)
    try:
        local = LocalTaskSlots([pickle.loads(task_blob) for _ in range(n_slots)])
    except Exception as exc:
        conn.send((False, PrecisionGymError(f"task worker failed to start: {exc!r}")))
        return
    conn.send((True, "ready"))
    while True:
        try:
            cmd, payload = conn.recv()
        except (EOFError, KeyboardInterrupt):
            break
        if cmd == "close":
            local.close()
            conn.send((True, None))
            break
        if cmd in _NO_REPLY:  # never answered, even on error: an answer here would be read
            with contextlib.suppress(Exception):  # as the reply to the driver's next call
                getattr(local, cmd)(payload)
            continue
        try:
            if cmd not in _COMMANDS:
                raise PrecisionGymError(
                    f"unknown task-worker command {cmd!r}: expected {_COMMANDS}"
                )
            conn.send((True, getattr(local, cmd)(payload)))
        except Exception as exc:  # sent back and raised in the driver
            try:
                pickle.dumps(exc)
                conn.send((False, exc))
            except Exception:
                conn.send((False, PrecisionGymError(traceback.format_exc())))
    conn.close()


class WorkerTaskSlots:
    """``num_slots`` task instances spread over ``workers`` processes (dealt round robin).

    Args:
        task: the task prototype (not reset); every slot gets a copy made in its worker.
        num_slots: number of episodes run side by side.
        workers: worker processes (``1 <= workers <= num_slots``).
        context: multiprocessing start method (default ``forkserver``, else ``spawn``).
    """

    #: the tasks run in other processes: their work can overlap the driver's
    remote = True

    def __init__(
        self, task: TextTask, num_slots: int, workers: int, context: str | None = None
    ) -> None:
        if not 1 <= workers <= num_slots:
            raise ConfigError(
                f"workers must be in [1, num_envs={num_slots}] (0 runs the tasks in this "
                f"process), got {workers}"
            )
        if context is None:
            context = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        ctx = mp.get_context(context)
        counts = self._lay_out(task, num_slots, workers)
        blob = pickle.dumps(task)
        self._conns: list[Any] = []
        self._procs: list[Any] = []
        try:
            for w in range(workers):
                parent, child = ctx.Pipe()
                proc = ctx.Process(
                    target=_worker,
                    args=(child, blob, counts[w]),
                    name=f"precision-gym-task-worker-{w}",
                    daemon=True,
                )
                proc.start()
                child.close()
                self._conns.append(parent)
                self._procs.append(proc)
            self._closed = False
            for w, conn in enumerate(self._conns):  # each worker imported the package, built
                ok, result = conn.recv() if conn.poll(300) else (False, None)  # its tasks
                if not ok:
                    raise result or PrecisionGymError(f"task worker {w} did not start in 300 s")
        except BaseException:
            self._closed = False
            self.close()
            raise

    def _lay_out(self, task: TextTask, num_slots: int, workers: int) -> list[int]:
        """Slots dealt round robin (slot ``s`` on worker ``s % workers``): sets ``_where``
        (slot -> (worker, index inside the worker)) and returns each worker's slot count.

        Neighbouring slots tend to hold similar episodes (task indices in order, and ALFWorld's
        games are sorted by task type, which sets much of an episode's length and load time),
        so contiguous blocks would give one worker the long ones while the other idles: on
        ``bench_rollout``'s 8 episodes, blocks put 64% of the task-engine CPU time on one of
        the two workers, round robin 52%."""
        self.task_name = task.name
        self._proto = task
        self._forced: dict[int, bool] = {}  # slot -> forced-high flag of its current state
        self.num_slots = num_slots
        self._where = {s: (s % workers, s // workers) for s in range(num_slots)}
        return [len(range(w, num_slots, workers)) for w in range(workers)]

    @property
    def workers(self) -> int:
        return len(self._procs)

    @property
    def encode_threads(self) -> int:
        """Threads for the driver's encoder call: the cores of these workers, which wait for
        their next command while it runs (they only prefetch expert commands then)."""
        return max(1, min(self.workers, available_cores()))

    # -- batched calls -------------------------------------------------------------
    def _exchange(self, cmd: str, parts: dict[int, list[Any]]) -> dict[int, tuple[bool, Any]]:
        """Send each worker its part at once, then collect ``(ok, result)`` per worker."""
        for w, part in parts.items():
            self._conns[w].send((cmd, part))
        answers = {}
        for w in parts:
            try:
                answers[w] = self._conns[w].recv()
            except EOFError:
                answers[w] = (False, PrecisionGymError(f"task worker {w} died"))
        return answers

    def _call(self, cmd: str, items: Sequence[Any], slot_of: Any) -> list[Any]:
        """Send each worker its part of ``items`` at once, then gather in item order."""
        if self._closed:
            raise PrecisionGymError("the task workers are closed")
        parts: dict[int, list[tuple[int, Any]]] = {}
        for k, item in enumerate(items):
            w, local = self._where[slot_of(item)]
            parts.setdefault(w, []).append((k, self._localise(item, local)))
        answers = self._exchange(cmd, {w: [x for _, x in part] for w, part in parts.items()})
        out: list[Any] = [None] * len(items)
        error: BaseException | None = None
        for w, part in parts.items():
            ok, result = answers[w]
            if not ok:
                error = error or result
                continue
            for (k, _), value in zip(part, result, strict=True):
                out[k] = value
        if error is not None:
            raise error
        return out

    @staticmethod
    def _localise(item: Any, local: int) -> Any:
        return local if isinstance(item, int) else (local, *item[1:])

    def reset(self, items: Sequence[tuple[int, str, int]]) -> list[TaskStart]:
        return self._with_flags("reset_flags", items)

    def step(self, items: Sequence[tuple[int, str]]) -> list[TaskObservation]:
        return self._with_flags("step_flags", items)

    def _with_flags(self, cmd: str, items: Sequence[Any]) -> list[Any]:
        """Reset or step; the answers carry each slot's forced-high flag, kept here so that
        :meth:`forced_pending` needs no second round trip."""
        slots = [item[0] for item in items]
        for slot in slots:
            self._forced.pop(slot, None)
        out = []
        for slot, (value, flag) in zip(
            slots, self._call(cmd, items, lambda it: it[0]), strict=True
        ):
            if flag is not None:
                self._forced[slot] = bool(flag)
            out.append(value)
        return out

    def expert_commands(self, slots: Sequence[int]) -> list[str | None]:
        return self._call("expert_commands", slots, lambda s: s)

    def forced_pending(self, slots: Sequence[int]) -> list[bool]:
        if all(s in self._forced for s in slots):
            return [self._forced[s] for s in slots]
        return self._call("forced_pending", slots, lambda s: s)

    def prefetch_experts(self, slots: Sequence[int]) -> None:
        """Have each worker compute its slots' expert commands now, without waiting: the work
        overlaps the driver's (encoding, routing) and the next ``expert_commands`` call finds
        them done."""
        if self._closed:
            raise PrecisionGymError("the task workers are closed")
        parts: dict[int, list[int]] = {}
        for slot in slots:
            w, local = self._where[slot]
            parts.setdefault(w, []).append(local)
        self._post("prefetch_experts", parts)

    def _post(self, cmd: str, parts: dict[int, list[Any]]) -> None:
        for w, part in parts.items():  # a dead worker is reported by the next call
            with contextlib.suppress(OSError):
                self._conns[w].send((cmd, part))

    def step_kind(self, slot: int, command: str) -> str:
        """A command's kind depends on the command only: the prototype answers it here."""
        return self._proto.step_kind(command)

    def close(self) -> None:
        """Stop every worker (idempotent); a worker that does not answer is terminated."""
        if getattr(self, "_closed", False):
            return
        self._closed = True
        for conn in self._conns:
            with contextlib.suppress(OSError, BrokenPipeError):
                conn.send(("close", None))
        for conn, proc in zip(self._conns, self._procs, strict=True):
            with contextlib.suppress(OSError, EOFError):  # the worker is already gone
                if conn.poll(10):
                    conn.recv()
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
            conn.close()

    def __del__(self) -> None:  # pragma: no cover - interpreter shutdown order varies
        with contextlib.suppress(Exception):
            self.close()


class _TaskActor:
    """A Ray actor owning ``n_slots`` copies of the task (one torch thread)."""

    def __init__(self, task_blob: bytes, n_slots: int) -> None:
        from precision_gym.threads import configure_torch_threads

        configure_torch_threads(explicit=False)
        self.local = LocalTaskSlots([pickle.loads(task_blob) for _ in range(n_slots)])

    def call(self, cmd: str, payload: Any) -> Any:
        if cmd not in _COMMANDS:
            raise PrecisionGymError(f"unknown task-worker command {cmd!r}: expected {_COMMANDS}")
        return getattr(self.local, cmd)(payload)

    def close(self) -> None:
        self.local.close()


class RayTaskSlots(WorkerTaskSlots):
    """``num_slots`` task instances spread over ``workers`` Ray actors (dealt round robin), on
    the cluster at ``ray_address`` (:func:`precision_gym.distributed.ray_session`): the same
    answers as :class:`WorkerTaskSlots`, the engines anywhere in the cluster."""

    def __init__(self, task: TextTask, num_slots: int, workers: int, ray_address: str) -> None:
        if not 1 <= workers <= num_slots:
            raise ConfigError(
                f"workers must be in [1, num_envs={num_slots}] for Ray actors, got {workers}"
            )
        from precision_gym.distributed import ray_session

        counts = self._lay_out(task, num_slots, workers)
        self._session = ray_session(ray_address)
        self._ray = self._session.__enter__()
        self._closed = False
        self._conns, self._procs = [], []
        try:
            actor_cls = self._ray.remote(num_cpus=1)(_TaskActor)
            blob = pickle.dumps(task)
            self._actors = [actor_cls.remote(blob, counts[w]) for w in range(workers)]
        except BaseException:
            self._session.__exit__(None, None, None)
            raise

    @property
    def workers(self) -> int:
        return len(self._actors)

    @property
    def encode_threads(self) -> int:
        return 1  # the actors' cores may be on other nodes, and Ray has them booked

    def _exchange(self, cmd: str, parts: dict[int, list[Any]]) -> dict[int, tuple[bool, Any]]:
        refs = {w: self._actors[w].call.remote(cmd, part) for w, part in parts.items()}
        answers = {}
        for w, ref in refs.items():
            try:
                answers[w] = (True, self._ray.get(ref))
            except Exception as exc:  # a RayTaskError carries the worker's exception
                cause = getattr(exc, "cause", None)
                answers[w] = (False, cause if isinstance(cause, BaseException) else exc)
        return answers

    def _post(self, cmd: str, parts: dict[int, list[Any]]) -> None:
        for w, part in parts.items():  # an actor runs one caller's calls in order; the
            self._actors[w].call.remote(cmd, part)  # answer (None) is not waited for

    def close(self) -> None:
        """End every actor (idempotent) and the Ray instance if it was started here."""
        if getattr(self, "_closed", True):
            return
        self._closed = True
        for actor in self._actors:
            with contextlib.suppress(Exception):
                self._ray.get(actor.close.remote(), timeout=30)
            with contextlib.suppress(Exception):
                self._ray.kill(actor)
        self._session.__exit__(None, None, None)
