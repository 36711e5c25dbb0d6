"""The Gemini-native wire format (contract section 3), the request side: the URL, the header
that carries the key, and the JSON body. What comes back is read by rules/answer.py (a 200) and
rules/error_answer.py (any other status).

Pure functions on strings and dicts, so every request shape is tested without a network.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from batchbanana.rules.models import NO_GROUNDING, rules_for

API_PATH = "/v1beta/models/{model}:generateContent"


def search_tool(grounding: str) -> dict[str, Any]:
    """Google Search as a tool (contract section 13), in the shape google-genai's converters give
    Tool(google_search=GoogleSearch(...)) (models._Tool_to_mldev, _GoogleSearch_to_mldev), keys
    in camelCase: `web` is the bare tool (it searches the web when no search type is set), and
    `web+image` names both search types (types.SearchTypes: web_search, image_search)."""
    if grounding == "web+image":
        return {"googleSearch": {"searchTypes": {"webSearch": {}, "imageSearch": {}}}}
    return {"googleSearch": {}}


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
    seed: int | None = None,
    grounding: str = NO_GROUNDING,
    thinking_level: str | None = None,
) -> dict[str, Any]:
    """The JSON body of one generateContent call, camelCase keys only.

    `grounding` adds the Google Search tool (search_tool); `thinking_level` is sent as
    generationConfig.thinkingConfig.thinkingLevel, spelt as google-genai's ThinkingLevel enum
    ("MINIMAL", "HIGH").

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
    if seed is not None:
        generation_config["seed"] = seed
    if thinking_level is not None:
        generation_config["thinkingConfig"] = {"thinkingLevel": thinking_level.upper()}
    body: dict[str, Any] = {
        "contents": [{"role": "user", "parts": [*image_parts, {"text": prompt}]}],
        "generationConfig": generation_config,
    }
    if grounding != NO_GROUNDING:
        body["tools"] = [search_tool(grounding)]
    if system_prompt is not None:
        body["systemInstruction"] = {"parts": [{"text": system_prompt}]}
    return body


def inline_part(mime_type: str, data_b64: str) -> dict[str, Any]:
    """An inline image part."""
    return {"inlineData": {"mimeType": mime_type, "data": data_b64}}


def file_part(mime_type: str, uri: str) -> dict[str, Any]:
    """An image given by URL, fetched by the provider (Gemini-native endpoints only)."""
    return {"fileData": {"mimeType": mime_type, "fileUri": uri}}
