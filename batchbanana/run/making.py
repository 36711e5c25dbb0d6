"""The record of how an image was made (contract section 11), and the files that carry it: the
sidecar `<id>.json` beside each image and, with `metadata: embed`, a copy of the image with the
record inside (rules/embedding.py says where). Files are written under a temporary name and
fsynced here; committer.py gives them their final names.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from batchbanana import __version__
from batchbanana.ledger.records import utc_now
from batchbanana.plan.job import WorkItem
from batchbanana.rules.answer import AnswerImage
from batchbanana.rules.embedding import Kept, Splice, plan_embedding
from batchbanana.rules.pricing import money
from batchbanana.rules.provenance import record_json
from batchbanana.run.client import AttemptResult
from batchbanana.run.outputs import SIDECAR_EXTENSION, output_owner, write_new_file

COPY_BYTES = 1024 * 1024  # what an embedded copy reads and writes at a time
SIDECAR_READ_LIMIT = 1024 * 1024  # a bigger `<id>.json` is not a sidecar batchbanana wrote


def answer_record(
    job_name: str,
    item: WorkItem,
    attempt: int,
    price_usd: float,
    result: AttemptResult,
    scrub: Callable[[str], str],
) -> dict[str, Any]:
    """The record shared by an answer's images (`file` and `index` are set per image by
    for_image). `price_usd` is each image's share of what the answer cost."""
    spec = item.spec()
    count = max(1, len(result.images))
    record: dict[str, Any] = {
        "batchbanana": __version__,
        "job": job_name,
        "item": item.id,
        "file": None,
        "index": None,
        "images_in_answer": count,
        "prompt": item.prompt,
        "system_prompt": item.system_prompt,
        "model": item.model,
        "model_version": result.model_version,
        "image_size": item.image_size,
        "aspect_ratio": item.aspect_ratio,
        "seed": spec.get("seed"),
        "inputs": [_input_record(entry) for entry in spec.get("images", ())],
        "price_usd": money(price_usd / count),
        "attempt": attempt,
        "fingerprint": item.fingerprint,
        "response_id": result.response_id,
        "text": result.text,
        "created": utc_now(),
    }
    scrubbed: dict[str, Any] = _scrubbed(record, scrub)
    return scrubbed


def for_image(record: dict[str, Any], file_name: str, index: int) -> dict[str, Any]:
    """The record of one image of the answer: its file name and its place in the answer."""
    return {**record, "file": file_name, "index": index}


def _input_record(entry: Any) -> Any:
    """An input image as the record tells it: a file by its name and digest (its folder stays
    private), a URL without query, fragment or credentials (they may hold access tokens)."""
    if not isinstance(entry, dict):
        return entry
    shown = dict(entry)
    path = shown.pop("path", None)
    if isinstance(path, str):
        shown = {"file": Path(path).name, **shown}
    url = shown.get("url")
    if isinstance(url, str):
        parts = urlsplit(url)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        shown["url"] = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    return shown


def _scrubbed(value: Any, scrub: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {key: _scrubbed(entry, scrub) for key, entry in value.items()}
    if isinstance(value, list):
        return [_scrubbed(entry, scrub) for entry in value]
    return value


def plan_for(image: AnswerImage, record: dict[str, Any]) -> Splice | Kept:
    """Where the record goes into this image (read from memory or its file), or why not."""
    if image.path is None:
        data = image.data
        return plan_embedding(image.mime_type, lambda at, n: data[at : at + n], len(data), record)
    fd = os.open(image.path, os.O_RDONLY)
    try:  # only headers are read: a few bytes per chunk or segment
        size = image.size
        return plan_embedding(image.mime_type, lambda at, n: os.pread(fd, n, at), size, record)
    finally:
        os.close(fd)


def write_embedded(image: AnswerImage, splice: Splice, temp: Path) -> None:
    """Write the image with its record at `temp`, fsynced: the original's bytes are copied a
    megabyte at a time, never held whole."""
    if image.path is None:
        write_new_file(temp, [splice.apply(image.data)])
        return
    with image.path.open("rb") as source:
        source.seek(splice.resume)

        def chunks() -> Iterable[bytes]:
            yield splice.head
            while block := source.read(COPY_BYTES):
                yield block
            yield splice.tail

        write_new_file(temp, chunks())


def write_sidecar(record: dict[str, Any], temp: Path) -> None:
    """The sidecar's JSON at `temp`, fsynced (the caller renames it)."""
    write_new_file(temp, [record_json(record).encode("utf-8")])


def is_own_sidecar(path: Path) -> bool:
    """True when `path` is a sidecar batchbanana wrote for the item its name belongs to (so a
    new answer of that item may replace it)."""
    owner = output_owner(path.name, frozenset({SIDECAR_EXTENSION}))
    try:
        with path.open("rb") as handle:
            data = json.loads(handle.read(SIDECAR_READ_LIMIT + 1))
    except (OSError, ValueError):
        return False
    return (
        isinstance(data, dict)
        and isinstance(data.get("batchbanana"), str)
        and owner is not None
        and data.get("item") == owner
    )
