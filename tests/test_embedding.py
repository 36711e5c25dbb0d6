"""The record of an image's making, written into PNG, JPEG and WebP bytes (rules/embedding.py):
read back with Pillow, every pixel unchanged, and never into an image that carries a C2PA
manifest or anything not recognised."""

from __future__ import annotations

import io
import json
import struct
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from PIL import Image

from batchbanana.rules.embedding import C2PA, HAS_XMP, Kept, Splice, plan_embedding
from batchbanana.rules.provenance import XMP_NAMESPACE, png_chunk, record_json, xmp_packet
from tests.conftest import png_bytes

RECORD: dict[str, Any] = {
    "batchbanana": "0.1.0",
    "job": "shots",
    "item": "fox",
    "prompt": 'a <red> fox & "five" dogs, 狐狸 \x07 ]]>',
    "model": "gemini-3-pro-image-preview",
    "seed": None,
    "price_usd": 0.09,
}
RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"


def plan(data: bytes, mime_type: str, record: dict[str, Any] = RECORD) -> Splice | Kept:
    return plan_embedding(
        mime_type, lambda offset, length: data[offset : offset + length], len(data), record
    )


def embed(data: bytes, mime_type: str, record: dict[str, Any] = RECORD) -> bytes:
    splice = plan(data, mime_type, record)
    assert isinstance(splice, Splice), splice
    return splice.apply(data)


def pillow(fmt: str, mode: str = "RGB", **options: Any) -> bytes:
    image = Image.new(mode, (37, 21), (200, 120, 30, 128)[: len(mode)])  # type: ignore[arg-type]
    for x in range(37):
        image.putpixel((x, x % 21), (x * 6, 255 - x, 40, 255)[: len(mode)])  # type: ignore[arg-type]
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def record_in_xmp(packet: bytes | str) -> dict[str, Any]:
    """The record's JSON inside an XMP packet, found as an XML reader finds it."""
    text = packet.decode("utf-8") if isinstance(packet, bytes) else packet
    root = ET.fromstring(text[text.index("<x:xmpmeta") : text.index("</x:xmpmeta>") + 12])
    found = root.find(f".//{{{XMP_NAMESPACE}}}record")
    assert found is not None and found.text is not None
    return dict(json.loads(found.text))


def same_pixels(a: bytes, b: bytes) -> bool:
    first, second = Image.open(io.BytesIO(a)), Image.open(io.BytesIO(b))
    return first.size == second.size and first.tobytes() == second.tobytes()


def test_a_png_gets_the_record_as_itxt_json_and_as_xmp_with_its_pixels_unchanged() -> None:
    """A PNG reads back (Pillow) with `batchbanana` holding the record's JSON and the XMP packet
    holding it too; its pixels and its original chunks are untouched."""
    original = pillow("PNG", "RGBA")
    embedded = embed(original, "image/png")
    image = Image.open(io.BytesIO(embedded))
    image.load()
    assert json.loads(image.text["batchbanana"]) == RECORD  # type: ignore[attr-defined]
    assert record_in_xmp(image.text["XML:com.adobe.xmp"]) == RECORD  # type: ignore[attr-defined]
    assert same_pixels(original, embedded)
    assert embedded.endswith(original[33:])  # everything after the header chunk, byte for byte
    Image.open(io.BytesIO(embedded)).verify()  # chunk CRCs


def test_a_jpeg_gets_an_xmp_app1_segment_after_jfif_with_its_pixels_unchanged() -> None:
    """A JPEG reads back with the record in its XMP (Pillow's `xmp`), after the JFIF segment."""
    original = pillow("JPEG", quality=90)
    embedded = embed(original, "image/jpeg")
    image = Image.open(io.BytesIO(embedded))
    assert record_in_xmp(image.info["xmp"]) == RECORD
    assert image.info["jfif_version"] == (1, 1)
    assert same_pixels(original, embedded)
    jfif_end = 4 + struct.unpack(">H", original[4:6])[0]
    assert embedded[jfif_end : jfif_end + 2] == b"\xff\xe1"
    assert embedded.endswith(original[jfif_end:])


def test_a_jpeg_with_exif_keeps_it_and_gets_xmp_after_it() -> None:
    """Exif stays first (readers expect it there); the XMP segment follows it."""
    exif = Image.Exif()
    exif[0x010E] = "an exif description"
    original = pillow("JPEG", exif=exif.tobytes())
    image = Image.open(io.BytesIO(embed(original, "image/jpeg")))
    assert image.getexif()[0x010E] == "an exif description"
    assert record_in_xmp(image.info["xmp"]) == RECORD


