"""An item's input images, resolved and checked before anything is sent: URLs by their type,
local files by their bytes (relative to the manifest), another item's output (`item:<id>`) by the
form of its id (plan/chains.py checks that the item exists), and the request's count and size
limits."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from batchbanana.plan.chains import ITEM_PREFIX, reference_problem
from batchbanana.plan.checker import Checker
from batchbanana.plan.generation import ImageEntry
from batchbanana.plan.inputs import ImageInput
from batchbanana.plan.plain_rows import RawItem
from batchbanana.rules.media import (
    ACCEPTED_MIME_TYPES,
    MAX_IMAGES_PER_REQUEST,
    body_size_problem,
    is_url,
    mime_from_url,
    normalise_mime,
    request_body_bytes,
)


def resolve_images(
    raw: RawItem, base_dir: Path, checker: Checker, inline_urls: bool = False
) -> tuple[ImageInput, ...]:
    """The item's images that can be sent; every problem is added to `checker`."""
    images: list[ImageInput] = []
    for position, entry in enumerate(raw.item.images):
        label = f"images[{position}]"
        reference, declared = _reference(entry)
        if reference.startswith(ITEM_PREFIX):
            found = _resolve_item(raw, label, reference, isinstance(entry, str), checker)
        elif is_url(reference):
            found = _resolve_url(raw, label, reference, declared, checker, inline_urls)
        else:
            found = _resolve_file(raw, label, reference, declared, base_dir, checker)
        if found is not None:
            images.append(found)
    _check_request_limits(raw, images, checker)
    return tuple(images)


def _reference(entry: str | ImageEntry) -> tuple[str, str | None]:
    """(path or URL, declared MIME type or None) of an image as written."""
    if isinstance(entry, ImageEntry):
        reference = entry.url if entry.url is not None else entry.path
        assert reference is not None  # ImageEntry guarantees one of url/path
        return reference, entry.mime_type
    return entry, None


def _resolve_item(
    raw: RawItem, label: str, reference: str, plain: bool, checker: Checker
) -> ImageInput | None:
    """Another item's output: a reference until that item is ok (run/chains.py)."""
    problem = reference_problem(reference, plain)
    if problem:
        checker.add_item(raw, label, problem)
        return None
    site = (raw.source, raw.line, raw.where, label)
    return ImageInput("item", reference[len(ITEM_PREFIX) :], "", site=site)


def _resolve_url(
    raw: RawItem,
    label: str,
    url: str,
    declared: str | None,
    checker: Checker,
    inline_urls: bool,
) -> ImageInput | None:
    if not _valid_url(url):
        checker.add_item(raw, label, f"{url!r} is not a valid URL")
        return None
    if inline_urls:
        # Downloaded and sniffed before anything is sent; its type is known only then.
        return ImageInput(kind="url", reference=url, mime_type="", inline=True)
    mime = normalise_mime(declared) if declared else mime_from_url(url)
    if mime is None:
        checker.add_item(
            raw,
            label,
            f"{url}: cannot tell the image type from the URL;"
            " HINT: write it as {url: ..., mime_type: image/png}",
        )
        return None
    if mime not in ACCEPTED_MIME_TYPES:
        checker.add_item(
            raw, label, f"{mime} is not accepted; use one of {', '.join(ACCEPTED_MIME_TYPES)}"
        )
        return None
    return ImageInput(kind="url", reference=url, mime_type=mime)


def _resolve_file(
    raw: RawItem,
    label: str,
    reference: str,
    declared: str | None,
    base_dir: Path,
    checker: Checker,
) -> ImageInput | None:
    found = checker.image((base_dir / reference).resolve())
    if isinstance(found, str):
        checker.add_item(raw, label, found)
        return None
    if declared and normalise_mime(declared) != found.mime_type:
        checker.add_item(
            raw,
            label,
            f"{reference}: declared {declared} but its bytes are {found.mime_type}",
        )
        return None
    return found


def _check_request_limits(raw: RawItem, images: list[ImageInput], checker: Checker) -> None:
    """At most 14 images, and the whole request body under the provider's limit."""
    if len(raw.item.images) > MAX_IMAGES_PER_REQUEST:
        checker.add_item(
            raw,
            "images",
            f"{len(raw.item.images)} images; at most {MAX_IMAGES_PER_REQUEST} per request",
        )
    too_large = body_size_problem(
        request_body_bytes(raw.item.prompt, (image.encoded_size() for image in images))
    )
    if too_large:
        checker.add_item(raw, "images", too_large)


def _valid_url(url: str) -> bool:
    try:
        return bool(urlsplit(url).hostname)
    except ValueError:
        return False
