"""The answers: images, refusals, faults and broken bodies, shaped as the directives ask."""

from __future__ import annotations

import email.utils
import gzip
import json
import math
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from batchbanana.simulator.directives import RETRYABLE_FAULTS, Plan
from batchbanana.simulator.images import ImageCache, image_dimensions, seeded_variant
from batchbanana.simulator.limits import Refusal
from batchbanana.simulator.requests import ImageRequest, snake_case
from batchbanana.simulator.rules import INPUT_IMAGE_TOKENS, OUTPUT_TOKENS, ModelRule


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


@dataclass(slots=True)
class Answer:
    """An answer decided but not yet sent."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    price_usd: Decimal | None = None  # set when the request is billed
    output_images: int = 0  # final images in a 200 answer (drafts not counted)
    delay_s: float = 0.0
    delivery: Literal["normal", "drop", "cut", "trickle"] = "normal"
    trickle_s: float = 0.0
    generating: bool = False  # admitted by the load limits: counts until it is delivered


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


def _usage(req: ImageRequest, output_tokens: int) -> dict[str, int]:
    prompt_tokens = max(1, len(req.prompt) // 4) + INPUT_IMAGE_TOKENS * req.input_images
    return {
        "promptTokenCount": prompt_tokens,
        "candidatesTokenCount": output_tokens,
        "totalTokenCount": prompt_tokens + output_tokens,
    }


def _snake_keys(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {(k if k.startswith("@") else snake_case(k)): _snake_keys(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_snake_keys(v) for v in obj]
    return obj


_REFUSAL_TEXT = (
    "I can't create that image because it may go against the safety policy. "
    "Try rephrasing the prompt."
)
_NO_IMAGE_TEXT = (
    "I was unable to generate an image for this request; here is a description "
    "of what it would show instead."
)


_IMAGE_SLOT = re.compile(r'"@@sim-image-(\d+)@@"')


async def _success_payload(
    cache: ImageCache, model: str, rule: ModelRule, req: ImageRequest, shapes: frozenset[str]
) -> tuple[dict[str, Any], list[bytes]]:
    """The 200 answer's JSON, with a slot per image, and the base64 that fills each slot."""
    envelope = {"modelVersion": model, "responseId": secrets.token_urlsafe(16)}
    if "block" in shapes:
        return {
            "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": [
                {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH",
                 "blocked": True}]},
            "usageMetadata": _usage(req, 0),
            **envelope,
        }, []  # fmt: skip
    parts: list[dict[str, Any]] = []
    images: list[bytes] = []
    finish = "STOP"
    with_images = req.want_image and not shapes & {"refuse", "no_image"}
    if "refuse" in shapes:
        finish = "IMAGE_SAFETY"
        parts.append({"text": _REFUSAL_TEXT})
    elif not with_images:
        parts.append({"text": _NO_IMAGE_TEXT})
    elif req.want_text:
        parts.append({"text": "Here is the image you asked for."})
    if with_images:
        fmt = "jpeg" if shapes & {"jpeg", "mime_jpg"} else "png"
        mime = f"image/{fmt}"
        if "mime_jpg" in shapes:
            mime = "image/jpg"  # a common, non-standard spelling some servers send
        elif "mime_text" in shapes:
            mime = "text/plain"  # a broken server: the bytes are a PNG, the label is not
        width, height = image_dimensions(req.image_size, req.aspect_ratio, req.last_input_size)
        final = "final" if req.seed is None else seeded_variant(req.seed, req.prompt)
        variants = [final, "second"] if "two_images" in shapes else [final]
        if "thought" in shapes:
            variants.insert(0, "draft")
        for variant in variants:
            _, data = await cache.get((fmt, width, height, variant))
            slot = {"mimeType": mime, "data": f"@@sim-image-{len(images)}@@"}
            parts.append(
                {"thought": True, "inlineData": slot}
                if variant == "draft"
                else {"inlineData": slot}
            )
            images.append(data)
    per_image = OUTPUT_TOKENS[req.image_size or "1K"] if rule.sizes else 1290
    output_tokens = per_image * len(images) + 12
    return {
        "candidates": [{"content": {"role": "model", "parts": parts},
                        "finishReason": finish, "index": 0}],
        "usageMetadata": _usage(req, output_tokens),
        **envelope,
    }, images  # fmt: skip


def _encode_answer(payload: dict[str, Any], images: list[bytes], shapes: frozenset[str]) -> bytes:
    """The answer's bytes. Images are spliced in as bytes: json.dumps of a 20 MB string would
    block the event loop for tens of milliseconds, and they need no escaping."""
    if "snake" in shapes:
        payload = _snake_keys(payload)
    text = json.dumps(payload)
    if "escaped_slashes" in shapes:
        text = text.replace("/", "\\/")  # legal JSON; some servers write every "/" like this
    pieces: list[bytes] = []
    for i, piece in enumerate(_IMAGE_SLOT.split(text)):
        if i % 2 == 0:
            pieces.append(piece.encode())
            continue
        data = images[int(piece)]
        if "urlsafe" in shapes:
            data = data.translate(bytes.maketrans(b"+/", b"-_"))
        if "nopad" in shapes:
            data = data.rstrip(b"=")
        if "bad_b64" in shapes:
            data = b"%%not*base64%%" + data[14:]
        if "escaped_slashes" in shapes:
            data = data.replace(b"/", b"\\/")
        pieces += [b'"', data, b'"']
    body = b"".join(pieces)
    return body[: len(body) // 2] if "bad_json" in shapes else body


async def success_answer(
    cache: ImageCache, model: str, rule: ModelRule, req: ImageRequest, plan: Plan
) -> Answer:
    """The 200 answer: an image (or a refusal, block or text) shaped and delivered per the plan."""
    payload, images = await _success_payload(cache, model, rule, req, plan.shapes)
    answer = Answer(200, _encode_answer(payload, images, plan.shapes))
    parts = payload.get("candidates", [{}])[0].get("content", {}).get("parts", [])
    answer.output_images = sum(1 for p in parts if "inlineData" in p and not p.get("thought"))
    if "gzip" in plan.shapes:
        answer.body = gzip.compress(answer.body, compresslevel=1)
        answer.headers["Content-Encoding"] = "gzip"
    if "drop" in plan.shapes:
        answer.delivery = "drop"
    elif "cut" in plan.shapes:
        answer.delivery = "cut"
    elif plan.trickle_s is not None:
        answer.delivery = "trickle"
        answer.trickle_s = plan.trickle_s
    return answer
