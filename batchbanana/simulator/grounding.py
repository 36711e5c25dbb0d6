"""The grounding metadata of an answer to a request that carried the googleSearch tool, shaped as
Google's (candidates[0].groundingMetadata): search queries derived from the prompt, a couple of
web sources (and, with image search, an image source and its query) at example domains, and the
search entry point's HTML chip. The `many_sources` shape floods it, for clients' size limits."""

from __future__ import annotations

import hashlib
import re
from typing import Any

_DIRECTIVE = re.compile(r"\[sim:[^\]]*\]")
_WORDS = 8  # of the prompt in a query
_FLOOD = 40  # queries, and sources, of the `many_sources` shape


def _topic(prompt: str) -> str:
    words = _DIRECTIVE.sub(" ", prompt).split()
    return " ".join(words[:_WORDS]) or "image"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:48] or "topic"


def grounding_metadata(
    prompt: str, search: frozenset[str], shapes: frozenset[str]
) -> dict[str, Any] | None:
    """The answer's groundingMetadata (None without the search tool)."""
    if not search:
        return None
    topic, slug = _topic(prompt), _slug(_topic(prompt))
    digest = hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:10]
    queries = [topic, f"{topic} facts"]
    chunks: list[dict[str, Any]] = [
        {"web": {"uri": f"https://www.example.com/articles/{slug}", "title": "example.com"}},
        {"web": {"uri": f"https://example.org/wiki/{slug}-{digest}", "title": "example.org"}},
    ]
    metadata: dict[str, Any] = {
        "searchEntryPoint": {
            "renderedContent": '<div class="container"><a class="chip" href='
            f'"https://www.google.com/search?q={slug}">{topic}</a></div>'
        },
        "webSearchQueries": queries,
        "groundingChunks": chunks,
    }
    if "image" in search:
        metadata["imageSearchQueries"] = [f"{topic} photo"]
        chunks.append(
            {
                "image": {
                    "sourceUri": f"https://images.example.net/gallery/{slug}",
                    "imageUri": f"https://images.example.net/i/{digest}.jpg",
                    "title": f"{topic} - example gallery",
                    "domain": "images.example.net",
                }
            }
        )
    if "many_sources" in shapes:
        long_title = "a very long page title " * 20
        queries.extend(f"{topic} query {n} " + "x" * 300 for n in range(_FLOOD))
        chunks.append({"web": {"uri": "javascript:alert(1)", "title": "<b>not a link</b>"}})
        chunks.append({"web": {"uri": "https://example.com/" + "y" * 5000, "title": "too long"}})
        chunks.extend(
            {"web": {"uri": f"https://example.com/many/{n}", "title": f"{n} {long_title}"}}
            for n in range(_FLOOD)
        )
    return metadata
