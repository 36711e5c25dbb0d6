"""Where a record goes into an image file, and when it must not (contract section 11).

A PNG gets `iTXt` chunks right after its header, a JPEG an XMP `APP1` segment after its leading
APP0/APP1 segments, a WebP an `XMP ` chunk at its end (a simple VP8/VP8L file first becomes the
extended form, with a `VP8X` chunk). An image that carries a C2PA manifest (PNG `caBX`, JPEG
APP11 JUMBF, WebP `C2PA`) is never touched: its signature covers the bytes. Nor is one that already
carries XMP (it may point to a remote manifest, and readers take only one packet), nor anything
this module does not recognise: those are saved as received, with the sidecar alone.

Pure: a file is read through `read(offset, length)`, so a 20 MB image is walked by its chunk and
segment headers, never loaded. The answer is a Splice, which the caller performs by copying.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from batchbanana.rules.provenance import png_record_chunks, xmp_packet

Read = Callable[[int, int], bytes]  # (offset, length) -> at most length bytes from offset

C2PA = "carries a C2PA manifest (its signature would break)"
HAS_XMP = "already carries XMP"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_XMP = b"http://ns.adobe.com/xap/1.0/\x00"
_JPEG_XMP_EXTENDED = b"http://ns.adobe.com/xmp/extension/\x00"
_JPEG_SEGMENT_MAX = 65533  # an APPn payload, its two length bytes aside
_VP8X_XMP = 0x04
_VP8X_ALPHA = 0x10


@dataclass(frozen=True, slots=True)
class Splice:
    """The embedded file: `head`, then the original's bytes from `resume` to its end, then
    `tail`. Every byte of the original from `resume` on is kept as it was."""

    head: bytes
    resume: int
    tail: bytes = b""

    def apply(self, original: bytes) -> bytes:
        """The embedded image, for an image held in memory."""
        return self.head + original[self.resume :] + self.tail


@dataclass(frozen=True, slots=True)
class Kept:
    """The image is saved exactly as received; why."""

    reason: str


def plan_embedding(
    mime_type: str, read: Read, size: int, record: Mapping[str, Any]
) -> Splice | Kept:
    """How to write `record` into the image of this type and size, or why not to."""
    try:
        if mime_type == "image/png":
            return _png(read, size, record)
        if mime_type == "image/jpeg":
            return _jpeg(read, size, record)
        if mime_type == "image/webp":
            return _webp(read, size, record)
    except (struct.error, IndexError):  # a header cut short: the image is kept, not repaired
        return Kept("its structure is not recognised")
    return Kept(f"{mime_type} files get the sidecar only")


def _png(read: Read, size: int, record: Mapping[str, Any]) -> Splice | Kept:
    if read(0, 8) != PNG_SIGNATURE:
        return Kept("not a PNG")
    offset, header_end = 8, 0
    while True:
        if offset + 12 > size:
            return Kept("the PNG ends before its IEND chunk")
        length, kind = struct.unpack(">I4s", read(offset, 8))
        if offset == 8:
            if kind != b"IHDR" or length != 13:
                return Kept("the PNG does not start with its header chunk")
            header_end = offset + 12 + length
        if kind == b"caBX":
            return Kept(C2PA)
        if kind in (b"iTXt", b"tEXt", b"zTXt") and read(offset + 8, 18) == b"XML:com.adobe.xmp\x00":
            return Kept(HAS_XMP)
        if kind == b"IEND":
            break
        offset += 12 + length
    return Splice(read(0, header_end) + png_record_chunks(record), header_end)


def _jpeg(read: Read, size: int, record: Mapping[str, Any]) -> Splice | Kept:
    if read(0, 2) != b"\xff\xd8":
        return Kept("not a JPEG")
    offset = insert_at = 2
    while True:
        marker = read(offset, 4)
        if len(marker) < 2 or marker[0] != 0xFF:
            return Kept("the JPEG's segments are not recognised")
        code = marker[1]
        if code == 0xFF:  # a fill byte before a marker
            offset += 1
            continue
        if code in (0xDA, 0xD9):  # start of scan, end of image: the header is over
            break
        if 0xD0 <= code <= 0xD7 or code == 0x01:  # markers without a length
            offset += 2
            continue
        (length,) = struct.unpack(">H", marker[2:4])
        if length < 2 or offset + 2 + length > size:
            return Kept("the JPEG's segments are not recognised")
        payload = read(offset + 4, 35)
        if code == 0xE1 and payload.startswith((_JPEG_XMP, _JPEG_XMP_EXTENDED)):
            return Kept(HAS_XMP)
        if code == 0xEB and payload.startswith(b"JP"):  # APP11 JUMBF: where C2PA lives
            return Kept(C2PA)
        if code in (0xE0, 0xE1) and insert_at == offset:  # after JFIF and Exif, as is usual
            insert_at = offset + 2 + length
        offset += 2 + length
    packet = xmp_packet(record)
    if len(_JPEG_XMP) + len(packet) > _JPEG_SEGMENT_MAX:
        packet = xmp_packet(record, describe=False)  # the prompt is in the record anyway
    if len(_JPEG_XMP) + len(packet) > _JPEG_SEGMENT_MAX:
        return Kept("the record is over the 64 KB a JPEG segment holds")
    segment = b"\xff\xe1" + struct.pack(">H", 2 + len(_JPEG_XMP) + len(packet))
    return Splice(read(0, insert_at) + segment + _JPEG_XMP + packet, insert_at)


def _riff_chunk(fourcc: bytes, data: bytes) -> bytes:
    return fourcc + struct.pack("<I", len(data)) + data + b"\x00" * (len(data) & 1)


def _webp(read: Read, size: int, record: Mapping[str, Any]) -> Splice | Kept:
    header = read(0, 12)
    if header[:4] != b"RIFF" or header[8:12] != b"WEBP":
        return Kept("not a WebP")
    (riff_size,) = struct.unpack("<I", header[4:8])
    if riff_size + 8 != size:
        return Kept("the WebP's RIFF size is not its file size")
    chunks: list[tuple[bytes, int]] = []  # (fourcc, offset)
    offset = 12
    while offset < size:
        fourcc, length = struct.unpack("<4sI", read(offset, 8))
        if fourcc == b"C2PA":
            return Kept(C2PA)
        if fourcc == b"XMP ":
            return Kept(HAS_XMP)
        chunks.append((fourcc, offset))
        offset += 8 + length + (length & 1)
    if offset != size or not chunks:
        return Kept("the WebP's chunks are not recognised")
    xmp = _riff_chunk(b"XMP ", xmp_packet(record))
    first, first_at = chunks[0]
    if first == b"VP8X":
        vp8x = read(first_at, 18)
        flags = vp8x[8] | _VP8X_XMP
        head = b"RIFF" + struct.pack("<I", riff_size + len(xmp)) + b"WEBP"
        return Splice(head + vp8x[:8] + bytes((flags,)) + vp8x[9:], first_at + 18, xmp)
    if first not in (b"VP8 ", b"VP8L") or len(chunks) != 1:
        return Kept("the WebP's chunks are not recognised")
    canvas = _canvas(first, read(first_at + 8, 10))
    if canvas is None:
        return Kept("the WebP's bitstream header is not recognised")
    width, height, alpha = canvas
    flags = _VP8X_XMP | (_VP8X_ALPHA if alpha else 0)
    dimensions = struct.pack("<I", width - 1)[:3] + struct.pack("<I", height - 1)[:3]
    vp8x = _riff_chunk(b"VP8X", bytes((flags, 0, 0, 0)) + dimensions)
    head = b"RIFF" + struct.pack("<I", riff_size + len(vp8x) + len(xmp)) + b"WEBP" + vp8x
    return Splice(head, 12, xmp)


def _canvas(fourcc: bytes, bitstream: bytes) -> tuple[int, int, bool] | None:
    """(width, height, has alpha) from a simple WebP's VP8 or VP8L bitstream header."""
    if fourcc == b"VP8 ":
        if bitstream[3:6] != b"\x9d\x01\x2a":  # a key frame's start code
            return None
        width, height = struct.unpack("<HH", bitstream[6:10])
        return width & 0x3FFF, height & 0x3FFF, False
    if bitstream[:1] != b"\x2f":  # the lossless signature
        return None
    (bits,) = struct.unpack("<I", bitstream[1:5])
    return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, bool((bits >> 28) & 1)
