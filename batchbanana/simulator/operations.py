"""A batch as Google answers it: the long-running Operation JSON (state, counts, and the output
once finished), written out as pieces so that inline responses are streamed from disk into the
answer, never gathered in memory."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from batchbanana.simulator.batches import PENDING, Batch
from batchbanana.simulator.files import rfc3339

_BATCH_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch"
_OUTPUT_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput"
_MARK = "@@sim-output@@"
_SLOT = json.dumps(_MARK)
_READ = 1 << 20


@dataclass(frozen=True, slots=True)
class Splice:
    """A file of JSON lines, written as the items of a JSON array (newlines become commas)."""

    path: Path
    size: int

    @property
    def length(self) -> int:
        return max(0, self.size - 1)  # every line ends in \n; the last one is dropped


Piece = bytes | Splice


def _metadata(batch: Batch) -> dict[str, Any]:
    total = len(batch.lines)
    stats = {"requestCount": str(total)}
    if batch.state != PENDING:
        stats["successfulRequestCount"] = str(batch.succeeded)
        stats["failedRequestCount"] = str(batch.failed)
    stats["pendingRequestCount"] = str(total - batch.succeeded - batch.failed)
    metadata: dict[str, Any] = {
        "@type": _BATCH_TYPE,
        "name": batch.name,
        "model": f"models/{batch.model}",
        "displayName": batch.display_name,
        "createTime": rfc3339(batch.created_s),
        "updateTime": rfc3339(batch.updated_s),
        "state": batch.state,
        "batchStats": stats,
    }
    if batch.input_file is not None:
        metadata["inputConfig"] = {"fileName": batch.input_file}
    if batch.end_s is not None:
        metadata["endTime"] = rfc3339(batch.end_s)
    return metadata


def _split(document: dict[str, Any], filling: Sequence[Sequence[Piece]]) -> list[Piece]:
    """json.dumps of the document, each `_SLOT` string in it replaced by the next filling."""
    texts = json.dumps(document).split(_SLOT)
    pieces: list[Piece] = [texts[0].encode()]
    for fill, text in zip(filling, texts[1:], strict=True):
        pieces += [*fill, text.encode()]
    return pieces


def operation_pieces(batch: Batch) -> list[Piece]:
    """The batch's Operation: metadata always; once finished, `done` and the output, in
    metadata.output and again in `response`, as Google gives it."""
    metadata = _metadata(batch)
    document: dict[str, Any] = {"name": batch.name, "metadata": metadata, "done": batch.done}
    if not batch.has_output or batch.output is None:
        return [json.dumps(document).encode()]
    if batch.mode == "file":
        metadata["output"] = {"responsesFile": batch.responses_file}
        document["response"] = {"@type": _OUTPUT_TYPE, **metadata["output"]}
        return [json.dumps(document).encode()]
    lines = Splice(batch.output, batch.output_bytes)
    metadata["output"] = document["response"] = _MARK
    array = b'{"inlinedResponses": ['
    plain = b'{"inlinedResponses": ' + array
    typed = b'{"@type": ' + json.dumps(_OUTPUT_TYPE).encode() + b', "inlinedResponses": ' + array
    return _split(document, [[plain, lines, b"]}}"], [typed, lines, b"]}}"]])


def list_pieces(batches: Sequence[Batch], next_token: str | None) -> list[Piece]:
    """A page of the batches list: {"operations": [...], "nextPageToken"}."""
    pieces: list[Piece] = [b'{"operations": [']
    for i, batch in enumerate(batches):
        if i:
            pieces.append(b", ")
        pieces += operation_pieces(batch)
    pieces.append(b"]")
    if next_token is not None:
        pieces.append(b', "nextPageToken": ' + json.dumps(next_token).encode())
    pieces.append(b"}")
    return pieces


def _read_splice(path: Path, size: int, offset: int) -> bytes:
    with path.open("rb") as handle:
        handle.seek(offset)
        return handle.read(min(_READ, size - offset)).replace(b"\n", b",")


async def send_pieces(request: web.Request, pieces: Sequence[Piece]) -> web.StreamResponse:
    """Answer 200 with the pieces as one JSON body, the spliced files read a megabyte at a time."""
    length = sum(p.length if isinstance(p, Splice) else len(p) for p in pieces)
    if all(isinstance(p, bytes) for p in pieces):
        body = b"".join(p for p in pieces if isinstance(p, bytes))
        return web.Response(body=body, content_type="application/json", charset="UTF-8")
    response = web.StreamResponse(headers={"Content-Type": "application/json; charset=UTF-8"})
    response.content_length = length
    try:
        await response.prepare(request)
        for piece in pieces:
            if isinstance(piece, bytes):
                await response.write(piece)
                continue
            for offset in range(0, piece.length, _READ):
                end = min(piece.length, offset + _READ)
                await response.write(await asyncio.to_thread(_read_splice, piece.path, end, offset))
        await response.write_eof()
    except ConnectionError:
        pass  # the client went away (a poller that stops reading once it has seen the state)
    return response
