"""HTTP to the server: a pooled ``httpx.AsyncClient`` and POST with bounded retries.

This is the backend's one retry layer: timeouts, dropped connections and HTTP 5xx/429 are
retried ``max_retries`` times with exponential backoff, per request, within the step deadline
a request carries; HTTP 4xx and non-JSON bodies fail at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

import httpx

from precision_gym.error import BackendError

__all__ = ["HTTPSettings", "RetryingTransport", "snippet"]

log = logging.getLogger(__name__)


def snippet(x: Any, n: int = 300) -> str:
    """``x`` as text, cut to ``n`` characters (the length that came is said)."""
    s = x if isinstance(x, str) else repr(x)
    return s if len(s) <= n else s[:n] + f"... ({len(s)} chars)"


def _with_attempts(exc: BackendError, attempts: int) -> BackendError:
    """Tag an error with the number of HTTP requests really sent (for ``call_log``)."""
    exc.attempts = attempts
    return exc


class HTTPSettings(Protocol):
    """What the transport reads from its backend at each call (so a changed setting applies)."""

    name: str
    base_url: str
    timeout_s: float
    connect_timeout_s: float
    max_retries: int
    backoff_s: float
    backoff_max_s: float
    max_concurrency: int


class RetryingTransport:
    """POST JSON to ``settings.base_url`` with per-request timeouts and bounded retries.

    The client and its semaphore (``max_concurrency`` requests in flight) are created on
    first use, on the event loop that runs the coroutines.
    """

    def __init__(
        self,
        settings: HTTPSettings,
        headers: dict[str, str],
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self._headers = headers
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._sem: asyncio.Semaphore | None = None

    @property
    def deadline_s(self) -> float:
        """Upper bound on one request including retries and backoff (no call hangs longer)."""
        cfg = self.settings
        per = cfg.timeout_s + cfg.connect_timeout_s
        backoff = sum(min(cfg.backoff_max_s, cfg.backoff_s * 2**a) for a in range(cfg.max_retries))
        return (cfg.max_retries + 1) * per + backoff + 10.0

    def malformed(self, path: str, expected: str, got: Any) -> BackendError:
        """The error for a response of the wrong shape (retryable)."""
        cfg = self.settings
        return BackendError(
            f"{cfg.name}: malformed response from POST {cfg.base_url}{path}: expected "
            f"{expected}; got {snippet(got)}"
        )

    async def client(self) -> httpx.AsyncClient:
        cfg = self.settings
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(cfg.timeout_s, connect=cfg.connect_timeout_s),
                limits=httpx.Limits(
                    max_connections=cfg.max_concurrency,
                    max_keepalive_connections=cfg.max_concurrency,
                ),
                headers=self._headers,
                transport=self._transport,
            )
            self._sem = asyncio.Semaphore(cfg.max_concurrency)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def healthy(self) -> bool:
        """Whether ``GET /health`` answers 200 (no retries)."""
        cfg = self.settings
        client = await self.client()
        try:
            return (await client.get(f"{cfg.base_url}/health")).status_code == 200
        except httpx.HTTPError:
            return False

    async def post(
        self, path: str, payload: dict[str, Any], deadline: float | None = None
    ) -> tuple[Any, int]:
        """POST JSON with bounded retries; returns ``(json, attempts)``.

        ``deadline`` (a ``time.monotonic()`` instant) bounds all attempts together: each
        attempt's timeouts are cut to the time left and no attempt or backoff starts after it.
        """
        cfg = self.settings
        client = await self.client()
        assert self._sem is not None
        url = f"{cfg.base_url}{path}"
        last = "nothing"
        attempts = 0
        late = ""
        for attempt in range(cfg.max_retries + 1):
            attempts = attempt + 1
            timeout = cfg.timeout_s
            request_timeout: httpx.Timeout | None = None
            if deadline is not None:
                left = deadline - time.monotonic()
                timeout = max(0.001, min(cfg.timeout_s, left))
                request_timeout = httpx.Timeout(
                    timeout, connect=max(0.001, min(cfg.connect_timeout_s, left))
                )
            try:
                async with self._sem:
                    if request_timeout is None:
                        resp = await client.post(url, json=payload)
                    else:
                        resp = await asyncio.wait_for(
                            client.post(url, json=payload, timeout=request_timeout),
                            max(0.001, deadline - time.monotonic()),  # type: ignore[operator]
                        )
            except (httpx.TimeoutException, asyncio.TimeoutError) as exc:
                last = f"a timeout ({type(exc).__name__}, timeout {timeout:g} s)"
            except httpx.TransportError as exc:
                last = f"a connection error ({type(exc).__name__}: {exc})"
            else:
                if resp.status_code == 200:
                    try:
                        return resp.json(), attempts
                    except ValueError:
                        raise _with_attempts(
                            BackendError(
                                f"{cfg.name}: malformed response from POST {url}: expected a "
                                f"JSON body; got {snippet(resp.text)!r}"
                            ),
                            attempts,
                        ) from None
                body = snippet(resp.text)
                if resp.status_code >= 500 or resp.status_code == 429:
                    last = f"HTTP {resp.status_code}: {body}"
                else:
                    raise _with_attempts(
                        BackendError(
                            f"{cfg.name}: POST {url}: expected HTTP 200; got HTTP "
                            f"{resp.status_code}: {body}",
                            retryable=False,
                        ),
                        attempts,
                    )
            if attempt < cfg.max_retries:
                delay = min(cfg.backoff_max_s, cfg.backoff_s * 2**attempt)
                if deadline is not None and time.monotonic() + delay >= deadline:
                    late = " before the step deadline"
                    break
                log.warning(
                    "%s: POST %s attempt %d failed (%s); retrying in %.2f s",
                    cfg.name,
                    url,
                    attempts,
                    last,
                    delay,
                )
                await asyncio.sleep(delay)
        raise BackendError(
            f"{cfg.name}: POST {url} failed after {attempts} attempts{late}: expected HTTP "
            f"200 with a JSON body; got {last}",
            attempts=attempts,
        )
