"""The request body of one attempt: an item's prompt, settings and input images as the wire format
says (rules/wire.py), serialised once."""

from __future__ import annotations

import json

from batchbanana.plan.inputs import EncodedImageCache
from batchbanana.plan.job import WorkItem
from batchbanana.rules.wire import build_request, file_part, inline_part


def request_body(item: WorkItem, images: EncodedImageCache) -> bytes:
    """The generateContent body for an item: local and inlined URL images read and encoded (once
    each, by the cache), other URLs as fileData."""
    parts = []
    for image in item.images:
        if image.kind == "url" and not image.inline:
            parts.append(file_part(image.mime_type, image.reference))
        else:
            parts.append(inline_part(*images.get(image)))
    body = build_request(
        model=item.model,
        prompt=item.prompt,
        image_parts=parts,
        image_size=item.image_size,
        aspect_ratio=item.aspect_ratio,
        system_prompt=item.system_prompt,
        response_modalities=item.response_modalities,
        seed=item.seed,
        grounding=item.grounding,
        thinking_level=item.thinking_level,
    )
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
