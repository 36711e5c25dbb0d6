"""A discrete-event stand-in for a limited provider and the pool, for the limit finder's tests.

No sleeping and no network: a heap of timed events, a provider that refuses by capacity (503 when
`capacity` are being generated) or by quota (429 past `quota` admitted per fixed or sliding window,
with the seconds until it reopens), and a pool that starts requests when the finder allows. What it
returns is what the benchmark measures: wall time, refusals per item, the finder's findings.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections import deque
from dataclasses import dataclass, field

from batchbanana.rules.finder import LimitFinder
from batchbanana.rules.limits import Throttle, Ticket


@dataclass
class Provider:
    """Refuses what a real provider would: over capacity, or over a quota per window."""

    capacity: float = math.inf
    quota: float = math.inf
    window_s: float = 6.0
    sliding: bool = False
    latency_mean_s: float = 1.0
    latency_sigma: float = 0.3  # lognormal spread
    rtt_s: float = 0.002
    noise: float = 0.0  # share of requests refused (503) at random, whatever the load
    capacity_at: list[tuple[float, float]] = field(default_factory=list)  # (time, new capacity)
    quota_at: list[tuple[float, float]] = field(default_factory=list)  # (time, new quota)
    generating: int = 0
    _window_counts: dict[int, int] = field(default_factory=dict)
    _admitted: deque[float] = field(default_factory=deque)
    _rng: random.Random = field(default_factory=lambda: random.Random(7))

    def limits_at(self, now: float) -> tuple[float, float]:
        capacity, quota = self.capacity, self.quota
        for when, value in self.capacity_at:
            if now >= when:
                capacity = value
        for when, value in self.quota_at:
            if now >= when:
                quota = value
        return capacity, quota

    def admit(self, now: float) -> tuple[Throttle, float | None]:
        """A request arriving now: admitted (NONE), or refused and how long until it may pass."""
        capacity, quota = self.limits_at(now)
        if self.noise and self._rng.random() < self.noise:
            return Throttle.CAPACITY, None
        if self.generating >= capacity:
            return Throttle.CAPACITY, None
        if self.sliding:
            while self._admitted and self._admitted[0] <= now - self.window_s:
                self._admitted.popleft()
            if len(self._admitted) >= quota:
                return Throttle.QUOTA, self._admitted[0] + self.window_s - now
            self._admitted.append(now)
        else:
            window = int(now // self.window_s)
            if self._window_counts.get(window, 0) >= quota:
                return Throttle.QUOTA, (window + 1) * self.window_s - now
            self._window_counts[window] = self._window_counts.get(window, 0) + 1
        self.generating += 1
        return Throttle.NONE, None

    def latency(self, rng: random.Random) -> float:
        mu = math.log(self.latency_mean_s) - self.latency_sigma**2 / 2
        return rng.lognormvariate(mu, self.latency_sigma)


@dataclass
class Outcome:
    """How a simulated job went."""

    wall_s: float
    items: int
    refused: int
    ok: int
    latency_total_s: float
    finder: LimitFinder

    @property
    def refused_per_item(self) -> float:
        return self.refused / self.items


def simulate(
    provider: Provider,
    items: int,
    ceiling: int = 64,
    base_delay_s: float = 0.07,
    max_delay_s: float = 4.0,
    max_attempts: int = 6,
    seed: int = 1,
    start_at: float = 0.0,
    start: int = 4,
) -> Outcome:
    """Run `items` through a pool driven by a LimitFinder against `provider`."""
    rng = random.Random(seed)
    finder = LimitFinder(ceiling=ceiling, start=start)
    events: list[tuple[float, int, str, object]] = []
    order = itertools.count()
    ready: deque[int] = deque(range(items))
    attempts = dict.fromkeys(range(items), 0)
    ok = refused = 0
    latency_total = 0.0
    now = start_at
    ticks: set[float] = set()

    def push(when: float, kind: str, data: object) -> None:
        heapq.heappush(events, (when, next(order), kind, data))

    def dispatch() -> None:
        while ready and finder.in_flight < finder.target(now) and finder.start_in_s(now) == 0:
            item = ready.popleft()
            attempts[item] += 1
            ticket = finder.sent(now)
            push(now + provider.rtt_s / 2, "arrive", (item, ticket))
        waits = [finder.wake_in_s(now), finder.start_in_s(now) or None]
        soonest = min((w for w in waits if w), default=None)
        if ready and soonest is not None and now + soonest not in ticks:
            ticks.add(now + soonest)  # one tick per moment, however many events ask for it
            push(now + soonest, "tick", None)

    push(now, "tick", None)
    while events:
        now, _, kind, data = heapq.heappop(events)
        if kind == "arrive":
            item, ticket = data  # type: ignore[misc]
            throttle, wait_s = provider.admit(now)
            if throttle is Throttle.NONE:
                done = now + provider.latency(rng)
                push(done, "generated", (item, ticket, done - now))
            else:
                push(now + provider.rtt_s / 2, "answer", (item, ticket, throttle, wait_s))
        elif kind == "generated":
            item, ticket, latency = data  # type: ignore[misc]
            provider.generating -= 1
            latency_total += latency
            push(now + provider.rtt_s / 2, "answer", (item, ticket, Throttle.NONE, None))
        elif kind == "answer":
            item, ticket, throttle, wait_s = data  # type: ignore[misc]
            assert isinstance(ticket, Ticket)
            retry_after = None if wait_s is None else wait_s
            # The quota's id names its window, as Google's do (PerMinute).
            hint = provider.window_s if throttle is Throttle.QUOTA else None
            finder.answered(ticket, now, throttle, retry_after, window_hint_s=hint)
            if throttle is Throttle.NONE:
                ok += 1
            else:
                refused += 1
                assert attempts[item] < max_attempts, f"item {item} ran out of attempts"
                jitter = rng.uniform(0, min(max_delay_s, base_delay_s * 2 ** (attempts[item] - 1)))
                push(now + max(jitter, retry_after or 0.0), "retry", item)
        elif kind == "retry":
            ready.appendleft(data)  # type: ignore[arg-type]
        dispatch()
    return Outcome(now - start_at, items, refused, ok, latency_total, finder)
