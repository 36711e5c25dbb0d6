"""The error answers: Google's error JSON, the faults directives ask for (plain errors, quota
failures, a proxy's HTML pages, a key echoed back), and the load refusals (503, per-minute 429)."""

from __future__ import annotations

import email.utils
import json
import math
import time
from collections.abc import Mapping
from typing import Any

from batchbanana.simulator.answers import Answer
from batchbanana.simulator.directives import RETRYABLE_FAULTS, Plan
from batchbanana.simulator.limits import Refusal


def error_json(code: int, status: str, message: str, details: list[Any] | None = None) -> bytes:
    """The body of a Google error answer: {"error": {"code", "message", "status", "details"}}."""
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = details
    return json.dumps({"error": error}).encode()


def _duration(seconds: float) -> str:
    return f"{seconds:g}s"


def _nginx_page(code: int, reason: str) -> bytes:
    title = f"{code} {reason}"
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}"
        "</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    ).encode()


_PLAIN_ERRORS: Mapping[str, tuple[int, str, str]] = {
    "400": (400, "INVALID_ARGUMENT", "Request contains an invalid argument."),
    "401": (401, "UNAUTHENTICATED", "API key not valid. Please pass a valid API key."),
    "402": (402, "PAYMENT_REQUIRED", "Insufficient account balance; top up to continue."),
    "403": (403, "PERMISSION_DENIED", "The caller does not have permission."),
    "429": (429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    "500": (500, "INTERNAL", "An internal error has occurred. Please retry or report it."),
    "503": (503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
    "504": (504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
    # 429s about money, not load: waiting does not help.
    "spend_cap": (429, "RESOURCE_EXHAUSTED", "Your project has exceeded its monthly spending cap."
                  " Raise the cap in AI Studio to continue."),
    "prepaid": (429, "RESOURCE_EXHAUSTED", "Your prepayment credits are depleted. Please go to"
                " AI Studio at https://ai.studio/projects to manage your project and billing."),
}  # fmt: skip
_HTML_ERRORS: Mapping[str, tuple[int, str]] = {
    "502": (502, "Bad Gateway"),  # what a reseller's proxy answers when the upstream fails
    "html503": (503, "Service Unavailable"),
}


def _quota_failure(per_day: bool, model: str) -> tuple[int, str, str, list[Any]]:
    """A 429 whose QuotaFailure names a daily quota, or a per-minute quota of zero."""
    metric = "generativelanguage.googleapis.com/generate_requests_per_model" + (
        "_per_day" if per_day else ""
    )
    quota_id = (
        "GenerateRequestsPerDayPerProjectPerModel"
        if per_day
        else "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
    )
    limit = "250" if per_day else "0"
    violation = {
        "quotaMetric": metric,
        "quotaId": quota_id,
        "quotaDimensions": {"location": "global", "model": model},
        "quotaValue": limit,
    }
    details: list[Any] = [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [violation]},
        {"@type": "type.googleapis.com/google.rpc.Help", "links": [{
            "description": "Learn more about Gemini API quotas",
            "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
    ]  # fmt: skip
    message = (
        "You exceeded your current quota, please check your plan and billing details. "
        f"* Quota exceeded for metric: {metric}, limit: {limit}, model: {model}"
    )
    return 429, "RESOURCE_EXHAUSTED", message, details


def load_refusal(refusal: Refusal, model: str, quota: int | None) -> Answer:
    """503 overloaded, or a 429 whose QuotaFailure is per minute with RetryInfo until the window
    reopens, as Google answers them; neither is billed."""
    if refusal.status == 503:
        code, status, message = _PLAIN_ERRORS["503"]
        return Answer(code, error_json(code, status, message))
    metric = "generativelanguage.googleapis.com/generate_requests_per_model"
    violation = {
        "quotaMetric": metric,
        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel",
        "quotaDimensions": {"location": "global", "model": model},
        "quotaValue": str(quota),
    }
    details: list[Any] = [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [violation]},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo",
         "retryDelay": f"{refusal.retry_after_s or 0.0:.3f}s"},
    ]  # fmt: skip
    message = (
        "You exceeded your current quota, please check your plan and billing details. "
        f"* Quota exceeded for metric: {metric}, limit: {quota}, model: {model}"
    )
    return Answer(429, error_json(429, "RESOURCE_EXHAUSTED", message, details))


def fault_answer(fault: str, plan: Plan, model: str, key: str) -> Answer:
    """The error answer for a fault directive or a random fault."""
    if fault in _HTML_ERRORS:
        code, reason = _HTML_ERRORS[fault]
        answer = Answer(code, _nginx_page(code, reason), "text/html")
    else:
        if fault in ("quota_day", "quota_zero"):
            code, status, message, details = _quota_failure(fault == "quota_day", model)
        elif fault == "echo_key_403":  # some servers do echo the key; clients must scrub it
            code, status, details = 403, "PERMISSION_DENIED", []
            message = f"Permission denied: API key {key} may not use models/{model}."
        else:
            code, status, message = _PLAIN_ERRORS[fault]
            details = []
        if code == 429 and plan.retry_info_s is not None:
            details.append(
                {
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": _duration(plan.retry_info_s),
                }
            )
        answer = Answer(code, error_json(code, status, message, details))
    if fault in RETRYABLE_FAULTS:
        if plan.retry_after_s is not None:
            answer.headers["Retry-After"] = str(math.ceil(plan.retry_after_s))
        if plan.retry_date_s is not None:
            when = time.time() + plan.retry_date_s
            answer.headers["Retry-After"] = email.utils.formatdate(when, usegmt=True)
    return answer
