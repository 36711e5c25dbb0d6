"""Reading an error answer (contract section 3): Google's error JSON with its quota and retry
hints, whatever a gateway sends instead, and the Retry-After header.

Never raises on a body: an error answer is untrusted, and its status already says what happened.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

from batchbanana.rules.answer import camel_or_snake


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """What an error answer said: its status, message and any quota or retry hints."""

    status: str | None = None
    message: str | None = None
    retry_delay_s: float | None = None
    quota_per_day: bool = False
    quota_windowed: bool = False  # a QuotaFailure for a window shorter than a day (per minute)
    quota_window_s: float | None = None  # the window its quota id names (PerMinute: 60 s)
    quota_zero: bool = False
    details: list[Any] = field(default_factory=list)
    reasons: tuple[str, ...] = ()  # google.rpc.ErrorInfo reasons, such as API_KEY_INVALID


_QUOTA_PERIOD = re.compile(r"Per(Second|Minute|Hour)")
_PERIOD_S = {"Second": 1.0, "Minute": 60.0, "Hour": 3600.0}
_RETRY_IN = re.compile(r"\bretry in (\d+(?:\.\d+)?)\s*s\b", re.IGNORECASE)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*s\s*$")
_LIMIT_ZERO = re.compile(r"\blimit:\s*0\b")


def parse_duration_s(value: Any) -> float | None:
    """A google.protobuf.Duration as JSON ("53s", "1.5s"), in seconds; None if unreadable."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        seconds = float(match.group(1)) if match else None
        return seconds if seconds is not None and math.isfinite(seconds) else None
    if isinstance(value, dict):
        seconds = value.get("seconds", 0)
        nanos = value.get("nanos", 0)
        if isinstance(seconds, int | str) and isinstance(nanos, int):
            try:
                total = float(seconds) + nanos / 1e9
            except (ValueError, OverflowError):
                return None
            return total if math.isfinite(total) else None
    return None


def parse_error(body: bytes) -> ErrorInfo:
    """Read a Google-style error body; anything else (a proxy's HTML page) gives what it can.

    Never raises: an error answer's body is untrusted, and its status already says what happened.
    """
    try:
        return _parse_error(body)
    except (ValueError, TypeError, OverflowError, RecursionError, AttributeError):
        return ErrorInfo(message=_plain_text(body) or "unreadable error body")


def _plain_text(body: bytes) -> str:
    text = body[:300].decode("utf-8", "replace")
    text = re.sub(r"<[^>]+>", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def _parse_error(body: bytes) -> ErrorInfo:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError, huge numbers
        return ErrorInfo(message=_plain_text(body) or None)
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]  # some gateways wrap the error in a list
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return ErrorInfo(message=str(data)[:300] if data else None)
    status = error.get("status")
    message = error.get("message")
    details = error.get("details")
    details = details if isinstance(details, list) else []
    retry_delay = None
    reasons: list[str] = []
    per_day = False
    windowed = False
    window_s: float | None = None
    zero = bool(isinstance(message, str) and _LIMIT_ZERO.search(message))
    for detail in details:
        if not isinstance(detail, dict):
            continue
        kind = str(detail.get("@type", ""))
        if kind.endswith("google.rpc.ErrorInfo") and isinstance(detail.get("reason"), str):
            reasons.append(detail["reason"])
        elif kind.endswith("google.rpc.RetryInfo"):
            retry_delay = parse_duration_s(camel_or_snake(detail, "retryDelay", "retry_delay"))
        elif kind.endswith("google.rpc.QuotaFailure"):
            violations = detail.get("violations")
            for violation in violations if isinstance(violations, list) else []:
                if not isinstance(violation, dict):
                    continue
                quota_id = str(camel_or_snake(violation, "quotaId", "quota_id") or "")
                if "PerDay" in quota_id:
                    per_day = True
                else:
                    windowed = True
                    named = _QUOTA_PERIOD.search(quota_id)
                    window_s = _PERIOD_S[named.group(1)] if named else window_s
                if str(camel_or_snake(violation, "quotaValue", "quota_value")) == "0":
                    zero = True
    if retry_delay is None and isinstance(message, str):
        # Gemini also says it in words: "... Please retry in 11.767792953s."
        said = _RETRY_IN.search(message)
        retry_delay = float(said.group(1)) if said else None
        if retry_delay is not None and not math.isfinite(retry_delay):
            retry_delay = None
    return ErrorInfo(
        status=str(status) if status else None,
        message=str(message) if message is not None else None,
        retry_delay_s=retry_delay,
        quota_per_day=per_day,
        quota_windowed=windowed,
        quota_window_s=window_s,
        quota_zero=zero,
        details=details,
        reasons=tuple(reasons),
    )


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:  # "inf", "nan" or a number too long for a float promise nothing
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)
