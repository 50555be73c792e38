"""A private asyncio event loop on a daemon thread, driven from synchronous code."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["LoopThread"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class LoopThread:
    """An event loop running forever on its own daemon thread (named ``name``).

    Synchronous callers hand it coroutines (:meth:`submit`, :meth:`run`); several threads may
    do so at once. :meth:`close` runs a last coroutine (e.g. closing a client), then stops
    and joins the thread.
    """

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def in_loop_thread(self) -> bool:
        """Whether the caller runs on the loop's own thread (where blocking would deadlock)."""
        return threading.current_thread() is self._thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop; a future of its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(
        self, coro: Coroutine[Any, Any, T], wait_s: float, on_timeout: Callable[[], Exception]
    ) -> T:
        """Run ``coro`` and wait at most ``wait_s`` for it; past that, cancel it and raise
        ``on_timeout()`` (chained to the timeout)."""
        fut = self.submit(coro)
        try:
            return fut.result(timeout=wait_s)
        except concurrent.futures.TimeoutError as exc:
            fut.cancel()
            raise on_timeout() from exc

    def close(self, last: Coroutine[Any, Any, Any] | None = None) -> None:
        """Run ``last`` (10 s at most), stop the loop and join its thread."""
        if last is not None:
            try:
                self.submit(last).result(timeout=10)
            except Exception:
                log.debug("%s: closing coroutine failed", self._thread.name, exc_info=True)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()

    def stop_soon(self) -> None:
        """Ask a running loop to stop, without waiting (for ``__del__``)."""
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
