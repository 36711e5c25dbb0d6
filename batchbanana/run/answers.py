"""Streaming answers: image data is decoded from the body as it arrives, straight into a file.

A 4K answer is a 15-25 MB image carried as base64 inside JSON. Reading the body, parsing it and
decoding the string would hold three or four copies of every image in flight; here each request
holds a few buffers. The JSON around the images (text, finish reason, usage) is small: it is kept,
with each image's data replaced by a placeholder, and parsed once the body is complete.
"""

from __future__ import annotations

import binascii
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pybase64

from batchbanana.errors import BadResponse, SinkError
from batchbanana.rules.answer import (
    URLSAFE_TO_STANDARD,
    Answer,
    AnswerImage,
    ImageReader,
    answer_from_json,
    decode_base64,
    load_json,
)
from batchbanana.run.outputs import temp_path

# The key of an image's data, at the point its string value opens. Inside a JSON string a quote
# is escaped (\"), so `{` or `,` then `"data"` cannot be text that merely mentions it.
_DATA_KEY = re.compile(rb'[{,]\s*"data"\s*:\s*"')
_SCAN_OVERLAP = 32  # bytes of the kept JSON re-scanned when a chunk ends inside the key
# Image data is a `data` key directly inside an `inlineData` (or `inline_data`) object; any other
# `data` string is ordinary JSON and is kept as it is.
_INLINE_OPENED = re.compile(rb'"inline_?[dD]ata"\s*:\s*\{(?:[^{}"]|"(?:[^"\\]|\\.)*")*\Z')
_CONTEXT_BYTES = 4096
SPILL_BYTES = 256 * 1024  # decoded bytes an image may hold in memory before it goes to a file
_PLACEHOLDER = "@batchbanana-image-{}@"
T = TypeVar("T")
_ESCAPE = re.compile(rb"\\(u[0-9a-fA-F]{4}|[^u])")
_SIMPLE_ESCAPES = {b"/": b"/", b"\\": b"\\", b"n": b"", b"r": b"", b"t": b"", b'"': b'"'}


