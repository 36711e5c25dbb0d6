"""The provider stand-in: a local Gemini generateContent server that injects faults and bills.

It speaks the wire format of contract section 3 the way Google does (section 7) and shares no code
with the client on purpose: it is the other side of the wire, so its model rules, price books and
parsers are written out here again, and a client bug cannot hide behind a shared helper.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import email.utils
import functools
import gzip
import json
import math
import os
import random
import re
import secrets
import signal
import struct
import sys
import threading
import time
import zlib
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from aiohttp import web

__all__ = [
    "Directive",
    "DirectiveError",
    "Directives",
    "Plan",
    "RunningSimulator",
    "SimulatorConfig",
    "book_price",
    "create_app",
    "describe_price_book",
    "encode_jpeg",
    "encode_png",
    "image_dimensions",
    "pad_png",
    "parse_directives",
    "plan_request",
    "png_size",
    "run_simulator",
    "serve",
    "simulator_in_thread",
    "sniff_mime",
]

# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """How the simulated provider behaves: latency, random fault rates, image size and prices."""

    latency_s: float = 0.0
    rate_429: float = 0.0
    rate_503: float = 0.0
    rate_refuse: float = 0.0
    rate_no_image: float = 0.0
    rate_drop: float = 0.0
    rate_500: float = 0.0
    rate_slow: float = 0.0
    slow_s: float = 30.0
    retry_after_s: float | None = None
    image_bytes: int | None = None
    seed: int | None = None
    price_book: str = "apiyi"
    price_usd: Callable[[str, str], float] | None = None

    def __post_init__(self) -> None:
        for name in (
            "rate_429",
            "rate_503",
            "rate_refuse",
            "rate_no_image",
            "rate_drop",
            "rate_500",
            "rate_slow",
        ):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name}={rate} is not a probability; use a value from 0 to 1")
        if self.price_book not in _PRICE_BOOKS:
            books = " or ".join(sorted(_PRICE_BOOKS))
            raise ValueError(f"unknown price book {self.price_book!r}; use {books}")
        if self.latency_s < 0 or self.slow_s < 0:
            raise ValueError("latency_s and slow_s must not be negative")


# ---------------------------------------------------------------------------------------------
# Model rules and prices (contract sections 4 and 5), kept here on purpose
# ---------------------------------------------------------------------------------------------

_TEN_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")


@dataclass(frozen=True, slots=True)
class _ModelRule:
    family: str  # the model id without "-preview": the key of the price books
    sizes: tuple[str, ...]  # empty: the model fails whenever imageSize is present
    ratios: tuple[str, ...]


_PRO = _ModelRule("gemini-3-pro-image", ("1K", "2K", "4K"), _TEN_RATIOS)
_FLASH_31 = _ModelRule(
    "gemini-3.1-flash-image", ("512", "1K", "2K", "4K"), (*_TEN_RATIOS, "1:4", "4:1", "1:8", "8:1")
)
_FLASH_25 = _ModelRule("gemini-2.5-flash-image", (), _TEN_RATIOS)

_MODELS: Mapping[str, _ModelRule] = {
    "gemini-3-pro-image-preview": _PRO,
    "gemini-3-pro-image": _PRO,
    "gemini-3.1-flash-image-preview": _FLASH_31,
    "gemini-3.1-flash-image": _FLASH_31,
    "gemini-2.5-flash-image": _FLASH_25,
}

_LONG_SIDE_PX: Mapping[str, int] = {"512": 512, "1K": 1024, "2K": 2048, "4K": 4096}
_OUTPUT_TOKENS: Mapping[str, int] = {"512": 747, "1K": 1120, "2K": 1120, "4K": 2000}
_INPUT_IMAGE_TOKENS = 258

# "*" is any size. apiyi bills per request; google per output image (one per request here).
_PRICE_BOOKS: Mapping[str, Mapping[str, Mapping[str, str]]] = {
    "apiyi": {
        "gemini-3-pro-image": {"*": "0.09"},
        "gemini-3.1-flash-image": {"*": "0.055"},
        "gemini-2.5-flash-image": {"*": "0.02"},
    },
    "google": {
        "gemini-3-pro-image": {"1K": "0.134", "2K": "0.134", "4K": "0.24"},
        "gemini-3.1-flash-image": {"512": "0.045", "1K": "0.067", "2K": "0.101", "4K": "0.151"},
        "gemini-2.5-flash-image": {"*": "0.039"},
    },
}

_MAX_IMAGE_BYTES = 7_000_000
_MAX_IMAGES = 14
_MAX_BODY_BYTES = 100_000_000  # a body of this size or more is refused


def book_price(book: str, model: str, image_size: str) -> Decimal:
    """The price of one billed request in a book (image_size is "1K" when the request had none)."""
    prices = _PRICE_BOOKS[book][_MODELS[model].family]
    return Decimal(prices.get(image_size, prices.get("*", "0")))


def describe_price_book(config: SimulatorConfig) -> str:
    """One line naming the prices the simulator bills at, for `serve`'s banner."""
    if config.price_usd is not None:
        return "custom (price_usd callable)"
    unit = "per request" if config.price_book == "apiyi" else "per image"
    families = []
    for family, prices in _PRICE_BOOKS[config.price_book].items():
        listed = ", ".join(f"${p}" if s == "*" else f"{s} ${p}" for s, p in prices.items())
        families.append(f"{family} {listed}")
    return f"{config.price_book} ({unit}: {'; '.join(families)})"


# ---------------------------------------------------------------------------------------------
# Prompt directives: "[sim:429x2,retry_after:3]"
# ---------------------------------------------------------------------------------------------

