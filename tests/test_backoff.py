"""Backoff (contract section 5): exponential with full jitter, capped, never shorter than the
server's demanded wait."""

from __future__ import annotations

import random

import pytest

from batchbanana.rules.backoff import backoff_delay_s

SAMPLES = 400


def _delays(attempt: int, base_s: float, max_s: float, seed: int = 7) -> list[float]:
    rng = random.Random(seed)
    return [backoff_delay_s(attempt, base_s, max_s, None, rng) for _ in range(SAMPLES)]


@pytest.mark.parametrize(
    ("attempt", "ceiling_s"),
    [
        pytest.param(1, 2.0, id="attempt-1"),
        pytest.param(2, 4.0, id="attempt-2"),
        pytest.param(3, 8.0, id="attempt-3"),
        pytest.param(5, 32.0, id="attempt-5"),
    ],
)
def test_full_jitter_stays_between_zero_and_the_exponential_ceiling(
    attempt: int, ceiling_s: float
) -> None:
    """Each delay lies in [0, base * 2^(attempt-1)] and the draws spread over that whole range."""
    delays = _delays(attempt, 2.0, 120.0)
    assert all(0.0 <= delay <= ceiling_s for delay in delays)
    assert min(delays) < 0.1 * ceiling_s  # full jitter reaches down near zero...
    assert max(delays) > 0.9 * ceiling_s  # ...and up near the ceiling


def test_first_attempt_ceiling_is_base_delay() -> None:
    """After the first failed attempt the wait is at most base_delay_s."""
    delays = _delays(1, 3.0, 120.0)
    assert max(delays) <= 3.0
    assert max(delays) > 2.7


@pytest.mark.parametrize("attempt", [pytest.param(n, id=f"attempt-{n}") for n in (8, 20, 100)])
def test_delay_is_capped_at_max_delay(attempt: int) -> None:
    """However many attempts failed, the jittered delay never exceeds max_delay_s."""
    delays = _delays(attempt, 2.0, 30.0)
    assert all(0.0 <= delay <= 30.0 for delay in delays)
    assert max(delays) > 27.0


def test_server_wait_wins_even_above_the_cap() -> None:
    """A Retry-After or retryDelay longer than max_delay_s is still honoured in full."""
    rng = random.Random(1)
    for attempt in (1, 3, 10):
        assert backoff_delay_s(attempt, 2.0, 120.0, 500.0, rng) >= 500.0


def test_server_wait_is_a_floor_under_the_jitter() -> None:
    """With a short server wait the delay is never below it, even when the jitter draws lower."""
    rng = random.Random(3)
    delays = [backoff_delay_s(4, 2.0, 120.0, 5.0, rng) for _ in range(SAMPLES)]
    assert all(5.0 <= delay <= 16.0 for delay in delays)
    assert min(delays) == 5.0


def test_seeded_random_gives_reproducible_delays() -> None:
    """Two generators with the same seed give the same sequence of delays."""
    assert _delays(4, 2.0, 120.0, seed=42) == _delays(4, 2.0, 120.0, seed=42)
    assert _delays(4, 2.0, 120.0, seed=42) != _delays(4, 2.0, 120.0, seed=43)


def test_zero_base_delay_means_no_wait() -> None:
    """With base_delay_s 0 and no server wait, the item is sent again at once."""
    assert backoff_delay_s(3, 0.0, 120.0, None, random.Random(0)) == 0.0