class _ImageFile:
    """One image being decoded: kept in memory while small, spilled to a temporary file beyond
    SPILL_BYTES (so a small image costs no file creation on the event loop, and a 4K one costs
    a buffer, not itself)."""

    def __init__(self, folder: Path, prefix: str, index: int) -> None:
        self._folder = folder
        self._prefix = prefix
        self._index = index
        self.path: Path | None = None  # set once spilled to a temporary file
        self.size = 0
        self.head = b""
        self.broken: str | None = None  # why the data cannot be decoded, if it cannot
        self._buffer = bytearray()
        self._carry = b""  # base64 characters not yet a multiple of four
        self._escape = b""  # an escape sequence cut by a chunk boundary
        self._fd = -1

    @property
    def data(self) -> bytes:
        """The decoded bytes of an image that stayed in memory."""
        return bytes(self._buffer)

    def feed(self, text: bytes) -> None:
        """Decode more of the image's base64 text (as it appears inside the JSON string)."""
        if self.broken is not None:
            return  # the rest of a broken image is skipped; it matters only if it is used
        try:
            self._feed(text)
        except BadResponse as exc:
            self.broken = str(exc)
            self._drop_file()

    def _feed(self, text: bytes) -> None:
        if self._escape or b"\\" in text:
            text = self._unescape(self._escape + text)
        if b"-" in text or b"_" in text:  # URL-safe alphabet; a memchr scan is far cheaper
            text = text.translate(URLSAFE_TO_STANDARD)
        if b"\n" in text or b" " in text or b"\r" in text or b"\t" in text:
            text = text.translate(None, b" \n\r\t")  # line-wrapped base64
        if self._carry:
            text = self._carry + text
        usable = len(text) - len(text) % 4
        self._carry = bytes(text[usable:])
        if usable:
            # A view, not a slice: the chunk is decoded without another copy of it.
            self._write(self._decode(memoryview(text)[:usable]))

    def _unescape(self, text: bytes) -> bytes:
        # Keep an escape cut by the chunk boundary for the next chunk.
        cut = text.rfind(b"\\")
        self._escape = b""
        if cut >= 0:
            tail = text[cut:]
            complete = len(tail) >= 2 and (tail[1:2] != b"u" or len(tail) >= 6)
            preceded_by_backslash = cut > 0 and text[cut - 1 : cut] == b"\\"
            if not complete and not preceded_by_backslash:
                self._escape, text = tail, text[:cut]

        def replace(match: re.Match[bytes]) -> bytes:
            code = match.group(1)
            if code[:1] == b"u":
                point = int(code[1:], 16)
                if point > 0x7F:  # base64 is ASCII: anything else is not image data
                    raise BadResponse(f"invalid character \\{code.decode()} in image data")
                return chr(point).encode("ascii")
            if code in _SIMPLE_ESCAPES:
                return _SIMPLE_ESCAPES[code]
            raise BadResponse(f"invalid escape \\{code.decode('latin-1')} in image data")

        return _ESCAPE.sub(replace, text)

    def _decode(self, data: bytes | memoryview) -> bytes:
        try:
            # pybase64 (SIMD) decodes a 4K answer several times faster than binascii.
            return pybase64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise BadResponse(f"image data is not valid base64 ({exc})") from None

    def _write(self, decoded: bytes) -> None:
        if len(self.head) < 32:
            self.head = (self.head + decoded[: 32 - len(self.head)])[:32]
        self.size += len(decoded)
        if self._fd < 0 and len(self._buffer) + len(decoded) <= SPILL_BYTES:
            self._buffer += decoded
            return
        if self._fd < 0:
            self._spill()
        view = memoryview(decoded)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            raise SinkError(f"cannot write {self.path}: {exc.strerror}") from None

    def _spill(self) -> None:
        self.path = temp_path(self._folder, self._prefix, f"s{self._index}")
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            view = memoryview(self._buffer)
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            raise SinkError(f"cannot write {self.path}: {exc.strerror}") from None
        self._buffer = bytearray()

    def close(self) -> None:
        """Decode what is left and close the file (not yet durable: see outputs.commit_image)."""
        if self.broken is None:
            try:
                if self._escape:
                    raise BadResponse("image data ends inside an escape sequence")
                rest = self._carry.rstrip(b"=")
                if rest:
                    if len(rest) % 4 == 1:
                        raise BadResponse("image data is not valid base64 (truncated)")
                    self._write(self._decode(rest + b"=" * (-len(rest) % 4)))
            except BadResponse as exc:
                self.broken = str(exc)
                self._drop_file()
        self._carry = b""
        self._close_fd()

    def _close_fd(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _drop_file(self) -> None:
        self._close_fd()
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None
        self._buffer = bytearray()

    def discard(self) -> None:
        """Close and delete the temporary file, if any, and forget the bytes."""
        self._drop_file()


class AnswerStream:
    """Reads one answer body chunk by chunk; images go to temporary files in `folder`."""

    def __init__(self, folder: Path, prefix: str) -> None:
        self.folder = folder
        self.prefix = prefix
        self._kept = bytearray()  # the JSON without image data
        self._scan_from = 0
        self._current: _ImageFile | None = None
        self._files: list[_ImageFile] = []

    def feed(self, chunk: bytes) -> None:
        """Take the next piece of the body."""
        while chunk:
            current = self._current
            if current is not None:
                end = chunk.find(b'"')
                if end < 0:
                    current.feed(chunk)
                    return
                current.feed(chunk[:end])
                current.close()
                self._current = None
                self._kept += b'"'
                self._scan_from = len(self._kept)
                chunk = chunk[end + 1 :]
                continue
            self._kept += chunk
            match = _DATA_KEY.search(self._kept, self._scan_from)
            while match is not None and not self._inside_inline_data(match.start()):
                match = _DATA_KEY.search(self._kept, match.end())
            if match is None:
                self._scan_from = max(self._scan_from, len(self._kept) - _SCAN_OVERLAP)
                return
            chunk = bytes(self._kept[match.end() :])
            del self._kept[match.end() :]
            image = _ImageFile(self.folder, self.prefix, len(self._files) + 1)
            self._files.append(image)
            self._kept += _PLACEHOLDER.format(len(self._files) - 1).encode()
            self._current = image

    def _inside_inline_data(self, key_at: int) -> bool:
        context = bytes(self._kept[max(0, key_at + 1 - _CONTEXT_BYTES) : key_at + 1])
        return _INLINE_OPENED.search(context) is not None

    def finish(self) -> Answer:
        """The whole answer, once the body is complete; raises BadResponse if it is not valid."""
        return self.finish_with(answer_from_json)

    def finish_with(self, read: Callable[[Any, ImageReader], T]) -> T:
        """`read` applied to the whole JSON once complete, with the reader of its images (a
        batch's response line wraps the answer); images `read` did not use are deleted. Raises
        BadResponse if the JSON is not valid."""
        if self._current is not None:
            raise BadResponse("answer cut off inside image data")
        data = load_json(self._kept)
        used: set[int] = set()

        def read_image(mime_type: str, payload: str) -> AnswerImage:
            for index, image in enumerate(self._files):
                if payload == _PLACEHOLDER.format(index):
                    if image.broken is not None:
                        raise BadResponse(image.broken)
                    used.add(index)
                    if image.path is None:
                        return AnswerImage.in_memory(mime_type, image.data)
                    return AnswerImage(
                        mime_type=mime_type, path=image.path, size=image.size, head=image.head
                    )
            return AnswerImage.in_memory(mime_type, decode_base64(payload))

        try:
            result = read(data, read_image)
        finally:
            # Drafts (`thought` parts) and data under other keys were decoded too: drop them.
            for index, image in enumerate(self._files):
                if index not in used:
                    image.discard()
            self._files = [image for index, image in enumerate(self._files) if index in used]
        return result

    def discard(self) -> None:
        """Delete every temporary file of this answer."""
        for image in self._files:
            image.discard()
        self._files = []
        self._current = None
