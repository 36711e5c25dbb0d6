"""Reading a 200 answer of the wire format (contract section 3): its images, the model's words,
the finish or block reason and usage, from camelCase or snake_case keys and either base64 alphabet.

Pure functions on bytes and dicts, so every shape an answer can take is tested without a network;
anything unreadable is a BadResponse, never another exception.
"""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pybase64

from batchbanana.errors import BadResponse
from batchbanana.rules.grounding import read_grounding
from batchbanana.rules.media import normalise_mime

TEXT_LIMIT = 500  # characters of the model's words kept in the ledger


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
    grounding: dict[str, Any] | None = None  # what a grounded answer searched and cited


def camel_or_snake(mapping: Mapping[str, Any], camel: str, snake: str) -> Any:
    """A field under its camelCase key, else its snake_case one (parsers accept both)."""
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
    usage = camel_or_snake(data, "usageMetadata", "usage_metadata")
    usage = usage if isinstance(usage, dict) else None
    response_id = camel_or_snake(data, "responseId", "response_id")
    model_version = camel_or_snake(data, "modelVersion", "model_version")
    feedback = camel_or_snake(data, "promptFeedback", "prompt_feedback")
    block_reason = None
    if isinstance(feedback, dict):
        reason = camel_or_snake(feedback, "blockReason", "block_reason")
        block_reason = str(reason) if reason else None
    candidates = data.get("candidates")
    images: list[AnswerImage] = []
    texts: list[str] = []
    finish_reason = None
    grounding = None
    if isinstance(candidates, list) and candidates:
        first = candidates[0]
        if not isinstance(first, dict):
            raise BadResponse("candidates[0] is not an object")
        reason = camel_or_snake(first, "finishReason", "finish_reason")
        finish_reason = str(reason) if reason else None
        grounding = read_grounding(first)
        content = first.get("content")
        parts = content.get("parts") if isinstance(content, dict) else None
        for part in parts if isinstance(parts, list) else []:
            if not isinstance(part, dict) or part.get("thought") is True:
                continue  # drafts the model showed while thinking are never outputs
            text = part.get("text")
            if isinstance(text, str):
                texts.append(text)
            inline = camel_or_snake(part, "inlineData", "inline_data")
            if isinstance(inline, dict):
                payload = inline.get("data")
                mime = camel_or_snake(inline, "mimeType", "mime_type")
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
        grounding=grounding,
    )