# Answered instead of the image, in the order written, each N times (default 1); then normal.
_FAULTS = frozenset({
    "400", "401", "402", "403", "429", "500", "502", "503", "504",
    "echo_key_403", "quota_day", "quota_zero", "html503",
})  # fmt: skip
# Shape every answer after the faults (or only the first N of them when written "namexN").
_SHAPES = frozenset({
    "refuse", "block", "no_image", "drop", "cut", "bad_json", "bad_b64", "gzip", "snake",
    "urlsafe", "nopad", "escaped_slashes", "thought", "two_images", "jpeg",
    "mime_jpg", "mime_text",
})  # fmt: skip
_TIMED_SHAPES = frozenset({"slow", "trickle"})  # need ":S" seconds
_RETRY_HINTS = frozenset({"retry_after", "retry_date", "retry_info"})  # need ":S", no count
_RETRYABLE_FAULTS = frozenset({"429", "503", "html503", "quota_day", "quota_zero"})
_BILLED_FAULTS = frozenset({"502", "504"})  # the model ran; the answer was lost on the way

_BLOCK_RE = re.compile(r"\[sim:([^\]]*)\]")
_TOKEN_RE = re.compile(r"(?P<name>[a-z0-9_]+?)(?::(?P<value>\d+(?:\.\d+)?))?(?:x(?P<count>\d+))?")


class DirectiveError(ValueError):
    """A `[sim:...]` directive the simulator does not understand."""


@dataclass(frozen=True, slots=True)
class Directive:
    """One parsed directive: a name, its seconds (slow:S) and its count (429x2)."""

    name: str
    value_s: float | None = None
    count: int | None = None


@dataclass(frozen=True, slots=True)
class Directives:
    """Every directive found in one prompt, sorted into faults, shapes and retry hints."""

    faults: tuple[Directive, ...] = ()
    shapes: tuple[Directive, ...] = ()
    retry_after_s: float | None = None
    retry_date_s: float | None = None
    retry_info_s: float | None = None

    @property
    def empty(self) -> bool:
        """True when the prompt carries no directive, so the random fault rates apply."""
        return not (self.faults or self.shapes)


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do with one request: a fault to answer, or shapes for the 200 answer."""

    fault: str | None = None
    shapes: frozenset[str] = frozenset()
    slow_s: float | None = None
    trickle_s: float | None = None
    retry_after_s: float | None = None
    retry_date_s: float | None = None
    retry_info_s: float | None = None


def _known_names() -> str:
    names = sorted(_FAULTS | _SHAPES) + [f"{n}:S" for n in sorted(_TIMED_SHAPES | _RETRY_HINTS)]
    return ", ".join(names)


def parse_directives(prompt: str) -> Directives:
    """The `[sim:...]` directives in a prompt; DirectiveError (with a hint) if one is unknown."""
    faults: list[Directive] = []
    shapes: list[Directive] = []
    hints: dict[str, float] = {}
    for block in _BLOCK_RE.findall(prompt):
        for raw in block.split(","):
            token = raw.strip()
            match = _TOKEN_RE.fullmatch(token)
            if match is None:
                raise DirectiveError(
                    f"[sim:{token}] is not a directive; HINT: known: {_known_names()}"
                )
            name, value, count = match["name"], match["value"], match["count"]
            directive = Directive(
                name, float(value) if value else None, int(count) if count else None
            )
            needs_value = name in _TIMED_SHAPES or name in _RETRY_HINTS
            if name not in _FAULTS | _SHAPES | _TIMED_SHAPES | _RETRY_HINTS:
                raise DirectiveError(
                    f"unknown simulator directive {name!r}; HINT: known: {_known_names()}"
                )
            if count is not None and int(count) < 1:
                raise DirectiveError(f"[sim:{token}] counts nothing; HINT: write {name}x1 or more")
            if needs_value != (value is not None):
                form = f"{name}:S (seconds)" if needs_value else name
                raise DirectiveError(f"[sim:{token}] is malformed; HINT: write it as {form}")
            if name in _RETRY_HINTS:
                if count is not None:
                    raise DirectiveError(f"[sim:{token}] takes no count; HINT: write {name}:S")
                hints[name] = float(value)
            elif name in _FAULTS:
                faults.append(Directive(name, None, directive.count or 1))
            else:
                shapes.append(directive)
    if hints and not any(f.name in _RETRYABLE_FAULTS for f in faults):
        faults.append(Directive("429", None, 1))  # a retry hint alone means "one 429 carrying it"
    return Directives(
        faults=tuple(faults),
        shapes=tuple(shapes),
        retry_after_s=hints.get("retry_after"),
        retry_date_s=hints.get("retry_date"),
        retry_info_s=hints.get("retry_info"),
    )


def plan_request(directives: Directives, index: int) -> Plan:
    """The plan for the request that is the `index`-th (from 0) with this prompt."""
    hints = Plan(
        retry_after_s=directives.retry_after_s,
        retry_date_s=directives.retry_date_s,
        retry_info_s=directives.retry_info_s,
    )
    for fault in directives.faults:
        count = fault.count or 1
        if index < count:
            return dataclasses.replace(hints, fault=fault.name)
        index -= count
    active = [s for s in directives.shapes if s.count is None or index < s.count]
    timed = {s.name: s.value_s for s in active if s.name in _TIMED_SHAPES}
    return dataclasses.replace(
        hints,
        shapes=frozenset(s.name for s in active if s.name in _SHAPES),
        slow_s=timed.get("slow"),
        trickle_s=timed.get("trickle"),
    )


def _random_plan(config: SimulatorConfig, rng: random.Random) -> Plan:
    """A plan drawn from the configured fault rates (one draw, so each rate is exact)."""
    roll = rng.random()
    for rate, fault in (
        (config.rate_429, "429"),
        (config.rate_503, "503"),
        (config.rate_500, "500"),
    ):
        if roll < rate:
            return Plan(fault=fault, retry_after_s=config.retry_after_s)
        roll -= rate
    for rate, shape in (
        (config.rate_refuse, "refuse"),
        (config.rate_no_image, "no_image"),
        (config.rate_drop, "drop"),
    ):
        if roll < rate:
            return Plan(shapes=frozenset({shape}))
        roll -= rate
    if roll < config.rate_slow:
        return Plan(slow_s=config.slow_s)
    return Plan()


# ---------------------------------------------------------------------------------------------
# Images: real PNGs (and a baseline JPEG) written by hand, cheap at 4096 px
# ---------------------------------------------------------------------------------------------

Rgb = tuple[int, int, int]
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The final image fades banana yellow to orange; drafts are grey; a second image is blue.
_VARIANTS: Mapping[str, tuple[Rgb, Rgb, int]] = {
    "final": ((255, 225, 53), (245, 140, 20), 200),
    "draft": ((170, 170, 170), (90, 90, 90), 90),
    "second": ((110, 170, 255), (30, 60, 160), 160),
}


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data)
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def encode_png(width: int, height: int, top: Rgb, bottom: Rgb) -> bytes:
    """A valid PNG of a vertical gradient; a 256-colour palette keeps 4096 px fast to compress."""
    palette = bytearray()
    for i in range(256):
        palette += bytes(round(a + (b - a) * i / 255) for a, b in zip(top, bottom, strict=True))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)  # 8-bit indexed colour
    packer = zlib.compressobj(6)
    idat = bytearray()
    for y in range(height):
        shade = y * 255 // max(1, height - 1)
        idat += packer.compress(b"\x00" + bytes((shade,)) * width)  # filter byte 0, then pixels
    idat += packer.flush()
    return b"".join((
        _PNG_SIGNATURE,
        _png_chunk(b"IHDR", ihdr),
        _png_chunk(b"PLTE", bytes(palette)),
        _png_chunk(b"IDAT", bytes(idat)),
        _png_chunk(b"IEND", b""),
    ))  # fmt: skip


def pad_png(png: bytes, total_bytes: int, filler: Callable[[int], bytes] = os.urandom) -> bytes:
    """The PNG grown to about total_bytes by a private ancillary chunk of incompressible filler."""
    room = total_bytes - len(png) - 12  # 12: a chunk's length, type and CRC
    if room <= 0:
        return png
    iend = png[-12:]
    return png[:-12] + _png_chunk(b"paDd", filler(room)) + iend


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR, or None if the bytes are not a PNG."""
    if len(data) < 24 or data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return (width, height) if width and height else None


