"""The Gemini-native wire format (contract section 3): request bodies in, answers and errors out.

Pure functions on bytes and dicts, so every shape an answer can take is tested without a network.
"""

from __future__ import annotations

import binascii
import email.utils
import json
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pybase64

from batchbanana.errors import BadResponse
from batchbanana.rules.media import normalise_mime
from batchbanana.rules.models import rules_for

API_PATH = "/v1beta/models/{model}:generateContent"
TEXT_LIMIT = 500  # characters of the model's words kept in the ledger

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


def request_url(endpoint: str, model: str) -> str:
    """The generateContent URL of a model under a base endpoint."""
    return endpoint.rstrip("/") + API_PATH.format(model=model)


def auth_headers(auth: str, api_key: str) -> dict[str, str]:
    """The header that carries the key: Bearer for API易, x-goog-api-key for Google."""
    if auth == "google":
        return {"x-goog-api-key": api_key}
    return {"Authorization": f"Bearer {api_key}"}


def build_request(
    *,
    model: str,
    prompt: str,
    image_parts: Sequence[Mapping[str, Any]],
    image_size: str,
    aspect_ratio: str | None,
    system_prompt: str | None,
    response_modalities: Sequence[str],
) -> dict[str, Any]:
    """The JSON body of one generateContent call, camelCase keys only.

    `image_parts` are ready-made parts (`inlineData` or `fileData`) in the item's order; the
    prompt follows them as the one text part, so "the last image" is the last one given.
    """
    image_config: dict[str, str] = {}
    if aspect_ratio is not None:
        image_config["aspectRatio"] = aspect_ratio
    rules = rules_for(model)
    if rules is None or rules.sends_image_size:
        image_config["imageSize"] = image_size
    generation_config: dict[str, Any] = {"responseModalities": list(response_modalities)}
    if image_config:
        generation_config["imageConfig"] = image_config
    body: dict[str, Any] = {
        "contents": [{"role": "user", "parts": [*image_parts, {"text": prompt}]}],
        "generationConfig": generation_config,
    }
    if system_prompt is not None:
        body["systemInstruction"] = {"parts": [{"text": system_prompt}]}
    return body


def inline_part(mime_type: str, data_b64: str) -> dict[str, Any]:
    """An inline image part."""
    return {"inlineData": {"mimeType": mime_type, "data": data_b64}}


def file_part(mime_type: str, uri: str) -> dict[str, Any]:
    """An image given by URL, fetched by the provider (Gemini-native endpoints only)."""
    return {"fileData": {"mimeType": mime_type, "fileUri": uri}}


@dataclass(frozen=True, slots=True)
class AnswerImage:
    """One final image of an answer: its bytes in memory, or in a temporary file when streamed."""

    mime_type: str
    data: bytes = b""
    path: Path | None = None  # a temporary file holding the decoded bytes (streamed answers)
    size: int = 0
    head: bytes = b""  # the first bytes, to check the image is what its MIME type says

    @classmethod
    def in_memory(cls, mime_type: str, data: bytes) -> AnswerImage:
        """An image decoded from a plain (not streamed) answer."""
        return cls(mime_type=mime_type, data=data, size=len(data), head=data[:32])


@dataclass(frozen=True, slots=True)
class Answer:
    """What a 200 answer said, read into plain fields."""

    images: tuple[AnswerImage, ...] = ()
    text: str | None = None
    finish_reason: str | None = None
    block_reason: str | None = None
    usage: dict[str, Any] | None = None
    response_id: str | None = None
    model_version: str | None = None


def _get(mapping: Mapping[str, Any], camel: str, snake: str) -> Any:
    if camel in mapping:
        return mapping[camel]
    return mapping.get(snake)


URLSAFE_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_WHITESPACE = re.compile(rb"\s+")


def decode_base64(data: str | bytes) -> bytes:
    """Decode standard or URL-safe base64, padded or not; raises BadResponse when invalid."""
    raw = data.encode("ascii", "replace") if isinstance(data, str) else data
    raw = raw.translate(URLSAFE_TO_STANDARD)
    if _WHITESPACE.search(raw):
        raw = _WHITESPACE.sub(b"", raw)
    raw += b"=" * (-len(raw) % 4)
    try:
        return pybase64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadResponse(f"image data is not valid base64 ({exc})") from None


ImageReader = Callable[[str, str], AnswerImage]


def _decode_inline(mime_type: str, payload: str) -> AnswerImage:
    return AnswerImage.in_memory(mime_type, decode_base64(payload))


