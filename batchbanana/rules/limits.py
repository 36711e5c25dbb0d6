"""Finding the provider's limits from what it answers: how many requests it takes at once (capacity)
and how many it admits per window (a rate quota). Pure state machines fed with events and the time
they happened; the pool asks them how many requests may be in flight and when the next may start.

Capacity (503, or a 429 without a windowed quota). A refusal for load comes back at once, so the
finder starts low and grows the number in flight step by step (doubling every four steps, a step
never shorter than twice a refusal's round trip) until the first refusal; the number in
flight when the refused request went out, less one, bounds the capacity. It holds there, and after
some rounds of successes lets one request more go out (a probe): admitted, the limit rose and the
ramp resumes; refused, probes grow rarer. Feedback about requests sent before the limit last
changed is stale and moves nothing.

Rate quota (a 429 whose QuotaFailure is per minute, with RetryInfo). The limit is requests per
window, not requests in flight, so it paces the job, not the item: after a refusal nothing starts
until the window reopens (now + RetryInfo), and the pacer learns how many requests a window admits
and how long it lasts, then keeps every stretch of that length to that many starts (which suits
fixed windows and sliding logs alike). Every few windows it lets starts go over the quota, one per
step, until a refusal measures the quota again: a quota that grew is found within two windows.
"""

from __future__ import annotations

import contextlib
import enum
import math
from collections import deque
from dataclasses import dataclass, field


class Throttle(enum.StrEnum):
    """What an answer says about the provider's limits."""

    NONE = "none"  # answered: an image, a refusal, an error that is not about load
    CAPACITY = "capacity"  # 503 overloaded, or a 429 without a windowed quota
    QUOTA = "quota"  # 429 whose QuotaFailure has a (non-daily) window, with RetryInfo


@dataclass(frozen=True, slots=True)
class Ticket:
    """A request as the finder saw it go out; handed back with its answer."""

    number: int  # order of sending
    sent_at: float
    counted_at: float  # for the pace: when its start was due, if it went out right then
    level: int  # requests in flight once it went out, itself included
    probe: bool = False  # sent above the capacity found, to see whether it rose


STEP_S = 0.01  # the ramp's step before a refusal's round trip is known
RAMP_GROWTH = 2 ** (1 / 4)  # the ramp doubles every four steps
PROBE_ROUNDS = 2  # rounds of successes at the limit before a capacity probe...
PROBE_ROUNDS_MAX = 4  # ...doubling after each refused probe, up to this many
RECENT_ANSWERS = 256  # answers remembered to tell a limit from random refusals...
VOTES = 8  # ...of which the latest this many at or above a refused level decide
PROBE_MIN_ANSWERS = 16  # a small limit still waits this many answers: few refusals per image
QUOTA_PROBE_WINDOWS = 2  # windows at the learned quota between two probes over it


