"""What one simulator keeps between requests: the provider's bill (batch responses included), the
request counters, the fault dice and the image cache; safe to read from another thread (the bill,
the stats)."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from decimal import Decimal
from typing import Any

from batchbanana.simulator.config import SimulatorConfig
from batchbanana.simulator.images import ImageCache
from batchbanana.simulator.limits import LoadLimits, Refusal
from batchbanana.simulator.rules import book_price


class SimulatorState:
    """Counters, the bill and the fault RNG of one simulator."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.images = ImageCache(config.image_bytes)
        self.load = self._fresh_limits()
        self._latency_rng = random.Random(config.seed)
        self._lock = threading.Lock()
        self._requests = 0
        self._in_flight = 0
        self._max_in_flight = 0
        self._by_prompt: Counter[str] = Counter()
        self._by_status: Counter[str] = Counter()
        self._billed_requests = 0
        self._billed_usd = Decimal(0)
        self._batch_requests = 0
        self._batch_usd = Decimal(0)
        self._batches_created = 0

    def _fresh_limits(self) -> LoadLimits:
        return LoadLimits(
            capacity=self.config.capacity,
            quota=self.config.rpm,
            window_s=self.config.rpm_window_s,
            double_at_s=self.config.limits_double_at_s,
            started_at=time.monotonic(),
        )

    def latency(self) -> float:
        """Seconds the next answer takes."""
        with self._lock:
            return self.config.latency(self._latency_rng)

    def admit(self) -> Refusal | None:
        """A request that would be generated: None if the load limits let it in."""
        with self._lock:
            return self.load.admit(time.monotonic())

    def generated(self) -> None:
        """An admitted request is answered (or its client left)."""
        with self._lock:
            self.load.done()

    def price(self, model: str, image_size: str, output_images: int) -> Decimal:
        if self.config.price_usd is not None:
            return Decimal(str(self.config.price_usd(model, image_size)))
        price = book_price(self.config.price_book, model, image_size)
        # Google's list prices are per output image; a billed answer without one costs one.
        return price * max(1, output_images) if self.config.price_book == "google" else price

    def batch_price(self, model: str, image_size: str, output_images: int) -> Decimal:
        """One batch response's price: batch_price_usd, else half what sync would bill."""
        if self.config.batch_price_usd is not None:
            return Decimal(str(self.config.batch_price_usd(model, image_size)))
        return self.price(model, image_size, output_images) / 2

    def enter(self) -> None:
        with self._lock:
            self._requests += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)

    def leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def count_prompt(self, prompt: str) -> int:
        """Count a request with this prompt; return how many came before it (since reset)."""
        with self._lock:
            index = self._by_prompt[prompt]
            self._by_prompt[prompt] = index + 1
            return index

    def count_status(self, status: str) -> None:
        with self._lock:
            self._by_status[status] += 1

    def bill(self, price_usd: Decimal) -> None:
        with self._lock:
            self._billed_requests += 1
            self._billed_usd += price_usd

    def bill_batch(self, price_usd: Decimal) -> None:
        """Bill one batch response: it counts in the totals and in the batch share."""
        with self._lock:
            self._billed_requests += 1
            self._billed_usd += price_usd
            self._batch_requests += 1
            self._batch_usd += price_usd

    def count_batch(self) -> None:
        """A batch was created."""
        with self._lock:
            self._batches_created += 1

    def bill_json(self) -> dict[str, Any]:
        """billed_*: everything billed (sync and batch); batch_*: the batch responses among them."""
        with self._lock:
            return {
                "billed_requests": self._billed_requests,
                "billed_usd": round(float(self._billed_usd), 6),
                "requests": self._requests,
                "batch_requests": self._batch_requests,
                "batch_usd": round(float(self._batch_usd), 6),
                "batches_created": self._batches_created,
            }

    def stats_json(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self._requests,
                "in_flight": self._in_flight,
                "max_in_flight": self._max_in_flight,
                "by_prompt": dict(self._by_prompt),
                "by_status": dict(self._by_status),
                "billed_requests": self._billed_requests,
                "billed_usd": round(float(self._billed_usd), 6),
            }

    def reset(self) -> None:
        with self._lock:
            self._requests = 0
            self._max_in_flight = self._in_flight  # requests still running stay counted
            self._by_prompt.clear()
            self._by_status.clear()
            self._billed_requests = 0
            self._billed_usd = Decimal(0)
            self._batch_requests = 0
            self._batch_usd = Decimal(0)
            self._batches_created = 0
            generating = self.load.generating
            self.load = self._fresh_limits()  # the quota windows and the doubling start anew
            self.load.generating = generating
