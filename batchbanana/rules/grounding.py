"""What a grounded answer searched and cited (contract section 13), read from its
candidates[0].groundingMetadata (camelCase or snake_case keys) into the ledger's `grounding`, at a
bounded size. Pure.

`queries` are the web search queries, `image_queries` the image search queries (only when there
are some), `sources` each cited page once as `{title, uri}` (an image source adds `image_uri`, the
image itself; `uri` is the page that holds it, the one to link). At most MAX_QUERIES queries of
each kind and MAX_SOURCES sources are kept, and `more_queries` / `more_sources` count what was left
out; a query or title is cut at MAX_TEXT characters (with an ellipsis); a source whose link is not
http(s) or is longer than MAX_URI characters is left out (a cut link leads nowhere), and an
image_uri that long is dropped. Other grounding (Google's search chip HTML, supports, retrieval)
is not kept.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

MAX_QUERIES = 10
MAX_SOURCES = 16
MAX_TEXT = 200
MAX_URI = 1000


def _pick(mapping: Mapping[str, Any], camel: str, snake: str) -> Any:
    return mapping[camel] if camel in mapping else mapping.get(snake)


def _cut(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= MAX_TEXT else flat[: MAX_TEXT - 1] + "…"


def _link(value: Any) -> str | None:
    """A link worth keeping: an http(s) URI with a host, within MAX_URI characters."""
    if not isinstance(value, str) or len(value) > MAX_URI:
        return None
    try:
        parts = urlsplit(value.strip())
    except ValueError:
        return None
    return value.strip() if parts.scheme in ("http", "https") and parts.netloc else None


def _queries(value: Any) -> tuple[list[str], int]:
    """(kept queries, how many more there were)."""
    listed = value if isinstance(value, list) else []
    found = [_cut(query) for query in listed if isinstance(query, str) and query.strip()]
    return found[:MAX_QUERIES], max(0, len(found) - MAX_QUERIES)


def _source(chunk: Any) -> dict[str, str] | None:
    """A chunk's source; None for a chunk that is not a search result, {} for a search result
    whose link cannot be kept."""
    if not isinstance(chunk, Mapping):
        return None
    web, image = chunk.get("web"), chunk.get("image")
    if isinstance(web, Mapping):
        uri, title, extra = _link(web.get("uri")), web.get("title"), None
    elif isinstance(image, Mapping):
        uri = _link(_pick(image, "sourceUri", "source_uri"))
        title, extra = image.get("title"), _link(_pick(image, "imageUri", "image_uri"))
    else:
        return None
    if uri is None:
        return {}
    name = _cut(title) if isinstance(title, str) and title.strip() else urlsplit(uri).netloc
    source = {"title": name, "uri": uri}
    if extra is not None:
        source["image_uri"] = extra
    return source


def read_grounding(candidate: Mapping[str, Any]) -> dict[str, Any] | None:
    """The grounding of an answer's first candidate, or None when it has no grounding
    metadata (the request was not grounded)."""
    metadata = _pick(candidate, "groundingMetadata", "grounding_metadata")
    if not isinstance(metadata, Mapping):
        return None
    queries, more_queries = _queries(_pick(metadata, "webSearchQueries", "web_search_queries"))
    images, more_images = _queries(_pick(metadata, "imageSearchQueries", "image_search_queries"))
    chunks = _pick(metadata, "groundingChunks", "grounding_chunks")
    sources: list[dict[str, str]] = []
    seen: set[str] = set()
    more_sources = 0
    for chunk in chunks if isinstance(chunks, list) else []:
        source = _source(chunk)
        if source is None or source.get("uri") in seen:
            continue
        if not source or len(sources) >= MAX_SOURCES:
            more_sources += 1
            continue
        seen.add(source["uri"])
        sources.append(source)
    grounding: dict[str, Any] = {"queries": queries, "sources": sources}
    if images:
        grounding["image_queries"] = images
    if more_queries + more_images:
        grounding["more_queries"] = more_queries + more_images
    if more_sources:
        grounding["more_sources"] = more_sources
    return grounding


def scrub_grounding(grounding: Any, scrub: Callable[[str], str]) -> Any:
    """The grounding with `scrub` applied to every text in it (a server may echo anything)."""
    if isinstance(grounding, str):
        return scrub(grounding)
    if isinstance(grounding, dict):
        return {key: scrub_grounding(value, scrub) for key, value in grounding.items()}
    if isinstance(grounding, list):
        return [scrub_grounding(value, scrub) for value in grounding]
    return grounding
