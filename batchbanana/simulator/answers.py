"""The 200 answers: images, refusals, blocks and broken bodies, shaped as the directives ask
(the error answers are faults.py's)."""

from __future__ import annotations

import gzip
import json
import re
import secrets
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from batchbanana.simulator.directives import Plan
from batchbanana.simulator.grounding import grounding_metadata
from batchbanana.simulator.images import ImageCache, image_dimensions, seeded_variant
from batchbanana.simulator.requests import ImageRequest, snake_case
from batchbanana.simulator.rules import INPUT_IMAGE_TOKENS, OUTPUT_TOKENS, ModelRule

HIGH_THOUGHT_TOKENS = 1200


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


def _usage(req: ImageRequest, output_tokens: int) -> dict[str, int]:
    prompt_tokens = max(1, len(req.prompt) // 4) + INPUT_IMAGE_TOKENS * req.input_images
    # thinkingLevel HIGH thinks longer, and Google bills thoughts as output (MINIMAL is the
    # model's default: it shows no thoughts count, as before)
    thoughts = HIGH_THOUGHT_TOKENS if req.thinking_level == "HIGH" else 0
    usage = {
        "promptTokenCount": prompt_tokens,
        "candidatesTokenCount": output_tokens,
        "totalTokenCount": prompt_tokens + output_tokens + thoughts,
    }
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return usage


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
    candidate = {"content": {"role": "model", "parts": parts}, "finishReason": finish, "index": 0}
    grounding = grounding_metadata(req.prompt, req.search, shapes)
    if grounding is not None:
        candidate["groundingMetadata"] = grounding
    return {
        "candidates": [candidate],
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
