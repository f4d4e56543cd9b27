"""[read] Request coalescing: concurrent latest reads of one shape share one statement.

While a statement of a shape runs, requests of that shape that arrive wait together; when it
returns, the first of them runs one statement for all of their symbols and each takes its own
rows. A request therefore waits at most for the statement in flight plus its own (one extra
round trip), and a lone request runs at once, as without coalescing. :class:`Gate` serves
threads (the sync store), :class:`AsyncGate` asyncio tasks (one event loop); both take the
function that runs a merged request, so they hold no database logic.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any

__all__ = ["Gate", "AsyncGate"]

Rows = Any  # what a request gets back (rows, or a plan and rows)


class _Batch:
    def __init__(self) -> None:
        self.requests: list[Sequence[str]] = []
        self.results: list[Rows] | None = None
        self.error: BaseException | None = None


class _ThreadBatch(_Batch):
    def __init__(self) -> None:
        super().__init__()
        self.go = threading.Event()  # this batch may run now (the statement before it returned)
        self.done = threading.Event()


class Gate:
    """Coalescing for threads. ``run(shape, names, execute)``: ``execute(list of requests)``
    returns one row list per request; the caller gets its own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._busy: set[Hashable] = set()
        self._pending: dict[Hashable, _ThreadBatch] = {}
        self.statements = 0  # statements run (for tests and stats)
        self.requests = 0

    def run(self, shape: Hashable, names: Sequence[str], execute: Callable[[list[Sequence[str]]], list[Rows]]) -> Rows:
        with self._lock:
            self.requests += 1
            if shape not in self._busy:
                self._busy.add(shape)
                batch = None
            else:
                batch = self._pending.get(shape)
                if batch is None:
                    batch = self._pending[shape] = _ThreadBatch()
                first = not batch.requests
                index = len(batch.requests)
                batch.requests.append(names)
        if batch is None:  # nothing in flight: run alone, now
            try:
                return self._execute(execute, [names])[0]
            finally:
                self._hand_over(shape)
        if first:
            batch.go.wait()
            with self._lock:  # the batch is closed: later arrivals start the next one
                if self._pending.get(shape) is batch:
                    del self._pending[shape]
            try:
                batch.results = self._execute(execute, batch.requests)
            except BaseException as exc:
                batch.error = exc
            finally:
                batch.done.set()
                self._hand_over(shape)
        else:
            batch.done.wait()
        if batch.error is not None:
            raise batch.error
        assert batch.results is not None
        return batch.results[index]

    def _execute(self, execute: Callable[[list[Sequence[str]]], list[Rows]], requests: list[Sequence[str]]) -> list[Rows]:
        with self._lock:
            self.statements += 1
        return execute(requests)

    def _hand_over(self, shape: Hashable) -> None:
        """The statement of ``shape`` returned: let the waiting batch run, or mark the shape idle."""
        with self._lock:
            batch = self._pending.get(shape)
            if batch is None:
                self._busy.discard(shape)
                return
        batch.go.set()


class _TaskBatch:
    def __init__(self, execute: Callable[[list[Sequence[str]]], Awaitable[list[Rows]]]) -> None:
        self.execute = execute
        self.requests: list[Sequence[str]] = []
        self.waiters: list[asyncio.Future[Rows]] = []


class AsyncGate:
    """Coalescing for asyncio tasks of one event loop (no locks: the loop runs one task at a time).

    A waiting batch runs in a task of its own, started when the statement before it returns,
    and hands each request its rows through the request's own future: cancelling a waiting
    request gives up its place (its symbols leave the statement if it has not started), and
    cancelling the request whose statement is in flight cancels that statement alone (its
    connection goes back clean: the pool resets or discards it)."""

    def __init__(self) -> None:
        self._busy: set[Hashable] = set()
        self._pending: dict[Hashable, _TaskBatch] = {}
        self._runners: set[asyncio.Task[None]] = set()
        self.statements = 0
        self.requests = 0

    async def run(
        self, shape: Hashable, names: Sequence[str], execute: Callable[[list[Sequence[str]]], Awaitable[list[Rows]]]
    ) -> Rows:
        self.requests += 1
        if shape not in self._busy:
            self._busy.add(shape)
            try:
                self.statements += 1
                return (await execute([names]))[0]
            finally:
                self._hand_over(shape)
        batch = self._pending.get(shape)
        if batch is None:
            batch = self._pending[shape] = _TaskBatch(execute)
        waiter: asyncio.Future[Rows] = asyncio.get_running_loop().create_future()
        batch.requests.append(names)
        batch.waiters.append(waiter)
        return await waiter

    def _hand_over(self, shape: Hashable) -> None:
        """The statement of ``shape`` returned: start the waiting batch, or mark the shape idle."""
        batch = self._pending.pop(shape, None)
        if batch is None:
            self._busy.discard(shape)
            return
        task = asyncio.get_running_loop().create_task(self._run_batch(shape, batch))
        self._runners.add(task)
        task.add_done_callback(self._runners.discard)

    async def _run_batch(self, shape: Hashable, batch: _TaskBatch) -> None:
        try:
            live = [k for k, w in enumerate(batch.waiters) if not w.done()]  # cancelled ones drop out
            if live:
                self.statements += 1
                got = await batch.execute([batch.requests[k] for k in live])
                for k, rows in zip(live, got):
                    if not batch.waiters[k].done():
                        batch.waiters[k].set_result(rows)
        except BaseException as exc:
            for w in batch.waiters:
                if not w.done():
                    w.set_exception(exc)
        finally:
            self._hand_over(shape)

    async def aclose(self) -> None:
        """Wait for the batches started (a store closing)."""
        while self._runners:
            await asyncio.gather(*list(self._runners), return_exceptions=True)
