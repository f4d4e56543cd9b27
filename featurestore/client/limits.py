"""[client] A store's call limits: at most ``max_concurrency`` calls in flight and a token-bucket
``rate_limit`` (calls per second, bursts of up to one second's worth), for threads and asyncio
tasks alike. Callers beyond a limit wait in arrival order; a caller still waiting after
``timeout`` seconds gets :class:`~featurestore.errors.PoolTimeoutError` (concurrency) or
:class:`~featurestore.errors.RateLimitedError` (rate) naming the limit and how to raise it. A
cancelled asyncio waiter gives up its place; a call's slot is released on every path.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

from featurestore.errors import ConfigError, PoolTimeoutError, RateLimitedError

__all__ = ["Limits"]


class _Bucket:
    """Token bucket: ``rate`` tokens a second, holding at most ``burst``; a caller reserves the
    next token (possibly in the future) and waits until it is due, so callers go in order."""

    def __init__(self, rate: float) -> None:
        self.rate = float(rate)
        self.burst = max(1.0, self.rate)
        self._tokens = self.burst
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def reserve(self, timeout: float) -> float:
        """Seconds to wait for this caller's token; RateLimitedError (nothing reserved) if more
        than ``timeout``."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            wait = 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.rate
            if wait > timeout:
                raise RateLimitedError(
                    f"rate_limit={self.rate:g} calls/s: this call would wait {wait:.3f} s for its turn, "
                    f"more than timeout={timeout:g} s; raise rate_limit or timeout, or call less often"
                )
            self._tokens -= 1
            return wait


class Limits:
    """``max_concurrency`` (None: no limit) and ``rate_limit`` (calls/s; None: none) of one store."""

    def __init__(self, max_concurrency: int | None = None, rate_limit: float | None = None, timeout: float = 30.0) -> None:
        if max_concurrency is not None and (not isinstance(max_concurrency, int) or max_concurrency < 1):
            raise ConfigError(f"max_concurrency must be a whole number >= 1 or None, got {max_concurrency!r}")
        if rate_limit is not None and not (isinstance(rate_limit, (int, float)) and rate_limit > 0):
            raise ConfigError(f"rate_limit must be a number of calls per second > 0 or None, got {rate_limit!r}")
        if not (isinstance(timeout, (int, float)) and timeout >= 0):
            raise ConfigError(f"timeout must be a number of seconds >= 0, got {timeout!r}")
        self.max_concurrency = max_concurrency
        self.rate_limit = rate_limit
        self.timeout = float(timeout)
        self._bucket = _Bucket(rate_limit) if rate_limit is not None else None
        self._cond = threading.Condition()
        self._queue: collections.deque[object] = collections.deque()  # waiting threads, in order
        self._active = 0
        self._async_sem: asyncio.Semaphore | None = None
        self._async_active = 0
        self.in_flight_peak = 0

    @property
    def active(self) -> bool:
        return self.max_concurrency is not None or self._bucket is not None

    def _concurrency_error(self, waited: float) -> PoolTimeoutError:
        return PoolTimeoutError(
            f"max_concurrency={self.max_concurrency}: no free slot after {waited:g} s (timeout); "
            "raise max_concurrency or timeout, or make fewer calls at once"
        )

    def _note(self, active: int) -> None:
        self.in_flight_peak = max(self.in_flight_peak, active)

    @contextmanager
    def slot(self) -> Iterator[None]:
        """A call's turn, for a thread."""
        deadline = time.monotonic() + self.timeout
        if self._bucket is not None:
            wait = self._bucket.reserve(self.timeout)
            if wait > 0:
                time.sleep(wait)
        if self.max_concurrency is None:
            yield
            return
        me = object()
        with self._cond:
            self._queue.append(me)
            try:
                while self._queue[0] is not me or self._active >= self.max_concurrency:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise self._concurrency_error(self.timeout)
                    self._cond.wait(left)
            except BaseException:
                self._queue.remove(me)
                self._cond.notify_all()
                raise
            self._queue.popleft()
            self._active += 1
            self._note(self._active)
            self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify_all()

    @asynccontextmanager
    async def aslot(self) -> AsyncIterator[None]:
        """A call's turn, for an asyncio task (asyncio.Semaphore: waiters wake in order)."""
        if self._bucket is not None:
            wait = self._bucket.reserve(self.timeout)
            if wait > 0:
                await asyncio.sleep(wait)
        if self.max_concurrency is None:
            yield
            return
        if self._async_sem is None:
            self._async_sem = asyncio.Semaphore(self.max_concurrency)
        if not self._async_sem.locked():
            await self._async_sem.acquire()  # free and nobody waiting: at once, whatever the timeout
        else:
            try:
                await asyncio.wait_for(self._async_sem.acquire(), self.timeout)
            except TimeoutError:
                raise self._concurrency_error(self.timeout) from None
        self._async_active += 1
        self._note(self._async_active)
        try:
            yield
        finally:
            self._async_active -= 1
            self._async_sem.release()
