"""How many requests the provider takes at once, found from its refusals (see rules/limits.py):
a ramp until refusals outweigh admissions, then the limit found, probed now and then."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from batchbanana.rules.limits import STEP_S, Ticket

RAMP_GROWTH = 2 ** (1 / 4)  # the ramp doubles every four steps
PROBE_ROUNDS = 2  # rounds of successes at the limit before a capacity probe...
PROBE_ROUNDS_MAX = 4  # ...doubling after each refused probe, up to this many
RECENT_ANSWERS = 256  # answers remembered to tell a limit from random refusals...
FRESH_STEPS = 4  # refusals within this many ramp steps of each other count together
VOTES = 8  # ...of which the latest this many at or above a refused level decide
PROBE_MIN_ANSWERS = 40  # a small limit still waits this many answers: few refusals per image


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
    _fresh_refusals: list[tuple[float, int]] = field(default_factory=list)  # (when, level),
    # since the last change and within the last few steps: refusals that belong together

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

    def _set_step(self, now: float, refusal_rtt_s: float) -> None:
        """A new round trip: a ramp under way goes on from where it is, at the new pace (the
        longer step must not undo the steps already taken)."""
        step = self.step()
        if self._ramp_from is not None and max(self.step_s, 2 * refusal_rtt_s) != step:
            self._ramp_base = self.target(now)
            self._ramp_from = now
        self._refusal_rtt_s = refusal_rtt_s

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

    def refused(self, ticket: Ticket, now: float, round_trip_s: float | None = None) -> None:
        """Refused for capacity: the limit is below the level it went out at. `round_trip_s` is
        how long the refusal took on the wire, when known (else since the ticket went out)."""
        self._out.pop(ticket.number, None)
        if ticket.probe:
            self._probe_out = False
        trip = now - ticket.sent_at if round_trip_s is None else round_trip_s
        self._set_step(now, max(self._refusal_rtt_s * 0.8, trip))
        self._remember(ticket.level, refused=True)
        if ticket.sent_at < self._changed_at:
            return  # sent before the last change, which already accounts for it
        if ticket.probe and self._ramp_from is None:
            # One over the limit was refused: it has not risen. Probe less often.
            self._probe_every = min(self._probe_interval(PROBE_ROUNDS_MAX), self._probe_every * 2)
            self._since_probe = 0
            return
        # A limit refuses everything above it at once; refusals spread over time are chance.
        together = now - FRESH_STEPS * self.step()
        self._fresh_refusals = [(at, lv) for at, lv in self._fresh_refusals if at >= together]
        self._fresh_refusals.append((now, ticket.level))
        lowest = min(level for _, level in self._fresh_refusals)
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
