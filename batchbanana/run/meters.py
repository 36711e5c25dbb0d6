"""The limits a run keeps, as small objects the pool and the attempt ask (aiometer's meters): how
many requests may be in flight and when the next may start (the provider's limits as found, and
`rate_limit_rpm`), and whether the budget lets one more request go out."""

from __future__ import annotations

import math
from dataclasses import dataclass

from batchbanana.rules.finder import LimitFinder
from batchbanana.rules.limits import Throttle, Ticket

BUDGET_SLACK_USD = 1e-9  # float noise, not money


class RateCap:
    """`rate_limit_rpm`: starts at least 60/rpm seconds apart. A hard cap, whatever is learned."""

    def __init__(self, rate_limit_rpm: float | None) -> None:
        self.interval_s = 60.0 / rate_limit_rpm if rate_limit_rpm else 0.0
        self._next_start = -math.inf

    def due_at(self) -> float:
        """The earliest time the next request may start."""
        return self._next_start

    def started(self, now: float) -> None:
        """A request started now."""
        if self.interval_s:
            self._next_start = max(self._next_start, now) + self.interval_s


class FlowMeter:
    """How many requests may be in flight and when the next may start.

    With `adaptive`, the provider's limits are found as the run goes (rules/limits.py); without,
    the pool keeps `concurrency` in flight whatever the provider says, as N workers would.
    """

    def __init__(self, concurrency: int, adaptive: bool, rate_limit_rpm: float | None) -> None:
        self.ceiling = concurrency
        self.finder = LimitFinder(ceiling=concurrency) if adaptive else None
        self.rate_cap = RateCap(rate_limit_rpm)
        self.refused = 0  # requests refused for load (429, 503), this run
        self._fixed_sent = 0

    def target(self, now: float) -> int:
        """How many requests may be in flight now."""
        return self.finder.target(now) if self.finder else self.ceiling

    def wake_in_s(self, now: float) -> float | None:
        """Seconds until the target grows by itself, or None."""
        return self.finder.wake_in_s(now) if self.finder else None

    def start_in_s(self, now: float) -> float:
        """Seconds until the next request may start (0: now)."""
        wait = self.rate_cap.due_at() - now
        if self.finder:
            wait = max(wait, self.finder.start_in_s(now))
        return max(0.0, wait)

    def started(self, now: float) -> Ticket:
        """A request starts now."""
        self.rate_cap.started(now)
        if self.finder:
            return self.finder.sent(now)
        self._fixed_sent += 1
        return Ticket(self._fixed_sent, now, now, 0)

    def answered(
        self,
        ticket: Ticket,
        now: float,
        throttle: Throttle,
        retry_after_s: float | None,
        round_trip_s: float | None = None,
        window_hint_s: float | None = None,
    ) -> None:
        """What the provider answered to a request."""
        if throttle is not Throttle.NONE:
            self.refused += 1
        if self.finder:
            self.finder.answered(ticket, now, throttle, retry_after_s, round_trip_s, window_hint_s)

    def abandoned(self, ticket: Ticket) -> None:
        """A request that ended without an answer about load, or never went out."""
        if self.finder:
            self.finder.abandoned(ticket)

    def found(self) -> str | None:
        """What limit was found, in words, or None."""
        if self.finder is None:
            return None
        parts = []
        capacity = self.finder.capacity.capacity
        if capacity is not None:
            parts.append(f"about {capacity} in flight")
        pace = self.finder.pace
        if pace.quota is not None and pace.window_s is not None:
            parts.append(f"about {pace.quota} requests per {pace.window_s:.3g} s")
        return " and ".join(parts) or None

    def shown(self, now: float) -> str:
        """The in-flight target, and the pace once a quota is in play, for the progress bar."""
        text = f"in-flight<={self.target(now)}"
        pace = self.finder.pace if self.finder else None
        if pace is not None and pace.quota is not None and pace.window_s is not None:
            text += f" pace={pace.quota}/{pace.window_s:.3g}s"
        return text


@dataclass(slots=True)
class BudgetMeter:
    """`budget_usd`: a request goes out only if everything spent, possibly spent and in flight,
    plus its own price, stays within the budget. Reserved before anything waits, so concurrent
    attempts see each other's reservations."""

    budget_usd: float | None
    reserved_usd: float = 0.0

    def admits(self, committed_usd: float, price_usd: float) -> bool:
        """True if a request at `price_usd` fits, with `committed_usd` already spent or owed."""
        if self.budget_usd is None:
            return True
        total = committed_usd + self.reserved_usd + price_usd
        return total <= self.budget_usd + BUDGET_SLACK_USD

    def reserve(self, price_usd: float) -> None:
        """Hold `price_usd` for a request about to go out."""
        self.reserved_usd += price_usd

    def release(self, price_usd: float) -> None:
        """The request is concluded: its price is now spent, possibly spent, or nothing."""
        self.reserved_usd = max(0.0, self.reserved_usd - price_usd)
