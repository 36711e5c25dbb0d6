"""Reading a grounded answer's groundingMetadata into the ledger's `grounding` (rules/grounding.py):
both key spellings, web and image sources, the bounds, and what is never kept."""

from __future__ import annotations

import json
from typing import Any

import pytest

from batchbanana.errors import make_scrubber
from batchbanana.ledger.records import ResultLine
from batchbanana.rules.answer import parse_answer
from batchbanana.rules.grounding import (
    MAX_QUERIES,
    MAX_SOURCES,
    MAX_TEXT,
    MAX_URI,
    read_grounding,
    scrub_grounding,
)
from batchbanana.rules.outcomes import Outcome


def _web(uri: Any, title: Any = "example.com") -> dict[str, Any]:
    return {"web": {"uri": uri, "title": title}}


def _grounded(metadata: dict[str, Any]) -> dict[str, Any] | None:
    return read_grounding({"finishReason": "STOP", "groundingMetadata": metadata})


def test_no_grounding_metadata_means_no_grounding() -> None:
    """An answer to an ungrounded request has none, and its line stays as it was."""
    assert read_grounding({"finishReason": "STOP"}) is None
    assert parse_answer(b'{"candidates": [{"finishReason": "STOP"}]}').grounding is None


def test_queries_and_sources_in_either_spelling() -> None:
    """camelCase and snake_case metadata read the same; image chunks link the page and keep the
    image's own URI; Google's search chip and supports are not kept."""
    camel = {
        "webSearchQueries": ["everest height"],
        "imageSearchQueries": ["everest photo"],
        "searchEntryPoint": {"renderedContent": "<div>chip</div>"},
        "groundingSupports": [{"segment": {"text": "x"}, "groundingChunkIndices": [0]}],
        "groundingChunks": [
            _web("https://a.example/x", "a.example"),
            {"image": {"sourceUri": "https://b.example/page", "imageUri": "https://b.example/i.jpg",
                       "title": "Everest", "domain": "b.example"}},
            {"retrievedContext": {"uri": "gs://bucket/doc", "title": "not a search"}},
        ],
    }  # fmt: skip
    snake = {
        "web_search_queries": ["everest height"],
        "image_search_queries": ["everest photo"],
        "grounding_chunks": [
            _web("https://a.example/x", "a.example"),
            {"image": {"source_uri": "https://b.example/page",
                       "image_uri": "https://b.example/i.jpg", "title": "Everest"}},
        ],
    }  # fmt: skip
    expected = {
        "queries": ["everest height"],
        "sources": [
            {"title": "a.example", "uri": "https://a.example/x"},
            {"title": "Everest", "uri": "https://b.example/page", "image_uri": "https://b.example/i.jpg"},
        ],
        "image_queries": ["everest photo"],
    }  # fmt: skip
    assert _grounded(camel) == expected
    assert read_grounding({"grounding_metadata": snake}) == expected


def test_a_grounded_answer_that_searched_nothing_says_so() -> None:
    """Metadata with no queries or sources is still grounding: empty lists."""
    assert _grounded({}) == {"queries": [], "sources": []}


@pytest.mark.parametrize(
    ("chunk", "kept"),
    [
        pytest.param(_web("https://ok.example/a"), True, id="https"),
        pytest.param(_web("http://ok.example/a"), True, id="http"),
        pytest.param(_web("javascript:alert(1)"), False, id="javascript"),
        pytest.param(_web("data:text/html,<b>x</b>"), False, id="data"),
        pytest.param(_web("https://"), False, id="no-host"),
        pytest.param(_web(42), False, id="not-text"),
        pytest.param(_web("https://ok.example/" + "a" * MAX_URI), False, id="too-long"),
    ],
)
def test_only_http_links_of_bounded_length_are_kept(chunk: dict[str, Any], kept: bool) -> None:
    """A source is kept only with a link a reader can follow; the others are counted."""
    grounding = _grounded({"groundingChunks": [chunk]})
    assert grounding is not None
    assert bool(grounding["sources"]) is kept
    assert grounding.get("more_sources", 0) == (0 if kept else 1)


def test_sizes_are_bounded_and_what_is_left_out_is_counted() -> None:
    """At most MAX_QUERIES queries and MAX_SOURCES sources, texts cut at MAX_TEXT with an
    ellipsis, a missing title named by the link's host, a repeated link kept once."""
    metadata = {
        "webSearchQueries": [f"query {n} " + "q" * 400 for n in range(MAX_QUERIES + 3)],
        "groundingChunks": [_web("https://same.example/", "first"), _web("https://same.example/")]
        + [_web(f"https://{n}.example/", "t" * 400 if n else None) for n in range(MAX_SOURCES + 4)],
    }
    grounding = _grounded(metadata)
    assert grounding is not None
    assert len(grounding["queries"]) == MAX_QUERIES and grounding["more_queries"] == 3
    assert all(len(query) == MAX_TEXT and query.endswith("…") for query in grounding["queries"])
    assert len(grounding["sources"]) == MAX_SOURCES and grounding["more_sources"] == 5
    assert grounding["sources"][0] == {"title": "first", "uri": "https://same.example/"}
    assert grounding["sources"][1] == {"title": "0.example", "uri": "https://0.example/"}
    assert len(json.dumps(grounding)) < 40_000


def test_grounding_text_is_scrubbed_of_the_key() -> None:
    """A server that echoes the key anywhere in the grounding does not get it into the ledger."""
    grounding = {"queries": ["sk-secret-key-123456"], "sources": [{"title": "sk-secret-key-123456",
                 "uri": "https://x.example/?key=sk-secret-key-123456"}]}  # fmt: skip
    scrubbed = json.dumps(scrub_grounding(grounding, make_scrubber(["sk-secret-key-123456"])))
    assert "sk-secret-key-123456" not in scrubbed


def test_the_result_line_writes_grounding_only_when_there_is_some() -> None:
    """`grounding` is an optional field: after the others, and absent from an ungrounded line,
    so ledgers without grounding stay byte for byte as they were."""
    grounding = {"queries": ["q"], "sources": [{"title": "t", "uri": "https://t.example/"}]}
    plain = ResultLine.for_attempt("a", 1, "sha256:x", Outcome.OK, 0.09, {"model": "m"})
    grounded = ResultLine.for_attempt(
        "a", 1, "sha256:x", Outcome.OK, 0.09, {"model": "m"}, grounding=grounding
    )
    assert "grounding" not in plain.to_json()
    assert list(grounded.to_json())[-1] == "grounding"
    again = ResultLine.from_json(json.loads(json.dumps(grounded.to_json())))
    assert again is not None and again.grounding == grounding
    broken = ResultLine.from_json({**plain.to_json(), "grounding": "not an object"})
    assert broken is not None and broken.grounding is None
