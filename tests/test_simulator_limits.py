"""The simulator's load limits (simulator/limits.py): the provider the limit finder is tried on."""

from __future__ import annotations

import pytest

from batchbanana.simulator import SimulatorConfig
from batchbanana.simulator.limits import LoadLimits


def test_past_its_capacity_the_provider_answers_503_until_a_generation_ends() -> None:
    """Three generate at once; the fourth is refused with 503 until one of them is done."""
    limits = LoadLimits(capacity=3)
    assert [limits.admit(0.0) for _ in range(3)] == [None, None, None]
    refusal = limits.admit(0.0)
    assert refusal is not None and refusal.status == 503
    limits.done()
    assert limits.admit(0.1) is None


def test_past_its_quota_the_provider_answers_429_with_the_wait_until_the_window_reopens() -> None:
    """Two per 6-second window from t=0: the third at t=1.5 waits 4.5 s; at t=6 it passes."""
    limits = LoadLimits(quota=2, window_s=6.0)
    assert limits.admit(0.5) is None and limits.admit(1.0) is None
    refusal = limits.admit(1.5)
    assert refusal is not None and refusal.status == 429
    assert refusal.retry_after_s == pytest.approx(4.5)
    assert limits.admit(6.0) is None


def test_limits_that_double_do_so_at_their_time() -> None:
    """Capacity 1 and quota 1, doubling at t=10: two generate at once, two pass per window."""
    limits = LoadLimits(capacity=1, quota=1, window_s=100.0, double_at_s=10.0)
    assert limits.admit(0.0) is None
    assert limits.admit(1.0) is not None
    assert limits.admit(10.0) is None  # capacity 2 now, and quota 2 in the window
    assert limits.admit(10.0) is not None


def test_answer_times_spread_lognormally_around_the_mean() -> None:
    """--latency-spread draws answer times whose mean is --latency."""
    import random

    config = SimulatorConfig(latency_s=1.0, latency_spread=0.3)
    rng = random.Random(5)
    draws = [config.latency(rng) for _ in range(4000)]
    assert sum(draws) / len(draws) == pytest.approx(1.0, rel=0.03)
    assert min(draws) < 0.7 and max(draws) > 1.5


@pytest.mark.parametrize(
    "settings",
    [{"capacity": 0}, {"rpm": 0}, {"rpm_window_s": 0.0}, {"latency_spread": -1.0}],
    ids=["capacity-0", "rpm-0", "window-0", "negative-spread"],
)
def test_impossible_limits_are_refused(settings: dict[str, float]) -> None:
    """A limit of zero, an empty window or a negative spread is a configuration error."""
    with pytest.raises(ValueError):
        SimulatorConfig(**settings)  # type: ignore[arg-type]
