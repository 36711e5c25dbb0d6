"""Every attempt's outcome and whether it was billed (contract section 5). Pure rules.

This table is the money: only outcomes that provably cost nothing are retried by `run`.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from batchbanana.rules.answer import Answer
from batchbanana.rules.error_answer import ErrorInfo
from batchbanana.rules.limits import Throttle
from batchbanana.rules.media import IMAGE_EXTENSIONS, normalise_mime, sniff_mime


class Outcome(enum.StrEnum):
    """How one attempt ended, as the ledger spells it."""

    OK = "ok"
    REFUSED = "refused"
    NO_IMAGE = "no_image"
    BAD_RESPONSE = "bad_response"
    TIMEOUT = "timeout"
    WRITE_ERROR = "write_error"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"
    CONNECT_ERROR = "connect_error"
    HTTP_ERROR = "http_error"
    SERVER_ERROR = "server_error"
    INTERRUPTED = "interrupted"
    OVER_BUDGET = "over_budget"
    BLOCKED = "blocked"


class Billed(enum.StrEnum):
    """Whether the provider charged for an attempt."""

    YES = "yes"
    NO = "no"
    UNKNOWN = "unknown"


BILLING: dict[Outcome, Billed] = {
    Outcome.OK: Billed.YES,
    Outcome.REFUSED: Billed.YES,
    Outcome.NO_IMAGE: Billed.YES,
    Outcome.BAD_RESPONSE: Billed.YES,
    Outcome.TIMEOUT: Billed.YES,
    Outcome.WRITE_ERROR: Billed.YES,
    Outcome.RATE_LIMITED: Billed.NO,
    Outcome.UNAVAILABLE: Billed.NO,
    Outcome.CONNECT_ERROR: Billed.NO,
    Outcome.HTTP_ERROR: Billed.NO,
    Outcome.SERVER_ERROR: Billed.UNKNOWN,
    Outcome.INTERRUPTED: Billed.UNKNOWN,
    Outcome.OVER_BUDGET: Billed.NO,
    Outcome.BLOCKED: Billed.NO,  # an item whose input is another item's output, not ok (yet)
}

RETRYABLE = frozenset({Outcome.RATE_LIMITED, Outcome.UNAVAILABLE, Outcome.CONNECT_ERROR})

# Outcomes recorded without a request: no `sent` line, the next attempt number.
NEVER_SENT = frozenset({Outcome.OVER_BUDGET, Outcome.BLOCKED})

# Finish reasons of a 200 without an image that mean the model refused (billed, never retried).
REFUSAL_REASONS = frozenset(
    {
        "SAFETY",
        "IMAGE_SAFETY",
        "PROHIBITED_CONTENT",
        "IMAGE_PROHIBITED_CONTENT",
        "BLOCKLIST",
        "SPII",
    }
)

# google.rpc.ErrorInfo reasons that mean the key or the project cannot be used at all.
KEY_REFUSED_REASONS = frozenset(
    {"API_KEY_INVALID", "API_KEY_SERVICE_BLOCKED", "SERVICE_DISABLED", "CONSUMER_SUSPENDED"}
)


def billed(outcome: Outcome) -> Billed:
    """Whether an outcome is billed; the one place this is decided."""
    return BILLING[outcome]


def is_retryable(outcome: Outcome) -> bool:
    """True only for outcomes that were provably not billed and may succeed later."""
    return outcome in RETRYABLE


@dataclass(frozen=True, slots=True)
class Verdict:
    """The classification of one answered attempt."""

    outcome: Outcome
    error: str | None = None
    job_stop: str | None = None  # why the whole job must stop sending, if it must
    throttle: Throttle = Throttle.NONE  # what it says about the provider's limits
    quota_window_s: float | None = None  # a quota's window as its id names it


def classify_answer(answer: Answer) -> Verdict:
    """A 200 answer: ok with an image, refused, no image, or bad (an image that is not one)."""
    if answer.images:
        for image in answer.images:
            mime = normalise_mime(image.mime_type)
            if mime not in IMAGE_EXTENSIONS:
                return Verdict(Outcome.BAD_RESPONSE, f"answer image has MIME type {mime!r}")
            sniffed = sniff_mime(image.head)
            if sniffed != mime:
                return Verdict(
                    Outcome.BAD_RESPONSE,
                    f"answer announced {mime} but its bytes are {sniffed or 'not an image'}",
                )
        return Verdict(Outcome.OK)
    if answer.block_reason:
        return Verdict(Outcome.REFUSED, f"prompt blocked: blockReason {answer.block_reason}")
    reason = answer.finish_reason
    if reason in REFUSAL_REASONS:
        return Verdict(Outcome.REFUSED, f"no image: finishReason {reason}")
    return Verdict(Outcome.NO_IMAGE, f"no image: finishReason {reason or 'missing'}")


# A 429 that is about money, not load: Google's spending caps and prepaid credit.
_OUT_OF_MONEY = re.compile(
    r"spend(ing)?[ -]cap|prepay(ment)? credits? (are|is) (depleted|exhausted|used up)"
    r"|credits are depleted",
    re.IGNORECASE,
)


def classify_error(status: int, info: ErrorInfo) -> Verdict:
    """A non-200 answer: its outcome, and whether it stops the whole job."""
    summary = f"{status} {info.status or ''}".strip()
    if info.message:
        summary += f": {info.message}"
    summary = summary[:500]
    if status == 429:
        if info.quota_per_day or info.quota_zero:
            kind = "per-day quota" if info.quota_per_day else "quota with a limit of zero"
            return Verdict(
                Outcome.RATE_LIMITED,
                summary,
                job_stop=f"{kind} exhausted (429); waiting will not help tonight",
            )
        if _OUT_OF_MONEY.search(info.message or ""):
            return Verdict(
                Outcome.RATE_LIMITED,
                summary,
                job_stop="the spending cap is reached or the prepaid credit is used up (429);"
                " waiting will not help: raise the cap or top up",
            )
        # A windowed quota (per minute) paces the job; any other 429 is the provider's load.
        throttle = Throttle.QUOTA if info.quota_windowed else Throttle.CAPACITY
        return Verdict(
            Outcome.RATE_LIMITED, summary, throttle=throttle, quota_window_s=info.quota_window_s
        )
    if status == 503:
        return Verdict(Outcome.UNAVAILABLE, summary, throttle=Throttle.CAPACITY)
    if status in (401, 403):
        return Verdict(
            Outcome.HTTP_ERROR,
            summary,
            job_stop=f"the key was refused ({status}); check the key in the api_key_env variable",
        )
    if status == 402:
        return Verdict(
            Outcome.HTTP_ERROR, summary, job_stop="no balance left (402); top up the account"
        )
    if 400 <= status < 500 and KEY_REFUSED_REASONS.intersection(info.reasons):
        # Google answers a bad key with 400 API_KEY_INVALID: every request would fail the same.
        return Verdict(
            Outcome.HTTP_ERROR,
            summary,
            job_stop=f"the key was refused ({status} {', '.join(info.reasons)}); check the key"
            " in the api_key_env variable",
        )
    if 400 <= status < 500:
        return Verdict(Outcome.HTTP_ERROR, summary)
    return Verdict(Outcome.SERVER_ERROR, summary)
