"""How long an item waits before it is sent again (contract section 5). Pure functions."""

from __future__ import annotations

import random


def backoff_delay_s(
    attempt: int,
    base_delay_s: float,
    max_delay_s: float,
    server_wait_s: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Exponential backoff with full jitter, never shorter than what the server demanded.

    `attempt` is the number of the attempt that just failed (1 for the first). The jittered
    delay is capped at `max_delay_s`; the server's Retry-After or RetryInfo wins even above the cap.
    """
    generator = rng or random
    ceiling = min(max_delay_s, base_delay_s * (2 ** max(0, attempt - 1)))
    delay = generator.uniform(0, ceiling) if ceiling > 0 else 0.0
    if server_wait_s is not None:
        delay = max(delay, server_wait_s)
    return delay


def retry_wait_s(
    attempt: int,
    base_delay_s: float,
    max_delay_s: float,
    max_wait_s: float,
    server_wait_s: float | None = None,
    rng: random.Random | None = None,
) -> float | None:
    """The wait before sending again, or None when the server demands more than `max_wait_s`:
    waiting that long is not a retry but a stop (contract section 5)."""
    if server_wait_s is not None and server_wait_s > max_wait_s:
        return None
    return backoff_delay_s(attempt, base_delay_s, max_delay_s, server_wait_s, rng)
