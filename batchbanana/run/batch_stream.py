"""Reading a finished batch's responses from disk, one response at a time, in bounded memory.

A responses file is JSONL: each line one response. Inline results come as one operation JSON
whose `inlinedResponses` array holds them all. Either way each response is fed, piece by piece,
to an AnswerStream (run/answers.py), which decodes its images straight into temporary files: a
batch of 4K images costs a few buffers, never the file or the array in memory.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchbanana.errors import BadResponse
from batchbanana.rules.answer import Answer, ImageReader, answer_from_json
from batchbanana.rules.batch import split_request_key
from batchbanana.run.answers import AnswerStream

READ_BYTES = 1024 * 1024
# The inline results' array. A key's quotes are never escaped in JSON, so text that merely
# mentions the word (inside a string, its quotes escaped) cannot match.
_ARRAY_OPENS = re.compile(rb'"inlined_?[rR]esponses"\s*:\s*\{\s*"inlined_?[rR]esponses"\s*:\s*\[')
_STRUCTURE = re.compile(rb'[{}\[\]"]')
_IN_STRING = re.compile(rb'[\\"]')
_MARKER_TAIL = 96  # bytes kept between reads while looking for the array


@dataclass(slots=True)
class Response:
    """One response of a batch: its request key, and an answer, an error, or why unreadable."""

    key: tuple[str, int] | None
    answer: Answer | None = None
    error: dict[str, Any] | None = None
    problem: str | None = None


def _read_response(data: Any, read_image: ImageReader) -> Response:
    """A response line (`{"key", "response"|"error"}`) or an inline entry (`{"response"|"error",
    "metadata": {"key"}}`)."""
    if not isinstance(data, dict):
        return Response(None, problem="a response is not a JSON object")
    metadata = data.get("metadata")
    key = data.get("key")
    if key is None and isinstance(metadata, dict):
        key = metadata.get("key")
    request = split_request_key(key)
    error = data.get("error")
    if isinstance(error, dict):
        return Response(request, error=error)
    response = data.get("response")
    if not isinstance(response, dict):
        return Response(request, problem="the response holds neither an answer nor an error")
    try:
        return Response(request, answer=answer_from_json(response, read_image))
    except BadResponse as exc:
        return Response(request, problem=str(exc))


class _Element:
    """One response being read: its bytes go to an AnswerStream as they come."""

    def __init__(self, folder: Path, prefix: str) -> None:
        self.stream = AnswerStream(folder, prefix)

    def finish(self) -> Response:
        try:
            response = self.stream.finish_with(_read_response)
        except BadResponse as exc:
            self.stream.discard()
            return Response(None, problem=str(exc))
        if response.answer is None:  # unreadable after some of its images were decoded
            self.stream.discard()
        return response


def jsonl_responses(path: Path, folder: Path, prefix: str) -> Iterator[Response]:
    """Each response of a JSONL responses file (a JSON line never holds a raw newline)."""
    element: _Element | None = None
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(READ_BYTES):
                while chunk:
                    end = chunk.find(b"\n")
                    piece = chunk if end < 0 else chunk[:end]
                    if piece.strip() or element is not None:
                        element = element or _Element(folder, prefix)
                        element.stream.feed(piece)
                    if end < 0:
                        break
                    chunk = chunk[end + 1 :]
                    if element is not None:
                        done, element = element, None
                        yield done.finish()
        if element is not None:
            done, element = element, None
            yield done.finish()
    finally:
        if element is not None:  # stopped inside a response (an image that cannot be written)
            element.stream.discard()


class _OperationReader:
    """Reads an operation JSON as it comes: the inline results' arrays are split into elements
    (each to an AnswerStream, for the first array only: Google repeats it under `response`) and
    left out of the `skeleton`, the small rest from which the state and counts are read.
    Strings and nesting are tracked with C-speed searches: a 20 MB image string is one jump."""

    def __init__(self, folder: Path, prefix: str, emit: Callable[[Response], None] | None) -> None:
        self._folder = folder
        self._prefix = prefix
        self._emit = emit
        self.skeleton = bytearray()
        self._scan_from = 0
        self._inside = False
        self._arrays = 0
        self._depth = 0
        self._in_string = False
        self._escaped = False
        self._element: _Element | None = None

    def feed(self, chunk: bytes) -> None:
        while chunk:
            chunk = self._in_array(chunk) if self._inside else self._outside(chunk)

    def _outside(self, chunk: bytes) -> bytes:
        self.skeleton += chunk
        match = _ARRAY_OPENS.search(self.skeleton, self._scan_from)
        if match is None:
            self._scan_from = max(0, len(self.skeleton) - _MARKER_TAIL)
            return b""
        rest = bytes(self.skeleton[match.end() :])
        del self.skeleton[match.end() :]
        self._inside, self._depth, self._arrays = True, 1, self._arrays + 1
        return rest

    def _in_array(self, chunk: bytes) -> bytes:
        position = 0
        start = 0  # where the current element's bytes in this chunk begin
        while position < len(chunk):
            if self._escaped:
                self._escaped, position = False, position + 1
                continue
            pattern = _IN_STRING if self._in_string else _STRUCTURE
            match = pattern.search(chunk, position)
            if match is None:
                break
            position, mark = match.end(), match.group()
            if mark == b"\\":
                self._escaped = True
            elif mark == b'"':
                self._in_string = not self._in_string
            elif mark in (b"{", b"["):
                self._depth += 1
                if self._depth == 2:
                    start = position - 1
                    self._begin()
            else:
                self._depth -= 1
                if self._depth == 1:
                    self._end(chunk[start:position])
                elif self._depth == 0:  # the array's `]`: back to the skeleton
                    self._inside = False
                    self._scan_from = len(self.skeleton)
                    self.skeleton += b"]"
                    return chunk[position:]
        if self._element is not None:
            self._element.stream.feed(chunk[start:])
        return b""

    def _begin(self) -> None:
        if self._emit is not None and self._arrays == 1:
            self._element = _Element(self._folder, self._prefix)

    def _end(self, tail: bytes) -> None:
        if self._element is not None:
            self._element.stream.feed(tail)
            assert self._emit is not None
            self._emit(self._element.finish())
            self._element = None

    def close(self) -> None:
        if self._element is not None:
            self._element.stream.discard()  # the operation was cut off inside a response
            self._element = None


def inline_responses(path: Path, folder: Path, prefix: str) -> Iterator[Response]:
    """Each inline response of a finished batch's operation JSON saved at `path`."""
    ready: list[Response] = []
    reader = _OperationReader(folder, prefix, ready.append)
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(READ_BYTES):
                reader.feed(chunk)
                yield from ready
                ready.clear()
    finally:
        reader.close()


class Skeleton:
    """An operation JSON, or a page of the batches list (whose every operation may hold its
    inline results), read as it arrives with the inline results' arrays left out: what is kept
    is the small rest, however many images the answer carries."""

    def __init__(self) -> None:
        self._reader = _OperationReader(Path("."), "", None)

    def feed(self, chunk: bytes) -> None:
        self._reader.feed(chunk)

    @property
    def size(self) -> int:
        """Bytes kept so far."""
        return len(self._reader.skeleton)

    def json(self) -> Any:
        """The JSON kept (inline results' arrays read as empty); BadResponse if it is not JSON."""
        try:
            return json.loads(self._reader.skeleton)
        except ValueError:
            raise BadResponse("the batch's status is not valid JSON") from None


def saved_operation(path: Path) -> Any:
    """The operation JSON saved at `path` without its inline results (their arrays read as
    empty), for its state and counts; raises BadResponse if it is not JSON."""
    skeleton = Skeleton()
    with path.open("rb") as handle:
        while chunk := handle.read(READ_BYTES):
            skeleton.feed(chunk)
    return skeleton.json()
