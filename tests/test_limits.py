"""The limit finder (rules/limits.py): a pure function of events and a clock, checked on traces.

The first tests drive it event by event; the rest replay whole jobs against a stand-in provider in
simulated time (tests/limits_trace.py), so a night's worth of throttling runs in milliseconds.
"""

from __future__ import annotations

import json
import math

import pytest

from batchbanana.rules.capacity import PROBE_MIN_ANSWERS, PROBE_ROUNDS_MAX, CapacityFinder
from batchbanana.rules.error_answer import parse_error, parse_retry_after
from batchbanana.rules.finder import LimitFinder
from batchbanana.rules.limits import Throttle, Ticket
from batchbanana.rules.outcomes import classify_error
from batchbanana.rules.quota import QuotaPacer
from tests.limits_trace import Provider, simulate


def _fill(finder: LimitFinder, now: float) -> list[Ticket]:
    """Start as many requests as the finder allows at `now`."""
    tickets = []
    while finder.in_flight < finder.target(now) and finder.start_in_s(now) == 0:
        tickets.append(finder.sent(now))
    return tickets


def test_the_finder_starts_low_and_ramps_one_request_per_step() -> None:
    """Before anything is known, a few requests go out, then one more per step up to the ceiling."""
    finder = LimitFinder(ceiling=64)
    assert len(_fill(finder, 0.0)) == 4
    step = finder.capacity.step()
    assert finder.target(0.0 + step) == 5
    assert finder.target(100.0) == 64
    assert finder.wake_in_s(100.0) is None


def test_capacity_refusals_set_the_limit_below_the_lowest_level_refused() -> None:
    """Refused as the 17th and the 18th in flight, nothing admitted above 16: at most 16."""
    finder = LimitFinder(ceiling=64, start=16)
    tickets = _fill(finder, 0.0)
    seventeenth, eighteenth = finder.sent(0.0), finder.sent(0.0)
    finder.answered(seventeenth, 0.002, Throttle.CAPACITY)
    assert finder.capacity.capacity is None  # one refusal alone may be chance
    finder.answered(eighteenth, 0.002, Throttle.CAPACITY)
    assert finder.capacity.capacity == 16
    assert finder.target(0.5) == 16
    assert finder.wake_in_s(0.5) is None  # no more ramping
    assert len(tickets) == 16 and finder.refused == 2


def test_a_stray_refusal_among_admitted_requests_is_noise_not_a_limit() -> None:
    """Refusals now and then where requests at the same level are admitted lower nothing."""
    finder = CapacityFinder(ceiling=64, start=4)
    tickets = [Ticket(n, 0.0, 0.0, n + 1) for n in range(20)]
    for ticket in tickets:
        finder.sent(0.0, ticket.level)
        finder.track(ticket)
    finder.refused(Ticket(20, 0.0, 0.0, 21), 0.002)  # sets the round trip: 2 ms
    finder.refused(Ticket(21, 0.5, 0.5, 10), 0.502)  # while 11..20 have been in flight 0.5 s
    finder.refused(Ticket(22, 0.5, 0.5, 12), 0.502)
    assert finder.capacity is None
    assert finder.target(1.0) == 64


def test_refusals_of_requests_sent_before_the_limit_changed_move_nothing() -> None:
    """A burst sent before the first refusals came back is not counted against the new limit."""
    finder = LimitFinder(ceiling=64, start=20)
    tickets = _fill(finder, 0.0)
    finder.answered(tickets[16], 0.01, Throttle.CAPACITY)  # went out 17th
    finder.answered(tickets[17], 0.01, Throttle.CAPACITY)  # 18th: capacity 16
    assert finder.capacity.capacity == 16
    finder.answered(tickets[3], 0.02, Throttle.CAPACITY)  # went out 4th, but before the change
    assert finder.capacity.capacity == 16


