"""A bounded pool that behaves like N synchronous workers, driven by one anyio task group.

Work is taken in order; an item that must wait (backoff) waits in a timer heap, not in a worker,
so the other workers go on. With `adaptive`, the number in flight shrinks on throttling
(multiplicative decrease, at most once per window) and grows back by one per window of successes.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import anyio

T = TypeVar("T")


class AdaptiveTarget:
    """How many requests may be in flight: AIMD between 1 and the configured ceiling.

    A window is as many completed requests as the target itself (one round of the pool), so
    a burst of 429s from one round halves the target once, not once per error.
    """

    def __init__(self, ceiling: int, enabled: bool = True) -> None:
        self.ceiling = ceiling
        self.enabled = enabled
        self.value = ceiling
        self._since_decrease = ceiling  # allow the first decrease at once
        self._successes = 0

    def on_throttled(self) -> None:
        """A 429 or 503: shrink, unless this window already shrank."""
        self._successes = 0
        if not self.enabled or self._since_decrease < self.value:
            self._since_decrease += 1
            return
        self.value = max(1, self.value // 2)
        self._since_decrease = 0

    def on_success(self) -> None:
        """A request that was not throttled: after a window of them, grow by one."""
        self._since_decrease += 1
        if not self.enabled or self.value >= self.ceiling:
            return
        self._successes += 1
        if self._successes >= self.value:
            self.value += 1
            self._successes = 0


class WorkPool(Generic[T]):
    """Runs `handler(item)` for every item, at most `target` at once, items in order."""

    def __init__(
        self,
        concurrency: int,
        adaptive: bool = True,
        rate_limit_rpm: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.target = AdaptiveTarget(concurrency, adaptive)
        self._ready: deque[T] = deque()
        self._delayed: list[tuple[float, int, T]] = []
        self._sequence = itertools.count()
        self._in_flight = 0  # requests holding a slot
        self._active = 0  # handlers still running (a released one may still defer its item)
        self._stopping = False
        self._changed = anyio.Event()
        self._clock = clock
        self._interval_s = 60.0 / rate_limit_rpm if rate_limit_rpm else 0.0
        self._next_start = 0.0
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

    def _notify(self) -> None:
        # A fresh event only when the dispatcher is waiting on this one: notifications come
        # several times per request, waits far less often.
        if not self._changed.is_set():
            self._changed.set()

    def _take(self) -> tuple[T | None, float | None]:
        """The next item to start, or None and how long until a deferred one is due."""
        now = self._clock()
        if self._delayed and self._delayed[0][0] <= now:
            return heapq.heappop(self._delayed)[2], None
        if self._ready:
            return self._ready.popleft(), None
        if self._delayed:
            return None, self._delayed[0][0] - now
        return None, math.inf

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

    async def run(self, handler: Callable[[T, Callable[[], None]], Awaitable[None]]) -> None:
        """Handle every item (including deferred ones) until none is left or stop() is called.

        `handler(item, release)` may call `release()` as soon as its request is answered, so the
        next request starts while it records the answer (saving, ledger); its slot is released
        when it returns otherwise. The pool ends only when no handler is still running, since a
        handler may defer its item for a retry.
        """

        async def work(item: T) -> None:
            released = False

            def release() -> None:
                nonlocal released
                if not released:
                    released = True
                    self._in_flight -= 1
                    self._notify()

            try:
                await handler(item, release)
            finally:
                release()
                self._active -= 1
                self._notify()

        async with anyio.create_task_group() as group:
            self._cancel_scope = group.cancel_scope
            while not self._stopping:
                if self._in_flight >= self.target.value:
                    await self._wait_for_change(math.inf)
                    continue
                item, wait_s = self._take()
                if item is None:
                    assert wait_s is not None
                    if self._active == 0 and math.isinf(wait_s):
                        break
                    await self._wait_for_change(wait_s)
                    continue
                if self._interval_s:
                    delay = self._next_start - self._clock()
                    if delay > 0:
                        await anyio.sleep(delay)
                    self._next_start = max(self._next_start, self._clock()) + self._interval_s
                    if self._stopping:
                        self._ready.appendleft(item)
                        break
                self._in_flight += 1
                self._active += 1  # counted now: the task starts later
                self.max_in_flight = max(self.max_in_flight, self._in_flight)
                group.start_soon(work, item)
