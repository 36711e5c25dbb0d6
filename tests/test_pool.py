"""The pool behaves like N synchronous workers: bounded, never idle while work waits."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import anyio
import anyio.lowlevel
import pytest

from batchbanana.rules.limits import Throttle
from batchbanana.run.pool import Slot, WorkPool


class Spy:
    """Counts handlers running at once."""

    def __init__(self) -> None:
        self.running = 0
        self.max_running = 0
        self.done: list[int] = []

    async def handler(self, item: int, release: Callable[[], None]) -> None:
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        await anyio.sleep(0.01)
        self.running -= 1
        self.done.append(item)


@pytest.mark.asyncio
async def test_never_more_than_n_in_flight_and_always_n_while_work_waits() -> None:
    """With 40 items and concurrency 5, at most 5 run at once, and 5 are reached."""
    spy = Spy()
    pool: WorkPool[int] = WorkPool(5, adaptive=False)
    for item in range(40):
        pool.submit(item)
    await pool.run(spy.handler)
    assert 0 < spy.max_running <= 5
    assert spy.max_running == 5
    assert sorted(spy.done) == list(range(40))


@pytest.mark.asyncio
async def test_items_start_in_order() -> None:
    """Items start in the order they were submitted."""
    started: list[int] = []

    async def handler(item: int, release: Callable[[], None]) -> None:
        started.append(item)
        await anyio.lowlevel.checkpoint()

    pool: WorkPool[int] = WorkPool(3, adaptive=False)
    for item in range(20):
        pool.submit(item)
    await pool.run(handler)
    assert started == list(range(20))


@pytest.mark.asyncio
async def test_an_item_deferred_after_release_is_not_lost() -> None:
    """A handler that releases its slot and then defers its item gets it back later."""
    seen: list[int] = []
    pool: WorkPool[int] = WorkPool(2, adaptive=False)

    async def handler(item: int, release: Callable[[], None]) -> None:
        seen.append(item)
        release()
        await anyio.sleep(0.01)
        if seen.count(item) == 1:
            pool.defer(item, 0.02)

    for item in range(3):
        pool.submit(item)
    await pool.run(handler)
    assert sorted(seen) == [0, 0, 1, 1, 2, 2]


@pytest.mark.asyncio
async def test_a_waiting_item_does_not_hold_a_worker() -> None:
    """While one item waits out a long backoff, the other items all run."""
    finished: list[int] = []
    pool: WorkPool[int] = WorkPool(1, adaptive=False)
    waits = {0: 0.3}

    async def handler(item: int, release: Callable[[], None]) -> None:
        if item in waits:
            pool.defer(item, waits.pop(item))
            return
        finished.append(item)

    for item in range(5):
        pool.submit(item)
    with anyio.fail_after(5):
        await pool.run(handler)
    assert finished[:4] == [1, 2, 3, 4] and finished[-1] == 0


@pytest.mark.asyncio
async def test_stop_starts_nothing_new_and_keeps_the_rest_pending() -> None:
    """After stop(), running handlers finish and the rest stay pending, in order."""
    pool: WorkPool[int] = WorkPool(2, adaptive=False)

    async def handler(item: int, release: Callable[[], None]) -> None:
        if item == 1:
            pool.stop()
        await anyio.sleep(0.01)

    for item in range(6):
        pool.submit(item)
    await pool.run(handler)
    assert pool.pending() == [2, 3, 4, 5]


@pytest.mark.asyncio
async def test_rate_limit_spaces_request_starts() -> None:
    """rate_limit_rpm=600 starts at most one request per 0.1 s."""
    starts: list[float] = []

    async def handler(item: int, release: Callable[[], None]) -> None:
        starts.append(anyio.current_time())

    pool: WorkPool[int] = WorkPool(10, adaptive=False, rate_limit_rpm=600)
    for item in range(4):
        pool.submit(item)
    await pool.run(handler)
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert all(gap >= 0.095 for gap in gaps)


@pytest.mark.asyncio
async def test_an_adaptive_pool_finds_the_providers_capacity_and_keeps_under_it() -> None:
    """A stand-in provider that refuses at once when 3 are running: every item ends done, the
    meter finds 3, and few requests are refused (the first probe of the ramp, a later probe)."""
    running = 0
    done: list[int] = []
    pool: WorkPool[int] = WorkPool(16, adaptive=True)

    async def handler(item: int, slot: Slot) -> None:
        nonlocal running
        if running >= 3:
            await anyio.sleep(0.001)
            slot.release(Throttle.CAPACITY)
            pool.defer(item, 0.005)
            return
        running += 1
        await anyio.sleep(0.02)
        running -= 1
        slot.release()
        done.append(item)

    for item in range(120):
        pool.submit(item)
    await pool.run(handler)
    assert sorted(done) == list(range(120))
    assert pool.meter.finder is not None
    assert pool.meter.finder.capacity.capacity == 3
    assert pool.meter.refused <= 12


@pytest.mark.asyncio
async def test_adaptive_off_keeps_the_ceiling_whatever_is_refused() -> None:
    """adaptive: false keeps `concurrency` in flight even when requests are refused."""
    spy = Spy()
    pool: WorkPool[int] = WorkPool(8, adaptive=False)

    async def handler(item: int, slot: Slot) -> None:
        await spy.handler(item, slot)
        slot.release(Throttle.CAPACITY)

    for item in range(40):
        pool.submit(item)
    await pool.run(handler)
    assert spy.max_running == 8
    assert pool.target() == 8 and pool.meter.refused == 40