@dataclass(slots=True)
class CapacityFinder:
    """How many requests may be in flight: a ramp until the first refusal, then the limit found."""

    ceiling: int  # the user's concurrency: never more in flight than this
    start: int = 4
    step_s: float = STEP_S
    capacity: int | None = None  # the most found to be admitted at once; None until a refusal
    _ramp_from: float | None = None
    _ramp_base: int = 0
    _changed_at: float = -math.inf
    _since_probe: int = 0
    _probe_every: int = 0
    _probe_out: bool = False
    _refusal_rtt_s: float = 0.0
    _recent: deque[tuple[int, bool]] = field(default_factory=deque)  # (level, refused), newest last
    _out: dict[int, Ticket] = field(default_factory=dict)  # requests in flight, by number
    _fresh_refusals: list[int] = field(default_factory=list)  # levels, since the last change

    def __post_init__(self) -> None:
        self.start = max(1, min(self.start, self.ceiling))
        self._ramp_base = self.start

    def target(self, now: float) -> int:
        """How many requests may be in flight now."""
        if self._ramp_from is not None:
            steps = self._steps(now, self._ramp_from)
            # A quarter of a doubling per step, and at least one more per step: a few rounds of
            # growth in well under a second, yet never a burst bigger than a step's worth.
            grown = max(
                self._ramp_base + steps, int(self._ramp_base * RAMP_GROWTH ** min(steps, 64))
            )
            return max(1, min(self.ceiling, grown))
        if self.capacity is None:
            return self._ramp_base  # nothing sent yet
        probe = 1 if not self._probe_out and self._since_probe >= self._probe_every else 0
        return max(1, min(self.ceiling, self.capacity + probe))

    def wake_in_s(self, now: float) -> float | None:
        """Seconds until the target grows by itself (the ramp), or None if it will not."""
        if self._ramp_from is None or self.target(now) >= self.ceiling:
            return None
        return self._ramp_from + (self._steps(now, self._ramp_from) + 1) * self.step() - now

    def step(self) -> float:
        """One ramp step: never shorter than twice a refusal's round trip, or a burst would go out
        before the first refusal could come back."""
        return max(self.step_s, 2 * self._refusal_rtt_s)

    def _steps(self, now: float, since: float) -> int:
        # The slack keeps float rounding from putting a step a hair after its time.
        return int((now - since) / self.step() + 1e-9)

    def sent(self, now: float, level: int) -> bool:
        """A request goes out at `level` in flight; True if it is a probe over the limit."""
        if self._ramp_from is None and self.capacity is None:
            self._ramp_from = now
        over = self.capacity is not None and level > self.capacity
        if self._ramp_from is None and over and not self._probe_out:
            self._probe_out = True
            self._since_probe = 0
            return True
        return False

    def refused(self, ticket: Ticket, now: float) -> None:
        """Refused for capacity: the limit is below the level it went out at."""
        self._out.pop(ticket.number, None)
        if ticket.probe:
            self._probe_out = False
        self._refusal_rtt_s = max(self._refusal_rtt_s * 0.8, now - ticket.sent_at)
        self._remember(ticket.level, refused=True)
        if ticket.sent_at < self._changed_at:
            return  # sent before the last change, which already accounts for it
        if ticket.probe and self._ramp_from is None:
            # One over the limit was refused: it has not risen. Probe less often.
            self._probe_every = min(self._probe_interval(PROBE_ROUNDS_MAX), self._probe_every * 2)
            self._since_probe = 0
            return
        self._fresh_refusals.append(ticket.level)
        lowest = min(self._fresh_refusals)
        if not self._mostly_refused_from(lowest, now):
            return  # a stray refusal where most are admitted: noise, not a limit
        bound = max(1, lowest - 1)
        if self.capacity is None or self._ramp_from is not None or bound < self.capacity:
            self.capacity = bound
            self._probe_every = self._probe_interval(PROBE_ROUNDS)
        self._ramp_from = None
        self._changed_at = now
        self._since_probe = 0
        self._fresh_refusals.clear()

    def admitted(self, ticket: Ticket, now: float) -> None:
        """Answered without a refusal for load."""
        self._out.pop(ticket.number, None)
        if ticket.probe:
            self._probe_out = False
        self._remember(ticket.level, refused=False)
        if self.capacity is None or self._ramp_from is not None:
            return
        if ticket.sent_at >= self._changed_at and ticket.level > self.capacity:
            self.capacity = ticket.level  # admitted above the limit: it rose; ramp again
            self._ramp_base = ticket.level
            self._ramp_from = now
            self._changed_at = now
            self._fresh_refusals.clear()
            return
        self._since_probe += 1

    def abandoned(self, ticket: Ticket) -> None:
        """No answer that says anything about load (a timeout, a dropped connection)."""
        self._out.pop(ticket.number, None)
        if ticket.probe:
            self._probe_out = False

    def track(self, ticket: Ticket) -> None:
        """A request went out with this ticket (its answer will come to refused or admitted)."""
        self._out[ticket.number] = ticket

    def _remember(self, level: int, refused: bool) -> None:
        self._recent.append((level, refused))
        if len(self._recent) > RECENT_ANSWERS:
            self._recent.popleft()

    def _mostly_refused_from(self, level: int, now: float) -> bool:
        """Whether refusals outweigh admissions at `level` or above, lately: a limit refuses
        everything above it, while a provider that refuses now and then at random (noise, not
        load) admits most requests at every level. Admitted answers come back late (the image
        takes its time), so a request still in flight long after a refusal would have come back
        counts as admitted too."""
        latest = [refused for at, refused in reversed(self._recent) if at >= level][:VOTES]
        refused = min(VOTES, len(self._fresh_refusals))
        settled = sum(
            1
            for ticket in self._out.values()
            if ticket.level >= level and now - ticket.sent_at > 3 * self._refusal_rtt_s
        )
        # Two refusals at least: one alone, at the top of a ramp where nothing admitted has
        # come back yet, may be chance.
        return refused >= max(2, min(VOTES, len(latest) - refused + settled))

    def _probe_interval(self, rounds: int) -> int:
        return max(PROBE_MIN_ANSWERS, rounds * (self.capacity or 1))


