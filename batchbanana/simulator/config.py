"""How the simulated provider behaves: latency, fault rates, load limits, image size, prices,
and how its batches run."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from batchbanana.simulator.rules import PRICE_BOOKS

BATCH_ENDS = ("succeeded", "failed", "expired", "cancelled")


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """How the simulated provider behaves: latency, random fault rates, load limits, image size
    and prices."""

    latency_s: float = 0.0
    latency_spread: float = 0.0  # lognormal sigma around latency_s (its mean); 0: always latency_s
    capacity: int | None = None  # 503 overloaded while this many are being generated
    rpm: int | None = None  # 429 with a per-minute QuotaFailure past this many per window
    rpm_window_s: float = 60.0  # the quota's window (shorter to compress time in tests)
    limits_double_at_s: float | None = None  # capacity and rpm double this long after the start
    rate_429: float = 0.0
    rate_503: float = 0.0
    rate_refuse: float = 0.0
    rate_no_image: float = 0.0
    rate_drop: float = 0.0
    rate_500: float = 0.0
    rate_slow: float = 0.0
    slow_s: float = 30.0
    retry_after_s: float | None = None
    image_bytes: int | None = None
    seed: int | None = None
    price_book: str = "apiyi"
    price_usd: Callable[[str, str], float] | None = None
    # Batches: seconds PENDING, then seconds RUNNING, then how they end (unless a directive says).
    batch_pending_s: float = 0.5
    batch_running_s: float = 1.0
    batch_end: str = "succeeded"  # succeeded | failed | expired | cancelled
    download_503: int = 0  # the first N downloads of each batch's responses file answer 503
    # The price of one batch response (model, image_size); None: half the sync price.
    batch_price_usd: Callable[[str, str], float] | None = None

    def __post_init__(self) -> None:
        for name in (
            "rate_429",
            "rate_503",
            "rate_refuse",
            "rate_no_image",
            "rate_drop",
            "rate_500",
            "rate_slow",
        ):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name}={rate} is not a probability; use a value from 0 to 1")
        if self.price_book not in PRICE_BOOKS:
            books = " or ".join(sorted(PRICE_BOOKS))
            raise ValueError(f"unknown price book {self.price_book!r}; use {books}")
        if self.latency_s < 0 or self.slow_s < 0 or self.latency_spread < 0:
            raise ValueError("latency_s, latency_spread and slow_s must not be negative")
        if (self.capacity is not None and self.capacity < 1) or (
            self.rpm is not None and self.rpm < 1
        ):
            raise ValueError("capacity and rpm must be at least 1 (or None for no limit)")
        if self.rpm_window_s <= 0:
            raise ValueError("rpm_window_s (--rpm-window) must be positive")
        if self.batch_pending_s < 0 or self.batch_running_s < 0 or self.download_503 < 0:
            raise ValueError(
                "batch_pending_s, batch_running_s and download_503 must not be negative"
            )
        if self.batch_end not in BATCH_ENDS:
            raise ValueError(f"unknown batch_end {self.batch_end!r}; use {' | '.join(BATCH_ENDS)}")

    def latency(self, rng: random.Random) -> float:
        """Seconds one answer takes: latency_s, or a lognormal draw whose mean is latency_s."""
        if not self.latency_spread or not self.latency_s:
            return self.latency_s
        mu = math.log(self.latency_s) - self.latency_spread**2 / 2
        return rng.lognormvariate(mu, self.latency_spread)


def describe_price_book(config: SimulatorConfig) -> str:
    """One line naming the prices the simulator bills at, for `serve`'s banner."""
    if config.price_usd is not None:
        return "custom (price_usd callable)"
    unit = "per request" if config.price_book == "apiyi" else "per image"
    families = []
    for family, prices in PRICE_BOOKS[config.price_book].items():
        listed = ", ".join(f"${p}" if s == "*" else f"{s} ${p}" for s, p in prices.items())
        families.append(f"{family} {listed}")
    return f"{config.price_book} ({unit}: {'; '.join(families)})"
