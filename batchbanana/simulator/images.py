"""Real PNGs (and a baseline JPEG) written by hand, cheap even at 4096 px, cached."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import os
import random
import struct
import zlib
from collections import OrderedDict
from collections.abc import Callable, Mapping

from batchbanana.simulator.rules import LONG_SIDE_PX

Rgb = tuple[int, int, int]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The final image fades banana yellow to orange; drafts are grey; a second image is blue.
_VARIANTS: Mapping[str, tuple[Rgb, Rgb, int]] = {
    "final": ((255, 225, 53), (245, 140, 20), 200),
    "draft": ((170, 170, 170), (90, 90, 90), 90),
    "second": ((110, 170, 255), (30, 60, 160), 160),
}


_SEEDED = "seeded:"


def seeded_variant(seed: int, prompt: str) -> str:
    """The variant of a request with a seed: the same seed and prompt always give the same
    colours (so the same pixels at a given size and ratio), another seed others."""
    digest = hashlib.sha256(f"{seed}\n{prompt}".encode()).hexdigest()
    return _SEEDED + digest[:16]


def _colours(variant: str) -> tuple[Rgb, Rgb, int]:
    if not variant.startswith(_SEEDED):
        return _VARIANTS[variant]
    raw = bytes.fromhex(variant[len(_SEEDED) :])
    gray = 40 + raw[6] % 88  # below 128, which a JPEG's flat grey must not be
    return (raw[0], raw[1], raw[2]), (raw[3], raw[4], raw[5]), gray


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
        PNG_SIGNATURE,
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
    if len(data) < 24 or data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR":
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
    long_side = LONG_SIDE_PX[image_size or "1K"]
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


class ImageCache:
    """A small LRU of rendered images and their base64, filled off the event loop."""

    def __init__(self, image_bytes: int | None, size: int = 8) -> None:
        self._image_bytes = image_bytes
        self._size = size
        self._items: OrderedDict[_ImageKey, tuple[bytes, bytes]] = OrderedDict()
        self._pending: dict[_ImageKey, asyncio.Future[tuple[bytes, bytes]]] = {}

    def _render(self, key: _ImageKey) -> tuple[bytes, bytes]:
        fmt, width, height, variant = key
        top, bottom, gray = _colours(variant)
        if fmt == "jpeg":
            data = encode_jpeg(width, height, gray)
        else:
            data = encode_png(width, height, top, bottom)
            if self._image_bytes is not None:
                # a seeded image is padded with filler of its own seed, to stay reproducible
                filler = random.Random(variant).randbytes if variant != "final" else os.urandom
                data = pad_png(data, self._image_bytes, filler)
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