@dataclass(slots=True)
class QuotaPacer:
    """When the next request may start: after a full window reopens, and at the learned pace."""

    step_s: float = STEP_S
    quota: int | None = None  # requests admitted per window, once learned
    window_s: float | None = None
    _reopen_at: float = -math.inf  # no start before this: the window is full
    _first_sent: float | None = None
    _starts: deque[tuple[float, int]] = field(default_factory=deque)  # (counted at, number),
    # of the requests not refused, oldest first, over the last two windows
    _since_refusal: int = 0
    _probing: bool = False  # letting starts go over the quota until a refusal measures it

    def due_at(self, now: float) -> float:
        """The earliest time the next request may start (<= now: at once)."""
        due = self._reopen_at
        if self.quota is None or self.window_s is None:
            return due
        self._forget(now)
        if len(self._starts) < self.quota:
            return due
        if self._probing:
            # Over the quota one start at a time, each a step after the last: a refusal can
            # come back before the next goes out.
            return max(due, self._starts[-1][0] + self.step_s)
        return max(due, self._starts[-self.quota][0] + self.window_s)

    def sent(self, now: float, number: int) -> float:
        """A request goes out now; returns the time it counts from (its due time, when it went
        out as soon as it was allowed, so a pool's reaction time does not drift the pace)."""
        if self._first_sent is None:
            self._first_sent = now
        due = self.due_at(now)
        counted = due if now - self.step_s <= due <= now else now
        self._starts.append((counted, number))
        if self.quota is not None and self._since_refusal >= QUOTA_PROBE_WINDOWS * self.quota:
            self._probing = True
        return counted

    def admitted(self) -> None:
        """Answered without a quota refusal."""
        self._since_refusal += 1

    def refused(self, ticket: Ticket, now: float, retry_after_s: float | None) -> None:
        """Refused for quota: the window is full until now + retry_after_s."""
        with contextlib.suppress(ValueError):  # already forgotten
            self._starts.remove((ticket.counted_at, ticket.number))
        self._since_refusal = 0
        if retry_after_s is None:
            return  # no word on when the window reopens: the item's own backoff will do
        reopen_at = now + retry_after_s
        if ticket.counted_at >= self._reopen_at:  # sent since the window last reopened: news
            self._probing = False
            self._learn(ticket, reopen_at)
        self._reopen_at = max(self._reopen_at, reopen_at)

    def _learn(self, ticket: Ticket, reopen_at: float) -> None:
        """The window was full when `ticket` arrived: count what it held, and how long it lasts."""
        gate = self._reopen_at  # when the window last reopened for us (not yet moved)
        # The full window began one window before it reopens (for a sliding log, with its oldest
        # start). If it held nothing then, the window is longer than learned (the first one was
        # measured from our first request, not from its real start): it began at our gate.
        since = -math.inf if self.window_s is None else reopen_at - self.window_s
        held = self._held(since, ticket.number)
        if not held and math.isfinite(gate) and gate < since:
            held = self._held(gate, ticket.number)
        if not held:
            return  # full before we sent anything (another client's requests): nothing to learn
        self.quota = len(held)
        span = reopen_at - held[0]  # at most one window; exactly one when it opened at our gate
        if self.window_s is None or span > self.window_s:
            self.window_s = span

    def _held(self, since: float, before: int) -> list[float]:
        """When the requests admitted since `since` and sent before number `before` started."""
        since -= 1e-9
        return [t for t, number in self._starts if since <= t and number < before]

    def _forget(self, now: float) -> None:
        horizon = now - 2 * (self.window_s or 0.0) - 1.0
        while self._starts and self._starts[0][0] < horizon:
            self._starts.popleft()


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
        self.pace.step_s = self.capacity.step()
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
        self, ticket: Ticket, now: float, throttle: Throttle, retry_after_s: float | None = None
    ) -> None:
        """The answer to a request: admitted, or refused for capacity or quota."""
        self.in_flight = max(0, self.in_flight - 1)
        if throttle is Throttle.CAPACITY:
            self.refused += 1
            self.capacity.refused(ticket, now)
        elif throttle is Throttle.QUOTA:
            self.refused += 1
            self.capacity.abandoned(ticket)
            self.pace.refused(ticket, now, retry_after_s)
        else:
            self.capacity.admitted(ticket, now)
            self.pace.admitted()

    def abandoned(self, ticket: Ticket) -> None:
        """A request that ended without an answer about load (timeout, dropped connection)."""
        self.in_flight = max(0, self.in_flight - 1)
        self.capacity.abandoned(ticket)
