"""How many requests the provider admits per window, and when the next may start (see
rules/limits.py): a gate until a full window reopens, then the learned pace, probed now and then."""

from __future__ import annotations

import contextlib
import math
from collections import deque
from dataclasses import dataclass, field

from batchbanana.rules.limits import STEP_S, Ticket

MINUTE_S = 60.0
MAX_STARTS = 8192  # starts remembered at most: memory stays bounded at any request rate
QUOTA_PROBE_WINDOWS = 2  # windows at the learned quota between two probes over it


@dataclass(slots=True)
class QuotaPacer:
    """When the next request may start: after a full window reopens, and at the learned pace."""

    step_s: float = STEP_S
    quota: int | None = None  # requests admitted per window, once learned
    window_s: float | None = None
    _reopen_at: float = -math.inf  # no start before this: the window is full
    _first_sent: float | None = None
    _starts: deque[tuple[float, int]] = field(
        default_factory=lambda: deque(maxlen=MAX_STARTS)
    )  # (counted at, number) of the requests not refused, oldest first, over two windows
    _since_refusal: int = 0
    _probing: bool = False  # letting starts go over the quota until a refusal measures it
    _hint_s: float | None = None  # the window the quota's id named, until one is measured

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
        self._forget(now)
        if self.quota is not None and self._since_refusal >= QUOTA_PROBE_WINDOWS * self.quota:
            self._probing = True
        return counted

    def admitted(self) -> None:
        """Answered without a quota refusal."""
        self._since_refusal += 1

    def refused(
        self,
        ticket: Ticket,
        now: float,
        retry_after_s: float | None,
        window_hint_s: float | None = None,
    ) -> None:
        """Refused for quota: the window is full until now + retry_after_s. `window_hint_s` is
        the window the quota's id names (PerMinute: 60 s), a first guess until one is measured."""
        if window_hint_s is not None and window_hint_s > 0:
            self._hint_s = window_hint_s
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
        # start). Our clock hears of the reopening a round trip late: a start right at the
        # window's beginning must still count in it.
        began = -math.inf if self.window_s is None else reopen_at - self.window_s
        # Before a window is measured, the one the quota's id names bounds the count: a job that
        # ran under the quota for hours must not count those hours as one window.
        named = -math.inf if self._hint_s is None else reopen_at - self._hint_s
        held = self._held(max(began, named) - 2 * self.step_s, ticket.number)
        if self.window_s is not None and math.isfinite(gate) and gate < began:
            # Or it began at our gate: a fixed window whose length was first learned from our
            # first request, short. Of the two readings, the one that holds nearer the quota
            # learned before is the provider's, the gate on a tie (nothing held at all: the
            # window is longer than learned).
            from_gate = self._held(gate, ticket.number)
            nearer = self.quota is not None and abs(len(from_gate) - self.quota) <= abs(
                len(held) - self.quota
            )
            if not held or (nearer and reopen_at - gate < 1.5 * self.window_s):
                held, began = from_gate, gate
        if not held:
            return  # full before we sent anything (another client's requests): nothing to learn
        self.quota = len(held)
        # From the window's first start to its reopening is at most one window (exactly one when
        # it opened at our gate): the slack above counts starts, it does not lengthen windows.
        inside = [t for t in held if t >= began - 1e-9]
        opened_at_gate = math.isfinite(gate) and began == gate
        span = reopen_at - (gate if opened_at_gate else (inside or held)[0])
        if self.window_s is None or span > self.window_s:
            self.window_s = span

    def _held(self, since: float, before: int) -> list[float]:
        """When the requests admitted since `since` and sent before number `before` started."""
        since -= 1e-9
        return [t for t, number in self._starts if since <= t and number < before]

    def _forget(self, now: float) -> None:
        """Starts older than two windows (the learned one, or the one named, or a minute: the
        shortest window Google's quotas name beyond seconds) can no longer be in a full one."""
        horizon = now - 2 * (self.window_s or self._hint_s or MINUTE_S) - 1.0
        while self._starts and self._starts[0][0] < horizon:
            self._starts.popleft()
