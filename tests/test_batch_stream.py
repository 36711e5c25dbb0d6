"""Reading a batch's responses from disk one at a time: the JSONL responses file and the inline
results inside an operation JSON, whatever the read boundaries, images decoded to files."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from batchbanana.run import batch_stream
from batchbanana.run.batch_stream import inline_responses, jsonl_responses, saved_operation

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 50


def _answer(text: str, data: bytes = PNG) -> dict[str, object]:
    return {
        "candidates": [
            {
                "content": {
                    "parts": [
                        {"text": text},
                        {"inlineData": {"mimeType": "image/png",
                                        "data": base64.b64encode(data).decode()}},
                    ]
                },
                "finishReason": "STOP",
            }
        ]
    }  # fmt: skip


@pytest.fixture(params=[7, 1000, 1 << 20])
def small_reads(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(batch_stream, "READ_BYTES", request.param)
    return int(request.param)


def test_a_responses_file_gives_each_line_with_its_image_on_disk(
    tmp_path: Path, small_reads: int
) -> None:
    lines = [
        {"key": "a#1", "response": _answer('he said "inlinedResponses": [ {')},
        {
            "key": "b#2",
            "error": {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED"},
        },
        {"key": "c#1", "response": {"candidates": []}, "extra": [1, {"x": "]}"}]},
    ]
    path = tmp_path / "responses.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    got = list(jsonl_responses(path, tmp_path, "collect"))
    assert [r.key for r in got] == [("a", 1), ("b", 2), ("c", 1)]
    first = got[0].answer
    assert first is not None and len(first.images) == 1
    image = first.images[0]
    stored = image.path.read_bytes() if image.path is not None else image.data
    assert stored == PNG
    assert got[1].error is not None and got[1].error["code"] == 429
    assert got[2].answer is not None and got[2].answer.images == ()


def test_inline_results_are_split_from_the_operation_and_its_skeleton_keeps_the_state(
    tmp_path: Path, small_reads: int
) -> None:
    entries = [
        {"response": _answer("one \\ backslash"), "metadata": {"key": "a#1"}},
        {"error": {"code": 500, "message": "boom"}, "metadata": {"key": "b#1"}},
    ]
    output = {"inlinedResponses": {"inlinedResponses": entries}}
    operation = {
        "name": "batches/1",
        "metadata": {"state": "BATCH_STATE_SUCCEEDED", "output": output, "displayName": "k"},
        "done": True,
        "response": output,  # Google repeats the results here: read once
    }
    path = tmp_path / "op.json"
    path.write_text(json.dumps(operation))
    got = list(inline_responses(path, tmp_path, "collect"))
    assert [r.key for r in got] == [("a", 1), ("b", 1)]
    assert got[0].answer is not None and got[0].answer.text == "one \\ backslash"
    skeleton = saved_operation(path)
    assert skeleton["metadata"]["state"] == "BATCH_STATE_SUCCEEDED"
    assert skeleton["metadata"]["output"]["inlinedResponses"]["inlinedResponses"] == []
    assert skeleton["response"]["inlinedResponses"]["inlinedResponses"] == []