@pytest.mark.parametrize(
    ("options", "first_chunk"),
    [
        pytest.param({"lossless": True}, b"VP8L", id="simple-lossless-alpha"),
        pytest.param({"quality": 80}, b"VP8 ", id="simple-lossy"),
        pytest.param({"quality": 80, "alpha": True}, b"VP8X", id="extended-lossy-alpha"),
    ],
)
def test_a_webp_gets_an_xmp_chunk_and_the_vp8x_flag(
    options: dict[str, Any], first_chunk: bytes
) -> None:
    """Simple VP8/VP8L files become the extended form (a VP8X chunk with the canvas size and the
    alpha flag of the bitstream); every WebP gets the XMP flag and chunk, pixels unchanged."""
    mode = "RGBA" if options.pop("alpha", False) or options.get("lossless") else "RGB"
    original = pillow("WEBP", mode, **options)
    assert original[12:16] == first_chunk
    embedded = embed(original, "image/webp")
    assert struct.unpack("<I", embedded[4:8])[0] + 8 == len(embedded)  # the RIFF size
    assert embedded[12:16] == b"VP8X"
    flags = embedded[20]
    assert flags & 0x04  # XMP
    assert bool(flags & 0x10) == (mode == "RGBA")  # alpha, as the bitstream says
    width, height = (int.from_bytes(embedded[i : i + 3], "little") + 1 for i in (24, 27))
    assert (width, height) == (37, 21)
    image = Image.open(io.BytesIO(embedded))
    assert record_in_xmp(image.info["xmp"]) == RECORD
    assert image.mode == mode
    assert same_pixels(original, embedded)


def _jumbf_app11(label: bytes) -> bytes:
    """An APP11 segment carrying a JUMBF superbox whose description box has this label, as
    C2PA writes its manifest store into a JPEG."""
    description = b"jumd" + b"c2pa\x00\x11\x00\x10\x80\x00\x00\xaa\x00\x38\x9b\x71" + b"\x03"
    description += label + b"\x00"
    jumd = struct.pack(">I", 4 + len(description)) + description
    superbox = struct.pack(">I", 8 + len(jumd)) + b"jumb" + jumd
    payload = b"JP" + b"\x00\x01" + b"\x00\x00\x00\x01" + superbox
    return b"\xff\xeb" + struct.pack(">H", 2 + len(payload)) + payload


def with_c2pa(data: bytes, mime_type: str) -> bytes:
    """The image with a C2PA manifest store where its format keeps one."""
    if mime_type == "image/jpeg":
        return data[:2] + _jumbf_app11(b"c2pa") + data[2:]
    if mime_type == "image/png":
        return data[:33] + png_chunk(b"caBX", b"\x00\x00\x00\x10jumb") + data[33:]
    chunk = b"C2PA" + struct.pack("<I", 8) + b"\x00\x00\x00\x08jumb"
    return b"RIFF" + struct.pack("<I", len(data) - 8 + len(chunk)) + data[8:] + chunk


@pytest.mark.parametrize(
    ("fmt", "mime_type"),
    [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")],
)
def test_an_image_carrying_a_c2pa_manifest_is_never_touched(fmt: str, mime_type: str) -> None:
    """PNG caBX, JPEG APP11 JUMBF, WebP C2PA: its signature covers the bytes, so it is kept."""
    signed = with_c2pa(pillow(fmt), mime_type)
    assert Image.open(io.BytesIO(signed)).size == (37, 21)  # still a readable image
    assert plan(signed, mime_type) == Kept(C2PA)


def test_an_image_that_already_carries_xmp_is_kept() -> None:
    """One XMP packet per file: an image that has one (it may point to a remote manifest) is
    left as it is, in each format."""
    for fmt, mime_type in (("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")):
        data = embed(pillow(fmt), mime_type)
        assert plan(data, mime_type) == Kept(HAS_XMP), fmt


@pytest.mark.parametrize(
    "mime_type", ["image/png", "image/jpeg", "image/webp", "image/heic", "text/plain"]
)
def test_a_cut_or_foreign_file_is_kept_never_an_exception(mime_type: str) -> None:
    """Every prefix of a valid image, and bytes of another format, give Kept or a Splice that
    copies the original, never an exception: a paid image is never lost to a parser."""
    fmt = {"image/png": "PNG", "image/jpeg": "JPEG"}.get(mime_type, "WEBP")
    data = pillow(fmt, quality=50) if fmt != "PNG" else png_bytes(5, 3)
    for cut in range(len(data) + 1):
        result = plan(data[:cut], mime_type)
        assert isinstance(result, Kept | Splice)
    assert isinstance(plan(b"GIF89a" + bytes(40), mime_type), Kept)


def test_a_record_too_big_for_a_jpeg_segment_drops_the_description_then_is_kept() -> None:
    """A JPEG segment holds 64 KB: a long prompt first loses its copy in dc:description (the
    record still has it); a record that cannot fit at all is left to the sidecar."""
    original = pillow("JPEG")
    long = {**RECORD, "prompt": "x" * 40_000}
    image = Image.open(io.BytesIO(embed(original, "image/jpeg", long)))
    assert record_in_xmp(image.info["xmp"]) == long
    assert b"dc:description" not in image.info["xmp"]
    assert plan(original, "image/jpeg", {**RECORD, "prompt": "x" * 70_000}) == Kept(
        "the record is over the 64 KB a JPEG segment holds"
    )


def test_the_xmp_packet_is_well_formed_whatever_the_prompt_holds() -> None:
    """Markup, quotes, control characters and lone surrogates cannot break the packet."""
    record = {**RECORD, "prompt": "<a href='x'>&amp;\x00\x1b\ud800 \ufffe"}
    packet = xmp_packet(record)
    assert packet.startswith(b'<?xpacket begin="\xef\xbb\xbf"')
    assert record_in_xmp(packet)["prompt"] == "<a href='x'>&amp;\x00\x1b\ufffd \ufffe"
    assert json.loads(record_json(record))["prompt"].endswith("\ufffd \ufffe")