def _limited_at(capacity: int) -> CapacityFinder:
    """A finder that found `capacity` (two refusals just above it)."""
    finder = CapacityFinder(ceiling=64, start=capacity)
    finder.sent(0.0, capacity + 1)
    finder.refused(Ticket(0, 0.0, 0.0, capacity + 1), 0.001)
    finder.refused(Ticket(1, 0.0, 0.0, capacity + 2), 0.001)
    assert finder.capacity == capacity
    return finder


def _successes(finder: CapacityFinder, count: int, level: int, now: float) -> None:
    for number in range(count):
        finder.admitted(Ticket(1000 + number, now - 1.0, now - 1.0, level), now)


def test_a_probe_goes_out_after_rounds_of_successes_and_raises_the_limit_when_admitted() -> None:
    """At the limit for a while, one request more is let out; admitted, the limit rose."""
    finder = _limited_at(16)
    assert finder.target(1.0) == 16
    _successes(finder, PROBE_MIN_ANSWERS - 1, 16, 2.0)
    assert finder.target(2.0) == 16
    _successes(finder, 1, 16, 2.0)
    assert finder.target(2.0) == 17
    assert finder.sent(2.0, 17) is True  # the probe
    assert finder.target(2.0) == 16  # one probe at a time
    finder.admitted(Ticket(99, 2.0, 2.0, 17, probe=True), 3.0)
    assert finder.capacity == 17
    assert finder.target(3.0 + finder.step()) > 17  # ramping again from there


def test_a_refused_probe_leaves_the_limit_and_makes_probes_rarer() -> None:
    """One over the limit refused: the limit holds and the next probe waits longer."""
    finder = _limited_at(16)
    _successes(finder, PROBE_MIN_ANSWERS, 16, 2.0)
    assert finder.sent(2.0, 17) is True
    finder.refused(Ticket(50, 2.0, 2.0, 17, probe=True), 2.001)
    assert finder.capacity == 16
    _successes(finder, PROBE_MIN_ANSWERS, 16, 4.0)
    assert finder.target(4.0) == 16  # not yet: the interval grew
    _successes(finder, PROBE_ROUNDS_MAX * 16 - PROBE_MIN_ANSWERS, 16, 4.0)
    assert finder.target(4.0) == 17


def test_a_quota_refusal_holds_every_start_until_the_window_reopens() -> None:
    """The job waits for the window, not each item alone: nothing starts before RetryInfo."""
    pacer = QuotaPacer()
    tickets = [Ticket(n, 0.1 * n, pacer.sent(0.1 * n, n), n) for n in range(5)]
    pacer.refused(Ticket(5, 0.5, pacer.sent(0.5, 5), 6), 0.51, 5.49)
    assert pacer.due_at(1.0) == pytest.approx(6.0)
    assert pacer.quota == 5  # five were admitted before the refused one
    assert pacer.window_s == pytest.approx(6.0)  # from the first start to the reopening
    assert len(tickets) == 5


def test_once_learned_the_quota_paces_starts_to_so_many_per_window() -> None:
    """Five per six seconds: the sixth start waits until the first is a window old."""
    pacer = QuotaPacer(quota=5, window_s=6.0)
    for number in range(5):
        pacer.sent(10.0 + number * 0.01, number)
    assert pacer.due_at(10.1) == pytest.approx(16.0)


def test_a_quota_refusal_without_retry_info_leaves_the_pace_to_the_items_backoff() -> None:
    """No RetryInfo: nothing is learned and no start is held."""
    pacer = QuotaPacer()
    pacer.refused(Ticket(0, 0.0, pacer.sent(0.0, 0), 1), 0.01, None)
    assert pacer.due_at(0.02) < 0.02 and pacer.quota is None


@pytest.mark.parametrize("capacity", [8, 16, 32], ids=lambda c: f"capacity-{c}")
def test_a_capacity_limit_is_found_and_used_without_hammering_it(capacity: int) -> None:
    """Ceiling 64, capacity 8/16/32: >= 0.95 of the ideal throughput, <= 0.05 refusals per image."""
    job = simulate(Provider(capacity=capacity), items=30 * capacity)
    ideal_s = job.latency_total_s / capacity
    assert job.ok == job.items
    assert ideal_s / job.wall_s >= 0.95
    assert job.refused_per_item <= 0.05
    assert job.finder.capacity.capacity == capacity


