"""Reading a batchGenerateContent body the way Google does: the batch's display name and input
(inline requests, or the JSONL file they were uploaded in), each request checked as generateContent
checks it, and the 400s Google answers. Blocking: call it from a worker thread."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchbanana.simulator.directives import DirectiveError, Directives, parse_directives
from batchbanana.simulator.requests import (
    ApiError,
    ImageRequest,
    check_request,
    invalid_argument,
    pick,
)
from batchbanana.simulator.rules import ModelRule

MAX_INLINE_BYTES = 20_000_000  # "under 20 MB": a body over this is refused (use a file)


@dataclass(frozen=True, slots=True)
class BatchLine:
    """One request of a batch: what shapes its answer, and what identifies it in the output."""

    request: ImageRequest
    directives: Directives
    key: str | None = None  # file input: the line's "key"
    metadata: Mapping[str, Any] | None = None  # inline input: echoed with the response


@dataclass(frozen=True, slots=True)
class BatchInput:
    """A checked batch: its display name, where its requests came from, and the requests."""

    display_name: str
    mode: str  # inline | file
    lines: tuple[BatchLine, ...]
    file_name: str | None = None


def _line(model: str, rule: ModelRule, request: Any, where: str, **ids: Any) -> BatchLine:
    if not isinstance(request, Mapping):
        raise invalid_argument(f"{where}: request must be a GenerateContentRequest object")
    named = request.get("model")
    if named is not None and str(named).removeprefix("models/") != model:
        raise invalid_argument(
            f"{where}: request.model is {named!r} but the batch is for models/{model}; "
            "HINT: one model per batch"
        )
    try:
        checked = check_request(rule, model, request)
        directives = parse_directives(checked.prompt)
    except ApiError as exc:
        raise ApiError(exc.code, exc.status, f"{where}: {exc.message}") from None
    except DirectiveError as exc:
        raise invalid_argument(f"{where}: {exc}") from None
    return BatchLine(checked, directives, **ids)


def _inline_lines(model: str, rule: ModelRule, requests: Any) -> Iterator[BatchLine]:
    items = pick(requests, "requests") if isinstance(requests, Mapping) else None
    if not isinstance(items, list):
        raise invalid_argument(
            "batch.inputConfig.requests.requests must be a list of {request, metadata}"
        )
    for i, item in enumerate(items):
        where = f"batch.inputConfig.requests.requests[{i}]"
        if not isinstance(item, Mapping):
            raise invalid_argument(f"{where} must be an object with request and metadata")
        metadata = item.get("metadata")
        if metadata is not None and not isinstance(metadata, Mapping):
            raise invalid_argument(f"{where}.metadata must be an object")
        yield _line(model, rule, item.get("request"), f"{where}.request", metadata=metadata)


def _file_lines(model: str, rule: ModelRule, name: str, path: Path) -> Iterator[BatchLine]:
    with path.open("rb") as handle:  # line by line: a file may be 2 GB
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            where = f"{name} line {number}"
            try:
                entry = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                raise invalid_argument(f"{where} is not valid JSON") from None
            if not isinstance(entry, Mapping):
                raise invalid_argument(f"{where} must be an object with key and request")
            key = entry.get("key")
            if key is not None and not isinstance(key, str):
                raise invalid_argument(f"{where}: key must be a string")
            yield _line(model, rule, entry.get("request"), where, key=key)


def read_batch(
    raw: bytes, model: str, rule: ModelRule, find_file: Callable[[str], Path | None]
) -> BatchInput:
    """Parse and check a batchGenerateContent body; find_file maps `files/<id>` to the uploaded
    bytes (None if there is no such uploaded file). ApiError(400) where Google would answer it."""
    if len(raw) > MAX_INLINE_BYTES:
        raise invalid_argument(
            f"Request payload size exceeds the limit: {MAX_INLINE_BYTES} bytes. HINT: upload "
            "the requests as a JSONL file through the Files API and send its name instead"
        )
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise invalid_argument("Invalid JSON payload received.") from None
    batch = pick(body, "batch") if isinstance(body, Mapping) else None
    if not isinstance(batch, Mapping):
        raise invalid_argument("* BatchGenerateContentRequest.batch: batch is not specified")
    named = pick(batch, "model")
    if named is not None and str(named).removeprefix("models/") != model:
        raise invalid_argument(f"batch.model is {named!r} but the URL names models/{model}")
    display_name = pick(batch, "displayName")
    if not isinstance(display_name, str) or not display_name.strip():
        raise invalid_argument("* GenerateContentBatch.display_name: display_name is required")
    config = pick(batch, "inputConfig")
    if not isinstance(config, Mapping):
        raise invalid_argument("* GenerateContentBatch.input_config: input_config is required")
    file_name, requests = pick(config, "fileName"), pick(config, "requests")
    if (file_name is None) == (requests is None):
        raise invalid_argument(
            "batch.inputConfig needs exactly one of requests (inline) or fileName (a JSONL file)"
        )
    if requests is not None:
        lines = tuple(_inline_lines(model, rule, requests))
        mode = "inline"
    else:
        path = find_file(str(file_name))
        if path is None:
            raise invalid_argument(
                f"inputConfig.fileName {file_name!r} is not an uploaded file; HINT: upload it "
                "through the Files API and send the name it was given (files/...)"
            )
        lines = tuple(_file_lines(model, rule, str(file_name), path))
        mode = "file"
    if not lines:
        raise invalid_argument("The batch has no requests.")
    return BatchInput(display_name, mode, lines, str(file_name) if file_name else None)
