"""The record of how an image was made (contract section 11), and the files that carry it: the
sidecar `<id>.json` beside each image and, with `metadata: embed`, a copy of the image with the
record inside (rules/embedding.py says where). Files are written under a temporary name and
fsynced here; committer.py gives them their final names.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from batchbanana import __version__
from batchbanana.ledger.records import utc_now
from batchbanana.plan.job import Job
from batchbanana.rules.answer import AnswerImage
from batchbanana.rules.embedding import Kept, Splice, plan_embedding
from batchbanana.rules.pricing import money
from batchbanana.rules.provenance import record_json
from batchbanana.run.outputs import SIDECAR_EXTENSION, output_owner, write_new_file

COPY_BYTES = 1024 * 1024  # what an embedded copy reads and writes at a time
SIDECAR_READ_LIMIT = 1024 * 1024  # a bigger `<id>.json` is not a sidecar batchbanana wrote


class Said(Protocol):
    """What an answer said beside its images: a sync AttemptResult or a batch's Answer."""

    @property
    def images(self) -> tuple[AnswerImage, ...]: ...
    @property
    def text(self) -> str | None: ...
    @property
    def response_id(self) -> str | None: ...
    @property
    def model_version(self) -> str | None: ...
    @property
    def grounding(self) -> dict[str, Any] | None: ...


def _unchanged(text: str) -> str:
    return text


@dataclass(frozen=True, slots=True)
class Making:
    """How a job records its images' making: its `metadata` setting (none | sidecar | embed),
    its name, and the scrubber that keeps secrets out of every record."""

    metadata: str = "none"
    job_name: str = ""
    scrub: Callable[[str], str] = _unchanged

    @classmethod
    def for_job(cls, job: Job, scrub: Callable[[str], str]) -> Making:
        """What `job` records, scrubbed with `scrub`."""
        return cls(job.metadata, job.name, scrub)

    @property
    def embed(self) -> bool:
        """True when the record also goes into the images."""
        return self.metadata == "embed"

    def record(
        self,
        item_id: str,
        spec: Mapping[str, Any],
        fingerprint: str,
        attempt: int,
        price_usd: float,
        said: Said,
    ) -> dict[str, Any] | None:
        """The record shared by an answer's images (for_image sets `file` and `index`), from
        the request's spec and what the answer said; None with `metadata: none`. `price_usd`
        is each image's share of what the answer cost."""
        if self.metadata == "none":
            return None
        count = max(1, len(said.images))
        record: dict[str, Any] = {
            "batchbanana": __version__,
            "job": self.job_name,
            "item": item_id,
            "file": None,
            "index": None,
            "images_in_answer": count,
            "prompt": spec.get("prompt"),
            "system_prompt": spec.get("system_prompt"),
            "model": spec.get("model"),
            "model_version": said.model_version,
            "image_size": spec.get("image_size"),
            "aspect_ratio": spec.get("aspect_ratio"),
            "seed": spec.get("seed"),
            **{key: spec[key] for key in ("grounding", "thinking_level") if key in spec},
            "inputs": [_input_record(entry) for entry in spec.get("images") or ()],
            "price_usd": money(price_usd / count),
            "attempt": attempt,
            "fingerprint": fingerprint,
            "response_id": said.response_id,
            "text": said.text,
            # what a grounded answer searched and cited (the result line's `grounding`), to
            # credit wherever the image goes
            **({"grounding_metadata": said.grounding} if said.grounding is not None else {}),
            "created": utc_now(),
        }
        scrubbed: dict[str, Any] = _scrubbed(record, self.scrub)
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