@pytest.mark.parametrize("quota", [20, 40, 100], ids=lambda q: f"quota-{q}")
@pytest.mark.parametrize("sliding", [False, True], ids=["fixed-window", "sliding-log"])
def test_a_rate_quota_is_learned_and_kept_to(quota: int, sliding: bool) -> None:
    """20-100 per 6-second window, fixed or sliding: every item ok, few refusals, the pace found."""
    window_s = 6.0
    job = simulate(Provider(quota=quota, window_s=window_s, sliding=sliding), 10 * quota, seed=3)
    windows_needed = job.items / quota
    assert job.ok == job.items
    assert job.wall_s <= (windows_needed + 1) * window_s
    assert job.refused_per_item <= 0.05
    assert job.finder.pace.quota in (quota - 1, quota)
    learned = job.finder.pace.window_s
    assert learned is not None
    # Exact for fixed windows; a sliding log may be learned somewhat long (slower, never over).
    assert window_s - 0.05 <= learned <= window_s * (1.15 if sliding else 1.01)


def test_a_capacity_that_doubles_halfway_is_found_again() -> None:
    """16 at once, then 32: the finder ends at 32, with few refusals."""
    job = simulate(Provider(capacity=16, capacity_at=[(15.0, 32)]), items=960)
    assert job.ok == job.items
    assert job.finder.capacity.capacity == 32
    assert job.refused_per_item <= 0.05


def test_a_quota_that_doubles_halfway_is_found_again_within_two_windows() -> None:
    """20 per window, then 40 from t=24 s: by t=36 s the pace is 40 per window."""
    job = simulate(Provider(quota=20, quota_at=[(24.0, 40)], window_s=6.0), items=400)
    assert job.ok == job.items
    assert job.finder.pace.quota == 40
    # 20 per window for four windows, then 40 per window, give or take one window.
    assert job.wall_s <= 4 * 6.0 + (400 - 4 * 20) / 40 * 6.0 + 2 * 6.0
    assert job.refused_per_item <= 0.05


@pytest.mark.parametrize("noise", [0.02, 0.05], ids=lambda n: f"{n:.0%}-random-503s")
def test_random_refusals_without_a_limit_do_not_throttle_the_job(noise: float) -> None:
    """A provider that refuses a few percent at random, whatever the load, is noise, not a limit:
    the job takes at most 10% longer than a pool fixed at the ceiling."""
    job = simulate(Provider(noise=noise), items=1280, max_attempts=20)
    fixed = simulate(Provider(noise=noise), items=1280, max_attempts=20, start=64)
    assert job.ok == job.items
    assert job.wall_s <= 1.1 * fixed.wall_s


def test_no_limit_costs_almost_nothing_against_a_pool_fixed_at_the_ceiling() -> None:
    """Without limits the ramp reaches the ceiling in well under a request's latency: the job
    takes at most 5% longer than a pool that sends 64 at once from the start."""
    job = simulate(Provider(), items=640)
    fixed = simulate(Provider(), items=640, start=64)
    assert job.refused == 0
    assert job.finder.target(job.wall_s) == 64
    assert job.wall_s <= 1.05 * fixed.wall_s


def _error_body(message: str, *details: dict[str, object]) -> bytes:
    error = {"code": 429, "message": message, "status": "RESOURCE_EXHAUSTED"}
    return json.dumps({"error": {**error, "details": list(details)}}).encode()


_PER_MINUTE = {
    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
    "violations": [{"quotaId": "GenerateRequestsPerMinutePerProjectPerModel", "quotaValue": "40"}],
}
_PER_DAY = {
    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
    "violations": [{"quotaId": "GenerateRequestsPerDayPerProjectPerModel", "quotaValue": "250"}],
}
_RETRY_3S = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "3.5s"}
_BILLING_WORDS = "You exceeded your current quota, please check your plan and billing details."


