"""The provider's two limits together (rules/limits.py says how each is found), judged against
the requests in flight: what the pool asks before each start and tells after each answer."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from batchbanana.rules.capacity import CapacityFinder
from batchbanana.rules.limits import Throttle, Ticket
from batchbanana.rules.quota import QuotaPacer


@dataclass(slots=True)
class LimitFinder:
    """The two limits together, and the requests in flight they are judged against."""

    ceiling: int
    start: int = 4
    capacity: CapacityFinder = field(init=False)
    pace: QuotaPacer = field(init=False)
    in_flight: int = 0
    refused: int = 0  # requests refused for load (capacity or quota)
    _sent: int = 0

    def __post_init__(self) -> None:
        self.capacity = CapacityFinder(self.ceiling, self.start)
        self.pace = QuotaPacer()

    def target(self, now: float) -> int:
        """How many requests may be in flight now."""
        return self.capacity.target(now)

    def wake_in_s(self, now: float) -> float | None:
        """Seconds until the target grows by itself, or None."""
        return self.capacity.wake_in_s(now)

    def start_in_s(self, now: float) -> float:
        """Seconds until the next request may start, as far as the pace goes (0: now)."""
        return max(0.0, self.pace.due_at(now) - now)

    def sent(self, now: float) -> Ticket:
        """A request goes out now."""
        self.in_flight += 1
        number = self._sent
        self._sent += 1
        probe = self.capacity.sent(now, self.in_flight)
        counted = self.pace.sent(now, number)
        ticket = Ticket(number, now, counted, self.in_flight, probe)
        self.capacity.track(ticket)
        return ticket

    def answered(
        self,
        ticket: Ticket,
        now: float,
        throttle: Throttle,
        retry_after_s: float | None = None,
        round_trip_s: float | None = None,
        window_hint_s: float | None = None,
    ) -> None:
        """The answer to a request: admitted, or refused for capacity or quota (`round_trip_s`:
        how long it took on the wire, `window_hint_s`: the window a quota's id names, each when
        known)."""
        self.in_flight = max(0, self.in_flight - 1)
        if retry_after_s is not None and not math.isfinite(retry_after_s):
            retry_after_s = None  # a wait that never ends is no window to pace by
        if throttle is Throttle.CAPACITY:
            self.refused += 1
            self.capacity.refused(ticket, now, round_trip_s)
            self.pace.step_s = self.capacity.step()  # the pace probes no faster than the ramp
        elif throttle is Throttle.QUOTA:
            self.refused += 1
            self.capacity.abandoned(ticket)
            self.pace.refused(ticket, now, retry_after_s, window_hint_s)
        else:
            self.capacity.admitted(ticket, now)
            self.pace.admitted()

    def abandoned(self, ticket: Ticket) -> None:
        """A request that ended without an answer about load (timeout, dropped connection)."""
        self.in_flight = max(0, self.in_flight - 1)
        self.capacity.abandoned(ticket)
