"""The provider's load limits: how many generations it runs at once (beyond them it answers 503
"The model is overloaded") and how many requests it admits per quota window (beyond them, 429 with
a per-minute QuotaFailure and a RetryInfo saying when the window reopens). Both may double at a
given time, to play a provider that recovers or raises a quota."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request is refused for load, as the error answer will say it."""

    status: int  # 503 or 429
    retry_after_s: float | None = None  # 429: until the quota window reopens


@dataclass(slots=True)
class LoadLimits:
    """Admission by capacity and by a fixed-window quota; times are the server's clock."""

    capacity: int | None = None
    quota: int | None = None  # requests admitted per window
    window_s: float = 60.0
    double_at_s: float | None = None  # both limits double this long after the start
    started_at: float = 0.0
    generating: int = 0
    _window_counts: dict[int, int] = field(default_factory=dict)

    def _factor(self, now: float) -> int:
        if self.double_at_s is not None and now - self.started_at >= self.double_at_s:
            return 2
        return 1

    def admit(self, now: float) -> Refusal | None:
        """A request arrives: None if it may be generated (it then counts as generating)."""
        factor = self._factor(now)
        if self.capacity is not None and self.generating >= self.capacity * factor:
            return Refusal(503)
        if self.quota is not None:
            window = math.floor((now - self.started_at) / self.window_s)
            if self._window_counts.get(window, 0) >= self.quota * factor:
                reopen = self.started_at + (window + 1) * self.window_s
                return Refusal(429, max(0.001, reopen - now))
            self._window_counts = {window: self._window_counts.get(window, 0) + 1}
        self.generating += 1
        return None

    def done(self) -> None:
        """An admitted generation ended (answered, failed or abandoned)."""
        self.generating = max(0, self.generating - 1)