def parse_answer(body: bytes) -> Answer:
    """Read a 200 answer; raises BadResponse when it is not JSON or its images cannot be decoded."""
    return answer_from_json(load_json(body), _decode_inline)


def load_json(body: bytes | bytearray) -> Any:
    """Parse an answer's JSON; anything unparsable (cut, garbage, absurd nesting or numbers) is
    a BadResponse, never another exception."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError too
        raise BadResponse(f"answer is not valid JSON ({exc.__class__.__name__}: {exc})") from None


def answer_from_json(data: Any, read_image: ImageReader) -> Answer:
    """Read a parsed 200 answer; `read_image(mime_type, data_string)` turns image data into an
    AnswerImage (decoding it, or finding the file a streamed answer was decoded into)."""
    if not isinstance(data, dict):
        raise BadResponse("answer is not a JSON object")
    usage = _get(data, "usageMetadata", "usage_metadata")
    usage = usage if isinstance(usage, dict) else None
    response_id = _get(data, "responseId", "response_id")
    model_version = _get(data, "modelVersion", "model_version")
    feedback = _get(data, "promptFeedback", "prompt_feedback")
    block_reason = None
    if isinstance(feedback, dict):
        reason = _get(feedback, "blockReason", "block_reason")
        block_reason = str(reason) if reason else None
    candidates = data.get("candidates")
    images: list[AnswerImage] = []
    texts: list[str] = []
    finish_reason = None
    if isinstance(candidates, list) and candidates:
        first = candidates[0]
        if not isinstance(first, dict):
            raise BadResponse("candidates[0] is not an object")
        reason = _get(first, "finishReason", "finish_reason")
        finish_reason = str(reason) if reason else None
        content = first.get("content")
        parts = content.get("parts") if isinstance(content, dict) else None
        for part in parts if isinstance(parts, list) else []:
            if not isinstance(part, dict) or part.get("thought") is True:
                continue  # drafts the model showed while thinking are never outputs
            text = part.get("text")
            if isinstance(text, str):
                texts.append(text)
            inline = _get(part, "inlineData", "inline_data")
            if isinstance(inline, dict):
                payload = inline.get("data")
                mime = _get(inline, "mimeType", "mime_type")
                if not isinstance(payload, str) or not isinstance(mime, str):
                    raise BadResponse("an inlineData part lacks data or mimeType")
                images.append(read_image(normalise_mime(mime), payload))
    elif not block_reason and not isinstance(candidates, list) and "error" in data:
        raise BadResponse("a 200 answer carried an error object")
    joined = "\n".join(texts).strip()
    return Answer(
        images=tuple(images),
        text=joined[:TEXT_LIMIT] if joined else None,
        finish_reason=finish_reason,
        block_reason=block_reason,
        usage=usage,
        response_id=str(response_id) if response_id else None,
        model_version=str(model_version) if model_version else None,
    )


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """What an error answer said: its status, message and any quota or retry hints."""

    status: str | None = None
    message: str | None = None
    retry_delay_s: float | None = None
    quota_per_day: bool = False
    quota_zero: bool = False
    details: list[Any] = field(default_factory=list)
    reasons: tuple[str, ...] = ()  # google.rpc.ErrorInfo reasons, such as API_KEY_INVALID


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
    zero = bool(isinstance(message, str) and _LIMIT_ZERO.search(message))
    for detail in details:
        if not isinstance(detail, dict):
            continue
        kind = str(detail.get("@type", ""))
        if kind.endswith("google.rpc.ErrorInfo") and isinstance(detail.get("reason"), str):
            reasons.append(detail["reason"])
        elif kind.endswith("google.rpc.RetryInfo"):
            retry_delay = parse_duration_s(_get(detail, "retryDelay", "retry_delay"))
        elif kind.endswith("google.rpc.QuotaFailure"):
            violations = detail.get("violations")
            for violation in violations if isinstance(violations, list) else []:
                if not isinstance(violation, dict):
                    continue
                quota_id = str(_get(violation, "quotaId", "quota_id") or "")
                if "PerDay" in quota_id:
                    per_day = True
                if str(_get(violation, "quotaValue", "quota_value")) == "0":
                    zero = True
    return ErrorInfo(
        status=str(status) if status else None,
        message=str(message) if message is not None else None,
        retry_delay_s=retry_delay,
        quota_per_day=per_day,
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
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)
