"""The streaming answer reader gives exactly what a plain parse gives, on every answer shape."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchbanana.errors import BadResponse, SinkError
from batchbanana.rules.answer import Answer, parse_answer
from batchbanana.run.answers import SPILL_BYTES, AnswerStream
from tests.conftest import CliResult, png_bytes, results

IMAGE = png_bytes(40, 30, padding=5000)
DRAFT = png_bytes(4, 4)


def b64(data: bytes) -> str:
    """Standard base64."""
    return base64.b64encode(data).decode()


def answer(parts: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """A Gemini answer with one candidate."""
    return {
        "candidates": [
            {"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}
        ],
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 1120},
        "responseId": "r1",
        **extra,
    }


LARGE = png_bytes(64, 64, padding=SPILL_BYTES * 3)  # decoded into a temporary file, not memory
LARGE_BODY = json.dumps(
    answer([{"inlineData": {"mimeType": "image/png", "data": b64(LARGE)}}])
).encode()

SHAPES: dict[str, bytes] = {
    "camel": json.dumps(
        answer([{"text": "here"}, {"inlineData": {"mimeType": "image/png", "data": b64(IMAGE)}}])
    ).encode(),
    "snake": json.dumps(
        answer([{"inline_data": {"mime_type": "image/png", "data": b64(IMAGE)}}])
    ).encode(),
    "data-before-mime": json.dumps(
        answer([{"inlineData": {"data": b64(IMAGE), "mimeType": "image/png"}}])
    ).encode(),
    "urlsafe-unpadded": json.dumps(
        answer(
            [
                {
                    "inlineData": {
                        "mimeType": "image/png",
                        "data": base64.urlsafe_b64encode(IMAGE).decode().rstrip("="),
                    }
                }
            ]
        )
    ).encode(),
    "escaped-slashes": json.dumps(
        answer([{"inlineData": {"mimeType": "image/png", "data": b64(IMAGE)}}])
    )
    .replace("/", "\\/")
    .encode(),
    "thought-then-final": json.dumps(
        answer(
            [
                {"thought": True, "inlineData": {"mimeType": "image/png", "data": b64(DRAFT)}},
                {"thought": True, "text": "drafting"},
                {"text": "final"},
                {"inlineData": {"mimeType": "image/png", "data": b64(IMAGE)}},
            ]
        )
    ).encode(),
    "two-images": json.dumps(
        answer(
            [
                {"inlineData": {"mimeType": "image/png", "data": b64(IMAGE)}},
                {"inlineData": {"mimeType": "image/png", "data": b64(DRAFT)}},
            ]
        )
    ).encode(),
    "pretty-printed": json.dumps(
        answer([{"inlineData": {"mimeType": "image/png", "data": b64(IMAGE)}}]), indent=2
    ).encode(),
    "large-spilled-to-a-file": LARGE_BODY,
    "line-wrapped": json.dumps(
        answer(
            [{"inlineData": {"mimeType": "image/png", "data": base64.encodebytes(IMAGE).decode()}}]
        )
    ).encode(),
    "broken-draft-ignored": json.dumps(
        answer(
            [
                {
                    "thought": True,
                    "inlineData": {"mimeType": "image/png", "data": "!!not base64!!"},
                },
                {"inlineData": {"mimeType": "image/png", "data": b64(IMAGE)}},
            ]
        )
    ).encode(),
    "text-only": json.dumps(answer([{"text": "no image today"}])).encode(),
    "blocked": json.dumps({"promptFeedback": {"blockReason": "SAFETY"}}).encode(),
    "text-mentions-data-key": json.dumps(
        answer(
            [
                {"text": 'use {"data": "x"} and ,"data":"y"'},
                {"inlineData": {"mimeType": "image/png", "data": b64(IMAGE)}},
            ]
        )
    ).encode(),
}


def streamed(body: bytes, folder: Path, sizes: list[int]) -> Answer:
    """Feed a body to an AnswerStream in pieces of the given sizes (cycled)."""
    stream = AnswerStream(folder, "item")
    position = 0
    index = 0
    while position < len(body):
        size = sizes[index % len(sizes)]
        stream.feed(body[position : position + size])
        position += size
        index += 1
    return stream.finish()


def image_bytes(result: Answer) -> list[tuple[str, bytes]]:
    """(mime, bytes) of every image, read from memory or from its temporary file."""
    found = []
    for image in result.images:
        data = image.path.read_bytes() if image.path is not None else image.data
        assert image.size == len(data)
        assert image.head == data[:32]
        found.append((image.mime_type, data))
    return found


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("sizes", [[1], [3, 7], [64], [4096], [10**9]], ids=str)
def test_streaming_matches_plain_parse(shape: str, sizes: list[int], tmp_path: Path) -> None:
    """Every answer shape, cut at any chunk sizes, gives the plain parse's images and fields."""
    body = SHAPES[shape]
    plain = parse_answer(body)
    result = streamed(body, tmp_path, sizes)
    assert image_bytes(result) == image_bytes(plain)
    assert (result.text, result.finish_reason, result.block_reason, result.usage) == (
        plain.text,
        plain.finish_reason,
        plain.block_reason,
        plain.usage,
    )
    kept = {image.path for image in result.images if image.path is not None}
    assert set(tmp_path.iterdir()) == kept  # drafts and leftovers are deleted


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=9000), min_size=1, max_size=12))
def test_streaming_is_independent_of_where_chunks_end(
    cuts: list[int], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Random chunk boundaries (inside keys, escapes and base64 groups) never change the image."""
    folder = tmp_path_factory.mktemp("cuts")
    body = SHAPES["escaped-slashes"]
    assert image_bytes(streamed(body, folder, cuts)) == image_bytes(parse_answer(body))


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(SHAPES["camel"][: len(SHAPES["camel"]) // 2], id="cut-in-image"),
        pytest.param(SHAPES["camel"][:-3], id="cut-after-image"),
        pytest.param(b"<html>oops</html>", id="not-json"),
        pytest.param(
            json.dumps(
                answer([{"inlineData": {"mimeType": "image/png", "data": "!!!$"}}])
            ).encode(),
            id="bad-base64",
        ),
    ],
)
def test_broken_answers_are_bad_response_and_leave_no_file(body: bytes, tmp_path: Path) -> None:
    """A cut or invalid answer raises BadResponse, and discard() leaves the folder empty."""
    stream = AnswerStream(tmp_path, "item")
    with pytest.raises(BadResponse):
        stream.feed(body)
        stream.finish()
    stream.discard()
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_folder_is_a_sink_error(tmp_path: Path) -> None:
    """When the image file cannot be created the stream says so as a SinkError (write_error)."""
    stream = AnswerStream(tmp_path / "missing", "item")
    with pytest.raises(SinkError):
        stream.feed(LARGE_BODY)


Cli = Callable[..., CliResult]


@pytest.mark.parametrize(
    ("directive", "outcome", "images"),
    [
        pytest.param("escaped_slashes", "ok", 1, id="escaped-slashes"),
        pytest.param("urlsafe", "ok", 1, id="urlsafe"),
        pytest.param("snake", "ok", 1, id="snake-case"),
        pytest.param("gzip", "ok", 1, id="gzip"),
        pytest.param("thought", "ok", 1, id="thought-draft-skipped"),
        pytest.param("two_images", "ok", 2, id="two-images"),
        pytest.param("jpeg", "ok", 1, id="jpeg"),
        pytest.param("bad_b64", "bad_response", 0, id="bad-base64"),
        pytest.param("cut", "bad_response", 0, id="cut-body"),
    ],
)
def test_answer_shapes_end_to_end(
    cli: Cli,
    write_manifest: Callable[..., Path],
    simulator: Any,
    tmp_path: Path,
    directive: str,
    outcome: str,
    images: int,
) -> None:
    """Each answer shape the simulator can play ends as the contract says, with no stray file."""
    manifest = write_manifest(
        [{"id": "x", "prompt": f"p [sim:{directive}]"}], endpoint=simulator.url
    )
    cli("run", str(manifest), "--no-progress")
    lines = results(tmp_path / "out" / "ledger.jsonl")
    assert [line["outcome"] for line in lines] == [outcome]
    files = sorted(
        path.name
        for path in (tmp_path / "out").iterdir()
        if path.name != "ledger.jsonl" and path.suffix != ".json"
    )
    assert len(files) == images
    assert len(list((tmp_path / "out").glob("*.json"))) == images  # a sidecar per image
    assert not [name for name in files if name.endswith(".tmp")]
    if images == 2:
        assert set(files) == {"x.png", "x+2.png"}
    if outcome == "ok":
        assert lines[0]["bytes"] == sum((tmp_path / "out" / name).stat().st_size for name in files)


def test_a_data_string_outside_inline_data_is_kept_as_json(tmp_path: Path) -> None:
    """Only `inlineData.data` is image data; another `data` string does not spoil the answer."""
    body = json.dumps(
        answer(
            [{"inlineData": {"mimeType": "image/png", "data": b64(IMAGE)}}],
            groundingMetadata={"data": "see https://example.com/a?b=c"},
        )
    ).encode()
    result = streamed(body, tmp_path, [17])
    assert image_bytes(result) == [("image/png", IMAGE)]
