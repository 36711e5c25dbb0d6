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

import enum
from dataclasses import dataclass


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
