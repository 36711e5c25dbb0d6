"""Input images: sniff their type from the bytes, check the provider's limits, encode them once.

Local files are inlined as base64 (`inlineData`); URLs are passed as `fileData` and never fetched.
Another item's output (`item:<id>`, plan/chains.py) is a reference until that item is ok, then the
saved file, inlined like any local file.
"""

from __future__ import annotations

import hashlib
import stat
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pybase64

# Imported from here by plan/build.py and ledger/rebuild.py, hence the explicit re-export.
from batchbanana.errors import ImageProblem as ImageProblem
from batchbanana.rules.media import MAX_IMAGE_BYTES, base64_bytes, sniff_mime

# Where an image was written, for problems found after expansion: (file, line, item, field).
Site = tuple[str, int | None, str, str]


@dataclass(frozen=True, slots=True)
class ImageInput:
    """One input image of an item: a local file (inlined), a URL (passed as fileData), or
    another item's output not known yet (kind `item`: `reference` is that item's id)."""

    kind: Literal["file", "url", "item"]
    reference: str  # absolute path for files, the URL for URLs, the item id for `item`
    mime_type: str  # for an inlined URL: known only once downloaded ("" until then)
    sha256: str | None = None
    size_bytes: int | None = None
    inline: bool = False  # a URL downloaded by batchbanana and sent inline (inline_urls: true)
    from_item: str | None = None  # a file that is this item's output (an `item:` reference)
    site: Site | None = field(default=None, compare=False)  # where the manifest wrote it

    def spec(self) -> dict[str, object]:
        """What the ledger keeps to send this image again and to recognise its bytes."""
        if self.kind == "item":
            return {"item": self.reference, "pending": True}
        if self.kind == "url":
            spec: dict[str, object] = {"url": self.reference, "mime_type": self.mime_type}
            if self.inline:
                spec["inline"] = True
            return spec
        spec = {"path": self.reference, "sha256": self.sha256, "mime_type": self.mime_type}
        if self.from_item is not None:
            spec["item"] = self.from_item
        return spec

    def meaning(self) -> str:
        """What identifies the image in a fingerprint: its bytes' digest, its URL, or (while
        another item's output is not known) that item's id."""
        if self.kind == "file":
            return f"sha256:{self.sha256}"
        if self.kind == "item":
            return f"item:{self.reference}|pending"
        return f"url:{self.reference}" + ("|inline" if self.inline else "")

    def encoded_size(self) -> int:
        """Bytes this image adds to a request body once base64-encoded (an `item:` reference
        is measured once that item's output exists)."""
        if self.kind == "item":
            return 0
        if self.kind == "url":
            return len(self.reference) + 64  # an inlined URL is checked once downloaded
        return base64_bytes(self.size_bytes or 0)


def inspect_file(path: Path) -> ImageInput:
    """Read a local image once: its digest, size and sniffed type, checked against the limits.

    Only regular files are read, and only after their size is known to be within the limit."""
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError
        if not stat.S_ISREG(info.st_mode):
            raise ImageProblem(f"{path}: not a regular file (a device or pipe is never sent)")
        if info.st_size > MAX_IMAGE_BYTES:
            raise ImageProblem(
                f"{path}: {info.st_size / 1e6:.1f} MB is over the 7 MB limit per image;"
                " HINT: resize or recompress it"
            )
        with path.open("rb") as handle:
            data = handle.read(MAX_IMAGE_BYTES + 1)
    except FileNotFoundError:
        raise ImageProblem(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageProblem(f"{path}: is a folder, not an image") from None
    except OSError as exc:
        raise ImageProblem(f"{path}: cannot be read ({exc.strerror})") from None
    mime = sniff_mime(data[:32])
    if mime is None:
        raise ImageProblem(
            f"{path}: not a PNG, JPEG, WebP, HEIC or HEIF image (by its bytes, whatever its name)"
        )
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageProblem(
            f"{path}: {len(data) / 1e6:.1f} MB is over the 7 MB limit per image;"
            " HINT: resize or recompress it"
        )
    return ImageInput(
        kind="file",
        reference=str(path),
        mime_type=mime,
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
    )


def optimize_lossless(data: bytes, mime_type: str) -> bytes:
    """PNG and WebP recompressed without losing a pixel, when that makes them smaller.

    Needs Pillow (`pip install 'batchbanana[optimize]'`); other types are returned as they are.
    """
    if mime_type not in ("image/png", "image/webp"):
        return data
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            out = io.BytesIO()
            if mime_type == "image/png":
                image.save(out, format="PNG", optimize=True)
            else:
                image.save(out, format="WEBP", lossless=True, quality=100, method=6)
    except Exception:  # a bomb, a truncated file, a codec error: send the bytes as they are
        return data
    smaller = out.getvalue()
    return smaller if len(smaller) < len(data) else data


def pillow_available() -> bool:
    """True when Pillow can be imported (needed by optimize_inputs: lossless)."""
    try:
        import PIL  # noqa: F401
    except ImportError:
        return False
    return True


class EncodedImageCache:
    """Base64 of input images, each read (or downloaded) and encoded once per run and shared by
    every request using it.

    Bounded by total encoded bytes (least recently used first out), so thousands of items with the
    same reference image cost one copy, and many distinct images never pile up in memory.
    """

    def __init__(
        self,
        max_bytes: int = 256 * 1024 * 1024,
        optimize: bool = False,
        downloads: dict[str, tuple[Path, str]] | None = None,
    ) -> None:
        self.max_bytes = max_bytes
        self.optimize = optimize
        self.downloads = downloads or {}  # URL -> (downloaded file, sniffed MIME type)
        self._entries: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._lock = threading.Lock()  # requests are built in worker threads
        self._encoding: dict[str, threading.Lock] = {}  # one lock per image being encoded
        self._size = 0
        self.encodes = 0  # how many times an image was actually read and encoded
        self.bytes_saved = 0  # by lossless optimisation

    def get(self, image: ImageInput) -> tuple[str, str]:
        """(MIME type, base64 text) of an image sent inline; checked against its recorded digest.

        Safe from several threads: one image is encoded once while others wait for it; distinct
        images are encoded side by side."""
        key = image.reference
        with self._lock:
            cached = self._entries.get(key)
            if cached is not None:
                self._entries.move_to_end(key)
                return cached
            image_lock = self._encoding.setdefault(key, threading.Lock())
        with image_lock:
            with self._lock:
                cached = self._entries.get(key)
                if cached is not None:
                    return cached
            entry = self._encode(image)
            with self._lock:
                self.encodes += 1
                self._entries[key] = entry
                self._size += len(entry[1])
                while self._size > self.max_bytes and len(self._entries) > 1:
                    _, dropped = self._entries.popitem(last=False)
                    self._size -= len(dropped[1])
                self._encoding.pop(key, None)
            return entry

    def _encode(self, image: ImageInput) -> tuple[str, str]:
        key = image.reference
        if image.kind == "item":  # never sent before plan/chains.py made it the saved file
            raise ImageProblem(f"item:{key}: that item's output is not known yet")
        if image.kind == "url":
            path, mime = self.downloads[key]
            data = path.read_bytes()
        else:
            data = Path(key).read_bytes()
            mime = image.mime_type
            if image.sha256 is not None and hashlib.sha256(data).hexdigest() != image.sha256:
                raise ImageProblem(f"{key}: changed on disk since the job was validated")
        if self.optimize:
            smaller = optimize_lossless(data, mime)
            with self._lock:
                self.bytes_saved += len(data) - len(smaller)
            data = smaller
        return mime, pybase64.b64encode(data).decode("ascii")
