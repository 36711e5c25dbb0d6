"""A bounded pool that behaves like N synchronous workers, driven by one anyio task group.

Work is taken in order; an item that must wait (backoff) waits in a timer heap, not in a worker,
so the other workers go on. How many may be in flight and when the next may start is the meter's
to say (run/meters.py): with `adaptive`, the provider's limits as they are found.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import anyio

from batchbanana.rules.limits import Throttle, Ticket
from batchbanana.run.meters import FlowMeter

T = TypeVar("T")


class Slot:
    """A request's place in the pool. Releasing it says what the provider answered, so the meter
    learns the provider's limits; calling it releases it with an ordinary answer."""

    __slots__ = ("_pool", "_released", "ticket")

    def __init__(self, pool: WorkPool[Any], ticket: Ticket) -> None:
        self._pool = pool
        self.ticket = ticket
        self._released = False

    def __call__(self) -> None:
        self.release()

    def release(
        self,
        throttle: Throttle = Throttle.NONE,
        retry_after_s: float | None = None,
        round_trip_s: float | None = None,
        window_hint_s: float | None = None,
    ) -> None:
        """The provider answered: the slot is free, and the answer tells about its limits."""
        if not self._released:
            self._released = True
            try:
                now = self._pool.now()
                self._pool.meter.answered(
                    self.ticket, now, throttle, retry_after_s, round_trip_s, window_hint_s
                )
            finally:
                self._pool.freed()

    def abandon(self) -> None:
        """The request ended with no answer about load (or never went out): free the slot."""
        if not self._released:
            self._released = True
            try:
                self._pool.meter.abandoned(self.ticket)
            finally:
                self._pool.freed()  # whatever the meter does, the slot is free


class WorkPool(Generic[T]):
    """Runs `handler(item)` for every item, at most `target` at once, items in order."""

    def __init__(
        self,
        concurrency: int,
        adaptive: bool = True,
        rate_limit_rpm: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.meter = FlowMeter(concurrency, adaptive, rate_limit_rpm)
        self._ready: deque[T] = deque()
        self._delayed: list[tuple[float, int, T]] = []
        self._sequence = itertools.count()
        self._in_flight = 0  # requests holding a slot
        self._active = 0  # handlers still running (a released one may still defer its item)
        self._stopping = False
        self._changed = anyio.Event()
        self._clock = clock
        self._cancel_scope: anyio.CancelScope | None = None
        self.max_in_flight = 0

    @property
    def in_flight(self) -> int:
        """Requests being handled now."""
        return self._in_flight

    @property
    def stopping(self) -> bool:
        """True once stop() was called: nothing new is started."""
        return self._stopping

    def submit(self, item: T) -> None:
        """Queue an item to be handled as soon as a worker is free."""
        self._ready.append(item)
        self._notify()

    def defer(self, item: T, delay_s: float) -> None:
        """Queue an item to be handled again after `delay_s`, without holding a worker."""
        heapq.heappush(self._delayed, (self._clock() + delay_s, next(self._sequence), item))
        self._notify()

    def pending(self) -> list[T]:
        """Items not started: waiting their turn or their backoff."""
        return list(self._ready) + [entry[2] for entry in sorted(self._delayed)]

    def stop(self) -> None:
        """Start nothing more; requests in flight finish."""
        self._stopping = True
        self._notify()

    def abort(self) -> None:
        """Cancel the requests in flight too (their handlers see the cancellation)."""
        self.stop()
        if self._cancel_scope is not None:
            self._cancel_scope.cancel()

    def now(self) -> float:
        """The pool's clock."""
        return self._clock()

    def target(self) -> int:
        """How many requests may be in flight now."""
        return self.meter.target(self._clock())

    def shown_limits(self) -> str:
        """The limits in force, for the progress bar."""
        return self.meter.shown(self._clock())

    def freed(self) -> None:
        """A slot was released (Slot calls this)."""
        self._in_flight -= 1
        self._notify()

    def _notify(self) -> None:
        # A fresh event only when the dispatcher is waiting on this one: notifications come
        # several times per request, waits far less often.
        if not self._changed.is_set():
            self._changed.set()

    def _next_due(self, now: float) -> float | None:
        """Seconds until an item is ready (0: one is), or None if none is queued."""
        if self._ready or (self._delayed and self._delayed[0][0] <= now):
            return 0.0
        if self._delayed:
            return self._delayed[0][0] - now
        return None

    def _take(self, now: float) -> T:
        if self._delayed and self._delayed[0][0] <= now:
            return heapq.heappop(self._delayed)[2]
        return self._ready.popleft()

    async def _wait_for_change(self, timeout_s: float) -> None:
        if self._changed.is_set():
            self._changed = anyio.Event()
            return  # something changed since the dispatcher last looked: look again now
        changed = self._changed
        if math.isinf(timeout_s):
            await changed.wait()
            return
        with anyio.move_on_after(timeout_s):
            await changed.wait()

    async def run(self, handler: Callable[[T, Slot], Awaitable[None]]) -> None:
        """Handle every item (including deferred ones) until none is left or stop() is called.

        `handler(item, slot)` releases its slot as soon as its request is answered, saying what the
        provider answered (`slot.release(throttle, retry_after_s)`), so the next request starts
        while it records the answer (saving, ledger); a slot still held when it returns is
        abandoned. The pool ends only when no handler is still running, since a handler may defer
        its item for a retry.
        """

        async def work(item: T, slot: Slot) -> None:
            try:
                await handler(item, slot)
            finally:
                slot.abandon()
                self._active -= 1
                self._notify()

        async with anyio.create_task_group() as group:
            self._cancel_scope = group.cancel_scope
            while not self._stopping:
                now = self._clock()
                if self._in_flight >= self.meter.target(now):
                    await self._wait_for_change(self.meter.wake_in_s(now) or math.inf)
                    continue
                due_s = self._next_due(now)
                if due_s is None and self._active == 0:
                    break  # nothing queued, nothing running that could defer an item
                wait_s = max(due_s if due_s is not None else math.inf, self.meter.start_in_s(now))
                if wait_s > 0:
                    await self._wait_for_change(wait_s)
                    continue
                item = self._take(now)
                slot = Slot(self, self.meter.started(now))
                self._in_flight += 1
                self._active += 1  # counted now: the task starts later
                self.max_in_flight = max(self.max_in_flight, self._in_flight)
                group.start_soon(work, item, slot)