def encode_jpeg(width: int, height: int, gray: int = 200) -> bytes:
    """A valid baseline greyscale JPEG of one flat grey (every block but the first is DC diff 0)."""
    diff = 8 * (gray - 128)  # the DC coefficient of a flat 8x8 block, quantised by 1
    if diff == 0:
        raise ValueError("gray must not be 128: the first block needs a nonzero DC difference")
    category = abs(diff).bit_length()
    amplitude = diff if diff > 0 else diff + (1 << category) - 1
    blocks = math.ceil(width / 8) * math.ceil(height / 8)
    # Codes: DC "00" = difference 0, "01" = the first block's category; AC "0" = end of block.
    bits = "01" + format(amplitude, f"0{category}b") + "0" + "000" * (blocks - 1)
    bits += "1" * (-len(bits) % 8)
    scan = int(bits, 2).to_bytes(len(bits) // 8, "big").replace(b"\xff", b"\xff\x00")

    def segment(marker: int, payload: bytes) -> bytes:
        return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload

    return b"".join((
        b"\xff\xd8",
        segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"),
        segment(0xDB, b"\x00" + b"\x01" * 64),
        segment(0xC0, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00"),
        segment(0xC4, b"\x00" + bytes([0, 2] + [0] * 14) + bytes([0, category])),
        segment(0xC4, b"\x10" + bytes([1] + [0] * 15) + b"\x00"),
        segment(0xDA, b"\x01\x01\x00\x00\x3f\x00"),
        scan,
        b"\xff\xd9",
    ))  # fmt: skip


def image_dimensions(
    image_size: str | None, aspect_ratio: str | None, input_size: tuple[int, int] | None
) -> tuple[int, int]:
    """(width, height): the long side set by imageSize (1K if none), the ratio by aspectRatio,
    else by the last input PNG, else square."""
    long_side = _LONG_SIDE_PX[image_size or "1K"]
    if aspect_ratio is not None:
        across, down = (int(n) for n in aspect_ratio.split(":"))
    elif input_size is not None:
        across, down = input_size
    else:
        across, down = 1, 1
    if across >= down:
        return long_side, max(1, round(long_side * down / across))
    return max(1, round(long_side * across / down)), long_side


_ImageKey = tuple[str, int, int, str]  # (format, width, height, variant)


class _ImageCache:
    """A small LRU of rendered images and their base64, filled off the event loop."""

    def __init__(self, image_bytes: int | None, size: int = 8) -> None:
        self._image_bytes = image_bytes
        self._size = size
        self._items: OrderedDict[_ImageKey, tuple[bytes, bytes]] = OrderedDict()
        self._pending: dict[_ImageKey, asyncio.Future[tuple[bytes, bytes]]] = {}

    def _render(self, key: _ImageKey) -> tuple[bytes, bytes]:
        fmt, width, height, variant = key
        top, bottom, gray = _VARIANTS[variant]
        if fmt == "jpeg":
            data = encode_jpeg(width, height, gray)
        else:
            data = encode_png(width, height, top, bottom)
            if self._image_bytes is not None:
                data = pad_png(data, self._image_bytes)
        return data, base64.b64encode(data)

    async def get(self, key: _ImageKey) -> tuple[bytes, bytes]:
        """(image, its standard base64), rendered in a worker thread on a miss."""
        hit = self._items.get(key)
        if hit is not None:
            self._items.move_to_end(key)
            return hit
        pending = self._pending.get(key)
        if pending is None:  # one render per key, however many requests wait for it
            pending = asyncio.ensure_future(asyncio.to_thread(self._render, key))
            self._pending[key] = pending
            pending.add_done_callback(lambda _: self._pending.pop(key, None))
        value = await asyncio.shield(pending)
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)
        return value


# ---------------------------------------------------------------------------------------------
# Reading a request the way Google does
# ---------------------------------------------------------------------------------------------


class _ApiError(Exception):
    """An error answer: HTTP code, Google status and message."""

    def __init__(self, code: int, status: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message


def _bad(message: str) -> _ApiError:
    return _ApiError(400, "INVALID_ARGUMENT", message)


@dataclass(frozen=True, slots=True)
class _ImageRequest:
    """The facts of a valid request that shape its answer."""

    prompt: str
    image_size: str | None
    aspect_ratio: str | None
    want_text: bool
    want_image: bool
    input_images: int
    last_input_size: tuple[int, int] | None


_CAMEL_HUMP = re.compile(r"(?<!^)(?=[A-Z])")


def _snake(key: str) -> str:
    return _CAMEL_HUMP.sub("_", key).lower()


def _pick(obj: Mapping[str, Any], camel: str) -> Any:
    """obj[camel], or obj[snake_case(camel)]: Google reads both spellings."""
    return obj[camel] if camel in obj else obj.get(_snake(camel))


def _decode_b64(text: str) -> bytes | None:
    """Bytes from standard or URL-safe base64, padded or not; None if it is not base64."""
    if not isinstance(text, str):
        return None
    unpadded = text.rstrip("=").translate(str.maketrans("-_", "+/"))
    if len(unpadded) % 4 == 1:
        return None
    try:
        return base64.b64decode(unpadded + "=" * (-len(unpadded) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


_HEIC_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis"})
_HEIF_BRANDS = frozenset({b"mif1", b"msf1", b"heif"})


def sniff_mime(data: bytes) -> str | None:
    """The image MIME type the bytes hold (png, jpeg, webp, heic, heif), or None."""
    if data.startswith(_PNG_SIGNATURE):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp":
        if data[8:12] in _HEIC_BRANDS:
            return "image/heic"
        if data[8:12] in _HEIF_BRANDS:
            return "image/heif"
    return None


def _same_mime(declared: str, sniffed: str) -> bool:
    declared = declared.strip().lower()
    declared = "image/jpeg" if declared == "image/jpg" else declared
    heif_family = {"image/heic", "image/heif"}  # one container; brands are used loosely
    return declared == sniffed or {declared, sniffed} <= heif_family


def _read_image_part(inline: Any, where: str) -> tuple[int, int] | None:
    """Check one inlineData part; return the PNG's size when it is a PNG."""
    if not isinstance(inline, Mapping):
        raise _bad(f"{where}.inlineData must be an object with mimeType and data")
    declared = _pick(inline, "mimeType")
    if not isinstance(declared, str) or not declared:
        raise _bad(f"{where}.inlineData.mimeType is required")
    data = _decode_b64(_pick(inline, "data"))
    if data is None:
        raise _bad(
            f"Invalid value at '{where}.inline_data.data' (TYPE_BYTES), Base64 decoding failed"
        )
    if len(data) > _MAX_IMAGE_BYTES:
        raise _bad(
            f"{where}: the image is {len(data)} bytes; the limit is {_MAX_IMAGE_BYTES} bytes"
        )
    sniffed = sniff_mime(data)
    if sniffed is None:
        raise _bad(
            f"{where}: Unable to process input image. The bytes are not png, jpeg, webp, "
            "heic or heif."
        )
    if not _same_mime(declared, sniffed):
        raise _bad(
            f"{where}: Unable to process input image. mimeType {declared} does not match "
            f"the image data ({sniffed})."
        )
    return png_size(data)


def _read_generation_config(
    rule: _ModelRule, model: str, body: Mapping[str, Any]
) -> tuple[str | None, str | None, bool, bool]:
    """(imageSize, aspectRatio, want_text, want_image) from generationConfig, checked."""
    gen = _pick(body, "generationConfig") or {}
    if not isinstance(gen, Mapping):
        raise _bad("generationConfig must be an object")
    count = _pick(gen, "candidateCount")
    if count is not None and (not isinstance(count, int) or count > 1):
        raise _bad(f"Multiple candidates is not enabled for models/{model}")
    modalities = _pick(gen, "responseModalities")
    wanted = {"TEXT", "IMAGE"}
    if modalities is not None:
        if not isinstance(modalities, list) or not all(isinstance(m, str) for m in modalities):
            raise _bad('responseModalities must be a list such as ["TEXT", "IMAGE"]')
        wanted = {m.upper() for m in modalities}
        if not wanted or not wanted <= {"TEXT", "IMAGE"}:
            raise _bad(f"responseModalities {modalities} is not supported; use TEXT and IMAGE")
    image_config = _pick(gen, "imageConfig") or {}
    if not isinstance(image_config, Mapping):
        raise _bad("imageConfig must be an object")
    size = _pick(image_config, "imageSize")
    ratio = _pick(image_config, "aspectRatio")
    if size is not None and not rule.sizes:
        raise _bad(f"imageSize is not supported by {model}; HINT: leave imageSize out (1K only)")
    if size is not None and size not in rule.sizes:
        raise _bad(
            f"imageSize {size!r} is not supported by {model}; HINT: use one of "
            f"{', '.join(rule.sizes)}"
        )
    if ratio is not None and ratio not in rule.ratios:
        raise _bad(
            f"aspectRatio {ratio!r} is not supported by {model}; HINT: use one of "
            f"{', '.join(rule.ratios)}"
        )
    return size, ratio, "TEXT" in wanted, "IMAGE" in wanted


def _read_request(rule: _ModelRule, model: str, raw: bytes) -> _ImageRequest:
    """Parse and check a generateContent body; raise _ApiError(400) where Google would."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise _bad("Invalid JSON payload received.") from None
    if not isinstance(body, Mapping):
        raise _bad("Invalid JSON payload received: the body must be an object.")
    contents = _pick(body, "contents")
    if not isinstance(contents, list) or not contents:
        raise _bad("* GenerateContentRequest.contents: contents is not specified")
    texts: list[str] = []
    user_parts = 0
    images = 0
    last_size: tuple[int, int] | None = None
    for i, content in enumerate(contents):
        parts = _pick(content, "parts") if isinstance(content, Mapping) else None
        if not isinstance(parts, list):
            raise _bad(f"contents[{i}].parts must be a list")
        is_user = content.get("role", "user") == "user"
        for j, part in enumerate(parts):
            where = f"contents[{i}].parts[{j}]"
            if not isinstance(part, Mapping):
                raise _bad(f"{where} must be an object")
            inline, file_data = _pick(part, "inlineData"), _pick(part, "fileData")
            text = part.get("text")
            if inline is not None:
                images += 1
                last_size = _read_image_part(inline, where)
                user_parts += is_user
            elif file_data is not None:
                if not isinstance(file_data, Mapping) or not _pick(file_data, "fileUri"):
                    raise _bad(f"{where}.fileData.fileUri is required")
                images += 1
                last_size = None
                user_parts += is_user
            elif text is not None:
                if not isinstance(text, str) or not text:
                    raise _bad(
                        "Unable to submit request because it has an empty text parameter. "
                        "Add a value to the parameter and try again."
                    )
                if is_user:
                    texts.append(text)
                    user_parts += 1
    if user_parts == 0:
        raise _bad("* GenerateContentRequest.contents: contents has no user text or image part")
    if images > _MAX_IMAGES:
        raise _bad(f"The request has {images} images; at most {_MAX_IMAGES} are allowed")
    size, ratio, want_text, want_image = _read_generation_config(rule, model, body)
    return _ImageRequest("\n".join(texts), size, ratio, want_text, want_image, images, last_size)


# ---------------------------------------------------------------------------------------------
# Answers
# ---------------------------------------------------------------------------------------------


def _error_json(code: int, status: str, message: str, details: list[Any] | None = None) -> bytes:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = details
    return json.dumps({"error": error}).encode()


def _duration(seconds: float) -> str:
    return f"{seconds:g}s"


def _nginx_page(code: int, reason: str) -> bytes:
    title = f"{code} {reason}"
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}"
        "</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    ).encode()


@dataclass(slots=True)
class _Answer:
    """An answer decided but not yet sent."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    price_usd: Decimal | None = None  # set when the request is billed
    delay_s: float = 0.0
    delivery: Literal["normal", "drop", "cut", "trickle"] = "normal"
    trickle_s: float = 0.0


_PLAIN_ERRORS: Mapping[str, tuple[int, str, str]] = {
    "400": (400, "INVALID_ARGUMENT", "Request contains an invalid argument."),
    "401": (401, "UNAUTHENTICATED", "API key not valid. Please pass a valid API key."),
    "402": (402, "PAYMENT_REQUIRED", "Insufficient account balance; top up to continue."),
    "403": (403, "PERMISSION_DENIED", "The caller does not have permission."),
    "429": (429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    "500": (500, "INTERNAL", "An internal error has occurred. Please retry or report it."),
    "503": (503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
    "504": (504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
}
_HTML_ERRORS: Mapping[str, tuple[int, str]] = {
    "502": (502, "Bad Gateway"),  # what a reseller's proxy answers when the upstream fails
    "html503": (503, "Service Unavailable"),
}


def _quota_failure(per_day: bool, model: str) -> tuple[int, str, str, list[Any]]:
    """A 429 whose QuotaFailure names a daily quota, or a per-minute quota of zero."""
    metric = "generativelanguage.googleapis.com/generate_requests_per_model" + (
        "_per_day" if per_day else ""
    )
    quota_id = (
        "GenerateRequestsPerDayPerProjectPerModel"
        if per_day
        else "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
    )
    limit = "250" if per_day else "0"
    violation = {
        "quotaMetric": metric,
        "quotaId": quota_id,
        "quotaDimensions": {"location": "global", "model": model},
        "quotaValue": limit,
    }
    details: list[Any] = [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [violation]},
        {"@type": "type.googleapis.com/google.rpc.Help", "links": [{
            "description": "Learn more about Gemini API quotas",
            "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
    ]  # fmt: skip
    message = (
        "You exceeded your current quota, please check your plan and billing details. "
        f"* Quota exceeded for metric: {metric}, limit: {limit}, model: {model}"
    )
    return 429, "RESOURCE_EXHAUSTED", message, details


def _fault_answer(fault: str, plan: Plan, model: str, key: str) -> _Answer:
    """The error answer for a fault directive or a random fault."""
    if fault in _HTML_ERRORS:
        code, reason = _HTML_ERRORS[fault]
        answer = _Answer(code, _nginx_page(code, reason), "text/html")
    else:
        if fault in ("quota_day", "quota_zero"):
            code, status, message, details = _quota_failure(fault == "quota_day", model)
        elif fault == "echo_key_403":  # some servers do echo the key; clients must scrub it
            code, status, details = 403, "PERMISSION_DENIED", []
            message = f"Permission denied: API key {key} may not use models/{model}."
        else:
            code, status, message = _PLAIN_ERRORS[fault]
            details = []
        if code == 429 and plan.retry_info_s is not None:
            details.append(
                {
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": _duration(plan.retry_info_s),
                }
            )
        answer = _Answer(code, _error_json(code, status, message, details))
    if fault in _RETRYABLE_FAULTS:
        if plan.retry_after_s is not None:
            answer.headers["Retry-After"] = str(math.ceil(plan.retry_after_s))
        if plan.retry_date_s is not None:
            when = time.time() + plan.retry_date_s
            answer.headers["Retry-After"] = email.utils.formatdate(when, usegmt=True)
    return answer


def _usage(req: _ImageRequest, output_tokens: int) -> dict[str, int]:
    prompt_tokens = max(1, len(req.prompt) // 4) + _INPUT_IMAGE_TOKENS * req.input_images
    return {
        "promptTokenCount": prompt_tokens,
        "candidatesTokenCount": output_tokens,
        "totalTokenCount": prompt_tokens + output_tokens,
    }


def _snake_keys(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {(k if k.startswith("@") else _snake(k)): _snake_keys(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_snake_keys(v) for v in obj]
    return obj


_REFUSAL_TEXT = (
    "I can't create that image because it may go against the safety policy. "
    "Try rephrasing the prompt."
)
_NO_IMAGE_TEXT = (
    "I was unable to generate an image for this request; here is a description "
    "of what it would show instead."
)


_IMAGE_SLOT = re.compile(r'"@@sim-image-(\d+)@@"')


async def _success_payload(
    cache: _ImageCache, model: str, rule: _ModelRule, req: _ImageRequest, shapes: frozenset[str]
) -> tuple[dict[str, Any], list[bytes]]:
    """The 200 answer's JSON, with a slot per image, and the base64 that fills each slot."""
    envelope = {"modelVersion": model, "responseId": secrets.token_urlsafe(16)}
    if "block" in shapes:
        return {
            "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": [
                {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH",
                 "blocked": True}]},
            "usageMetadata": _usage(req, 0),
            **envelope,
        }, []  # fmt: skip
    parts: list[dict[str, Any]] = []
    images: list[bytes] = []
    finish = "STOP"
    with_images = req.want_image and not shapes & {"refuse", "no_image"}
    if "refuse" in shapes:
        finish = "IMAGE_SAFETY"
        parts.append({"text": _REFUSAL_TEXT})
    elif not with_images:
        parts.append({"text": _NO_IMAGE_TEXT})
    elif req.want_text:
        parts.append({"text": "Here is the image you asked for."})
    if with_images:
        fmt = "jpeg" if shapes & {"jpeg", "mime_jpg"} else "png"
        mime = f"image/{fmt}"
        if "mime_jpg" in shapes:
            mime = "image/jpg"  # a common, non-standard spelling some servers send
        elif "mime_text" in shapes:
            mime = "text/plain"  # a broken server: the bytes are a PNG, the label is not
        width, height = image_dimensions(req.image_size, req.aspect_ratio, req.last_input_size)
        variants = ["final", "second"] if "two_images" in shapes else ["final"]
        if "thought" in shapes:
            variants.insert(0, "draft")
        for variant in variants:
            _, data = await cache.get((fmt, width, height, variant))
            slot = {"mimeType": mime, "data": f"@@sim-image-{len(images)}@@"}
            parts.append(
                {"thought": True, "inlineData": slot}
                if variant == "draft"
                else {"inlineData": slot}
            )
            images.append(data)
    per_image = _OUTPUT_TOKENS[req.image_size or "1K"] if rule.sizes else 1290
    output_tokens = per_image * len(images) + 12
    return {
        "candidates": [{"content": {"role": "model", "parts": parts},
                        "finishReason": finish, "index": 0}],
        "usageMetadata": _usage(req, output_tokens),
        **envelope,
    }, images  # fmt: skip


def _encode_answer(payload: dict[str, Any], images: list[bytes], shapes: frozenset[str]) -> bytes:
    """The answer's bytes. Images are spliced in as bytes: json.dumps of a 20 MB string would
    block the event loop for tens of milliseconds, and they need no escaping."""
    if "snake" in shapes:
        payload = _snake_keys(payload)
    text = json.dumps(payload)
    if "escaped_slashes" in shapes:
        text = text.replace("/", "\\/")  # legal JSON; some servers write every "/" like this
    pieces: list[bytes] = []
    for i, piece in enumerate(_IMAGE_SLOT.split(text)):
        if i % 2 == 0:
            pieces.append(piece.encode())
            continue
        data = images[int(piece)]
        if "urlsafe" in shapes:
            data = data.translate(bytes.maketrans(b"+/", b"-_"))
        if "nopad" in shapes:
            data = data.rstrip(b"=")
        if "bad_b64" in shapes:
            data = b"%%not*base64%%" + data[14:]
        if "escaped_slashes" in shapes:
            data = data.replace(b"/", b"\\/")
        pieces += [b'"', data, b'"']
    body = b"".join(pieces)
    return body[: len(body) // 2] if "bad_json" in shapes else body


async def _success_answer(
    cache: _ImageCache, model: str, rule: _ModelRule, req: _ImageRequest, plan: Plan
) -> _Answer:
    """The 200 answer: an image (or a refusal, block or text) shaped and delivered per the plan."""
    payload, images = await _success_payload(cache, model, rule, req, plan.shapes)
    answer = _Answer(200, _encode_answer(payload, images, plan.shapes))
    if "gzip" in plan.shapes:
        answer.body = gzip.compress(answer.body, compresslevel=1)
        answer.headers["Content-Encoding"] = "gzip"
    if "drop" in plan.shapes:
        answer.delivery = "drop"
    elif "cut" in plan.shapes:
        answer.delivery = "cut"
    elif plan.trickle_s is not None:
        answer.delivery = "trickle"
        answer.trickle_s = plan.trickle_s
    return answer


# ---------------------------------------------------------------------------------------------
# The provider's books: counters and the bill, safe to read from another thread
# ---------------------------------------------------------------------------------------------


class _State:
    """Counters, the bill and the fault RNG of one simulator."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.images = _ImageCache(config.image_bytes)
        self._lock = threading.Lock()
        self._requests = 0
        self._in_flight = 0
        self._max_in_flight = 0
        self._by_prompt: Counter[str] = Counter()
        self._by_status: Counter[str] = Counter()
        self._billed_requests = 0
        self._billed_usd = Decimal(0)

    def price(self, model: str, image_size: str) -> Decimal:
        if self.config.price_usd is not None:
            return Decimal(str(self.config.price_usd(model, image_size)))
        return book_price(self.config.price_book, model, image_size)

    def enter(self) -> None:
        with self._lock:
            self._requests += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)

    def leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def count_prompt(self, prompt: str) -> int:
        """Count a request with this prompt; return how many came before it (since reset)."""
        with self._lock:
            index = self._by_prompt[prompt]
            self._by_prompt[prompt] = index + 1
            return index

    def count_status(self, status: str) -> None:
        with self._lock:
            self._by_status[status] += 1

    def bill(self, price_usd: Decimal) -> None:
        with self._lock:
            self._billed_requests += 1
            self._billed_usd += price_usd

    def bill_json(self) -> dict[str, Any]:
        with self._lock:
            return {
                "billed_requests": self._billed_requests,
                "billed_usd": round(float(self._billed_usd), 6),
                "requests": self._requests,
            }

    def stats_json(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self._requests,
                "in_flight": self._in_flight,
                "max_in_flight": self._max_in_flight,
                "by_prompt": dict(self._by_prompt),
                "by_status": dict(self._by_status),
                "billed_requests": self._billed_requests,
                "billed_usd": round(float(self._billed_usd), 6),
            }

    def reset(self) -> None:
        with self._lock:
            self._requests = 0
            self._max_in_flight = self._in_flight  # requests still running stay counted
            self._by_prompt.clear()
            self._by_status.clear()
            self._billed_requests = 0
            self._billed_usd = Decimal(0)


_STATE = web.AppKey("batchbanana_simulator_state", _State)


# ---------------------------------------------------------------------------------------------
# HTTP handlers
# ---------------------------------------------------------------------------------------------


def _api_key(request: web.Request) -> str:
    """The key from `Authorization: Bearer`, `x-goog-api-key` or `?key=`; "" when none."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-goog-api-key", "").strip() or request.query.get("key", "").strip()


async def _decide(request: web.Request, state: _State) -> _Answer:
    """Read and check the request, then choose its answer (and whether it is billed)."""
    model, _, method = request.match_info["name"].partition(":")
    key = _api_key(request)
    if not key:
        raise _ApiError(
            401,
            "UNAUTHENTICATED",
            "Request is missing required authentication "
            "credential. Expected an API key in x-goog-api-key or Authorization.",
        )
    rule = _MODELS.get(model)
    if rule is None or method != "generateContent":
        raise _ApiError(
            404,
            "NOT_FOUND",
            f"models/{model} is not found for API version v1beta, "
            f"or {method or 'this method'} is not supported for it.",
        )
    too_big = _bad(f"Request payload size exceeds the limit: {_MAX_BODY_BYTES} bytes.")
    if (request.content_length or 0) >= _MAX_BODY_BYTES:
        raise too_big
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise too_big from None
    if len(raw) > 1_000_000:  # decoding megabytes of base64 would stall every other request
        req = await asyncio.to_thread(_read_request, rule, model, raw)
    else:
        req = _read_request(rule, model, raw)
    try:
        directives = parse_directives(req.prompt)
    except DirectiveError as exc:
        raise _bad(str(exc)) from None
    index = state.count_prompt(req.prompt)
    plan = (
        plan_request(directives, index)
        if not directives.empty
        else _random_plan(state.config, state.rng)
    )
    if plan.fault is not None:
        answer = _fault_answer(plan.fault, plan, model, key)
    else:
        answer = await _success_answer(state.images, model, rule, req, plan)
    if plan.fault is None or plan.fault in _BILLED_FAULTS:  # the model ran: the provider bills
        answer.price_usd = state.price(model, req.image_size or "1K")
    answer.delay_s = plan.slow_s if plan.slow_s is not None else state.config.latency_s
    return answer


def _close(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.close()


async def _send(request: web.Request, state: _State, answer: _Answer) -> web.StreamResponse:
    """Bill (when the model runs, before any wait), wait, then deliver the answer its way."""
    if answer.price_usd is not None:
        state.bill(answer.price_usd)
    state.count_status("drop" if answer.delivery == "drop" else str(answer.status))
    if answer.delay_s > 0:
        await asyncio.sleep(answer.delay_s)
    headers = {**answer.headers, "Content-Type": f"{answer.content_type}; charset=UTF-8"}
    if answer.delivery == "normal":
        return web.Response(status=answer.status, body=answer.body, headers=headers)
    if answer.delivery == "drop":
        _close(request)
        return web.Response()  # never written: aiohttp sees the closed transport and moves on
    response = web.StreamResponse(status=answer.status, headers=headers)
    response.content_length = len(answer.body)
    try:
        await response.prepare(request)
        if answer.delivery == "cut":
            await response.write(answer.body[: len(answer.body) // 2])
            _close(request)  # after the buffered half is flushed; the client sees a short body
        else:
            pieces = min(50, len(answer.body)) or 1
            step = math.ceil(len(answer.body) / pieces)
            for start in range(0, len(answer.body), step):
                await asyncio.sleep(answer.trickle_s / pieces)
                await response.write(answer.body[start : start + step])
    except ConnectionResetError:
        pass  # the client went away; the provider bills anyway and nobody is left to tell
    return response


async def _generate_content(request: web.Request) -> web.StreamResponse:
    state = request.app[_STATE]
    state.enter()
    try:
        try:
            answer = await _decide(request, state)
        except _ApiError as exc:
            answer = _Answer(
                exc.code,
                _error_json(exc.code, exc.status, exc.message),
                delay_s=state.config.latency_s,
            )
        return await _send(request, state, answer)
    finally:
        state.leave()


async def _bill(request: web.Request) -> web.Response:
    return web.json_response(request.app[_STATE].bill_json())


async def _stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[_STATE].stats_json())


async def _reset(request: web.Request) -> web.Response:
    request.app[_STATE].reset()
    return web.json_response({"reset": True})


def create_app(config: SimulatorConfig) -> web.Application:
    """The simulator as an aiohttp application (routes, state and bill included)."""
    app = web.Application(client_max_size=_MAX_BODY_BYTES - 1)
    app[_STATE] = _State(config)
    # Google serves the same method under every API version; the official google-genai client
    # uses /v1 by default in recent releases and /v1beta in older ones.
    for version in ("v1beta", "v1", "v1alpha"):
        app.router.add_post(f"/{version}/models/{{name}}", _generate_content)
    app.router.add_get("/_sim/bill", _bill)
    app.router.add_get("/_sim/stats", _stats)
    app.router.add_post("/_sim/reset", _reset)
    return app


# ---------------------------------------------------------------------------------------------
# Running it
# ---------------------------------------------------------------------------------------------


class RunningSimulator:
    """A handle to a started simulator: its base URL and its books."""

    __slots__ = ("_state", "url")

    def __init__(self, url: str, state: _State) -> None:
        self.url = url
        self._state = state

    def bill(self) -> dict[str, Any]:
        """The same JSON as GET /_sim/bill."""
        return self._state.bill_json()

    def stats(self) -> dict[str, Any]:
        """The same JSON as GET /_sim/stats."""
        return self._state.stats_json()

    def reset(self) -> None:
        """Zero the bill, the stats and the directive counters."""
        self._state.reset()


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@asynccontextmanager
async def run_simulator(
    config: SimulatorConfig, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[RunningSimulator]:
    """Serve the simulator in the caller's event loop until the block exits."""
    app = create_app(config)
    # No access log: a `?key=` query string would put the API key in it.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = runner.addresses[0][1]
        yield RunningSimulator(_url(host, bound_port), app[_STATE])
    finally:
        await runner.cleanup()


@contextmanager
def simulator_in_thread(
    config: SimulatorConfig, host: str = "127.0.0.1", port: int = 0
) -> Iterator[RunningSimulator]:
    """Serve the simulator from its own event loop in a daemon thread, for synchronous callers."""
    ready = threading.Event()
    started: list[RunningSimulator] = []
    failed: list[BaseException] = []
    stoppers: list[Callable[[], object]] = []

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        async with run_simulator(config, host, port) as sim:
            started.append(sim)
            stoppers.append(functools.partial(loop.call_soon_threadsafe, stop.set))
            ready.set()
            await stop.wait()

    def thread_main() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # handed to the caller's thread instead of printed here
            failed.append(exc)
        finally:
            ready.set()

    thread = threading.Thread(target=thread_main, name="batchbanana-simulator", daemon=True)
    thread.start()
    ready.wait()
    if not started:
        thread.join()
        raise failed[0] if failed else RuntimeError("the simulator thread stopped before starting")
    try:
        yield started[0]
    finally:
        stoppers[0]()
        thread.join(timeout=10)


async def _serve_until_signal(config: SimulatorConfig, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with suppress(NotImplementedError):  # Windows: Ctrl-C arrives as KeyboardInterrupt
            loop.add_signal_handler(signum, stop.set)
    async with run_simulator(config, host, port) as sim:
        print(f"batchbanana simulator listening on {sim.url}", file=sys.stderr, flush=True)
        print(f"price book: {describe_price_book(config)}", file=sys.stderr, flush=True)
        await stop.wait()


def serve(config: SimulatorConfig, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve until SIGINT or SIGTERM, after one banner line on stderr; return cleanly on Ctrl-C."""
    with suppress(KeyboardInterrupt):
        asyncio.run(_serve_until_signal(config, host, port))