@pytest.mark.parametrize(
    ("status", "body", "throttle", "stops", "retry_delay_s"),
    [
        pytest.param(503, _error_body("The model is overloaded."), Throttle.CAPACITY, False,
                     None, id="503-overloaded-is-capacity"),
        pytest.param(429, _error_body("Resource has been exhausted (e.g. check quota)."),
                     Throttle.CAPACITY, False, None, id="429-without-quota-is-capacity"),
        pytest.param(429, _error_body(_BILLING_WORDS, _PER_MINUTE, _RETRY_3S), Throttle.QUOTA,
                     False, 3.5, id="429-per-minute-quota-paces-the-job"),
        pytest.param(429, _error_body(_BILLING_WORDS + " Please retry in 11.76s.", _PER_MINUTE),
                     Throttle.QUOTA, False, 11.76, id="retry-delay-said-in-words"),
        pytest.param(429, _error_body(_BILLING_WORDS, _PER_DAY, _RETRY_3S), Throttle.NONE, True,
                     3.5, id="429-per-day-stops-the-job"),
        pytest.param(429, _error_body("Your prepayment credits are depleted. Please go to AI"
                     " Studio to manage your project and billing."), Throttle.NONE, True, None,
                     id="prepaid-credit-used-up-stops-the-job"),
        pytest.param(429, _error_body("Your project has reached its monthly spending cap."),
                     Throttle.NONE, True, None, id="spending-cap-stops-the-job"),
    ],
)  # fmt: skip
def test_an_error_answer_says_which_limit_it_hit(
    status: int, body: bytes, throttle: Throttle, stops: bool, retry_delay_s: float | None
) -> None:
    """503 and a bare 429 are capacity, a per-minute QuotaFailure is a quota to pace by, and a
    429 about money or a day's quota stops the job instead (waiting would not help)."""
    info = parse_error(body)
    verdict = classify_error(status, info)
    assert verdict.throttle is throttle
    assert (verdict.job_stop is not None) is stops
    assert info.retry_delay_s == retry_delay_s


def test_a_slow_refusal_slows_the_ramp_from_where_it_is_without_undoing_it() -> None:
    """A refusal with a long round trip makes later steps longer, but the steps already taken
    stand (found in review: the ramp fell back to its start)."""
    finder = CapacityFinder(ceiling=32)
    finder.sent(0.0, 1)
    assert finder.target(3.0) == 32
    finder.refused(Ticket(0, 0.0, 0.0, 5), 5.0, round_trip_s=5.0)  # one refusal: noise
    assert finder.capacity is None
    assert finder.target(5.0) == 32


def test_a_wait_that_never_ends_is_no_window_to_pace_by() -> None:
    """`Retry-After: inf` and the like hold nothing: the pace stays free (found in review)."""
    finder = LimitFinder(ceiling=8)
    ticket = finder.sent(0.0)
    finder.answered(ticket, 0.01, Throttle.QUOTA, float("inf"))
    assert finder.start_in_s(0.02) == 0.0
    assert parse_retry_after("inf") is None and parse_retry_after("1e999") is None


def test_a_quota_first_met_after_a_long_quiet_stretch_is_counted_over_its_named_window() -> None:
    """Two minutes under the quota, then 120 per minute: the first refusal counts the window its
    quota id names (PerMinute), not everything since the job began (found in review)."""
    provider = Provider(capacity=8, quota=math.inf, quota_at=[(120.0, 120)], window_s=60.0)
    job = simulate(provider, 1800, max_attempts=20)
    assert job.ok == job.items
    assert job.finder.pace.quota is not None and 120 <= job.finder.pace.quota <= 125
    assert job.finder.pace.window_s == pytest.approx(60.0, abs=0.1)
    assert job.refused_per_item <= 0.05


def test_a_quota_id_names_its_window() -> None:
    """GenerateRequestsPerMinute... is a 60-second window; a per-day quota names none."""
    assert parse_error(_error_body(_BILLING_WORDS, _PER_MINUTE)).quota_window_s == 60.0
    assert parse_error(_error_body(_BILLING_WORDS, _PER_DAY)).quota_window_s is None
