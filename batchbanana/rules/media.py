"""The image types the API takes and answers with, and the provider's size limits (contract
section 4): the MIME table, sniffing a type from the bytes, and the request-size arithmetic."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlparse

MAX_IMAGE_BYTES = 7_000_000  # per image, raw (MB = 10^6 bytes)
MAX_IMAGES_PER_REQUEST = 14
MAX_REQUEST_BYTES = 100_000_000  # the whole JSON body, after base64

# The image types the API takes and answers with, and the file extension each is saved under.
IMAGE_EXTENSIONS = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
    "image/heic": "heic",
    "image/heif": "heif",
}
ACCEPTED_MIME_TYPES = tuple(IMAGE_EXTENSIONS)

_EXTENSION_MIME = {f".{ext}": mime for mime, ext in IMAGE_EXTENSIONS.items()} | {
    ".jpeg": "image/jpeg"
}

_HEIC_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis"}
_HEIF_BRANDS = {b"mif1", b"msf1", b"heif"}


def sniff_mime(head: bytes) -> str | None:
    """The image MIME type a file's first bytes announce, or None for anything not accepted."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _HEIC_BRANDS:
            return "image/heic"
        if brand in _HEIF_BRANDS:
            return "image/heif"
    return None


def normalise_mime(mime_type: str) -> str:
    """Lower-case a MIME type and treat the common `image/jpg` as `image/jpeg`."""
    mime = mime_type.strip().lower()
    return "image/jpeg" if mime == "image/jpg" else mime


def mime_from_url(url: str) -> str | None:
    """The MIME type implied by a URL path's extension, or None."""
    suffix = Path(urlparse(url).path).suffix.lower()
    return _EXTENSION_MIME.get(suffix)


def is_url(reference: str) -> bool:
    """True for http(s) URLs; anything else is a local path."""
    return reference.startswith(("http://", "https://"))


def base64_bytes(raw_bytes: int) -> int:
    """How long `raw_bytes` bytes are once base64-encoded."""
    return 4 * ((raw_bytes + 2) // 3)


def request_body_bytes(prompt: str, encoded_sizes: Iterable[int]) -> int:
    """About how big a request body is: the prompt, its images once encoded, the JSON around."""
    return len(prompt.encode("utf-8")) + 1024 + sum(encoded_sizes)


def body_size_problem(body_bytes: int) -> str | None:
    """Why a request body of this size cannot be sent, or None when it can."""
    if body_bytes < MAX_REQUEST_BYTES:
        return None
    return f"the request would be {body_bytes / 1e6:.1f} MB after base64; it must stay under 100 MB"
