"""Gemini Batch mode's rules (contract section 10): batch keys, the split of owed items into
batches, the batch's wire shapes (create body, request lines, the operation a get returns), its
states in both spellings, and the poll's backoff. Pure functions, tested without a network.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from batchbanana.rules.answer import camel_or_snake
from batchbanana.rules.outcomes import Outcome

INLINE_LIMIT_BYTES = 20 * 1000 * 1000  # Google: an inline batch's whole create body under 20 MB
FILE_LIMIT_BYTES = 2 * 1000 * 1000 * 1000  # Google: an input file of at most 2 GB
CREATE_OVERHEAD_BYTES = 4096  # the create body's envelope around the inlined requests
BATCH_PATH = "/v1beta/models/{model}:batchGenerateContent"


class BatchState(StrEnum):
    """A batch's state, whichever spelling the provider used (REST `BATCH_STATE_*`, the SDK's
    `JOB_STATE_*`)."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"
    UNKNOWN = "UNKNOWN"

    @property
    def finished(self) -> bool:
        """No further change will come: its results (if any) can be collected."""
        return self in _FINISHED


_FINISHED = frozenset(
    {BatchState.SUCCEEDED, BatchState.FAILED, BatchState.CANCELLED, BatchState.EXPIRED}
)


def batch_state(text: Any) -> BatchState:
    """`BATCH_STATE_RUNNING`, `JOB_STATE_RUNNING` or `RUNNING` alike; anything else is UNKNOWN."""
    if not isinstance(text, str):
        return BatchState.UNKNOWN
    name = text.upper()
    for prefix in ("BATCH_STATE_", "JOB_STATE_"):
        name = name.removeprefix(prefix)
    if name == "CANCELED":
        name = "CANCELLED"
    try:
        return BatchState(name)
    except ValueError:
        return BatchState.UNKNOWN


def batch_key(job: str, run_id: str, model: str, image_size: str, number: int) -> str:
    """A batch's key, also its display name: unique per job, run and batch, readable, and short
    enough for any display name (a long job name is cut and a digest keeps it unique)."""
    digest = hashlib.sha256(f"{job}\0{run_id}\0{model}\0{image_size}".encode()).hexdigest()[:8]
    return f"bb-{job[:40]}-{run_id.removeprefix('r-')}-{digest}-{number}"


def request_key(item_id: str, attempt: int) -> str:
    """The key of one request inside a batch: the item id and its attempt (`#` is never in an
    id, so the key splits back unambiguously)."""
    return f"{item_id}#{attempt}"


def split_request_key(key: Any) -> tuple[str, int] | None:
    """(item id, attempt) of a request key, or None when it is not one of ours."""
    if not isinstance(key, str):
        return None
    item, sep, number = key.rpartition("#")
    if not sep or not item or not number.isdigit():
        return None
    return item, int(number)


@dataclass(frozen=True, slots=True)
class Member:
    """One owed request on its way into a batch: its key and the size of its request JSON."""

    key: str
    model: str
    image_size: str
    body_bytes: int


@dataclass(frozen=True, slots=True)
class Split:
    """One batch to create: its model, its requests' keys, and inline or through a file."""

    model: str
    image_size: str
    keys: tuple[str, ...]
    inline: bool
    body_bytes: int


def split_batches(
    members: Iterable[Member],
    inline_limit: int = INLINE_LIMIT_BYTES,
    file_limit: int = FILE_LIMIT_BYTES,
) -> list[Split]:
    """Group requests by model and size (a batch is per model; one size per batch keeps its
    price and its wait alike), in order; inline while the create body stays under
    `inline_limit`, else a JSONL file of at most `file_limit` bytes, split further as needed."""
    groups: dict[tuple[str, str], list[Member]] = {}
    for member in members:
        groups.setdefault((member.model, member.image_size), []).append(member)
    splits: list[Split] = []
    for (model, size), group in groups.items():
        # A request line in a file costs its body plus the key's envelope.
        total = CREATE_OVERHEAD_BYTES + sum(m.body_bytes + len(m.key) + 64 for m in group)
        if total < inline_limit:
            splits.append(Split(model, size, tuple(m.key for m in group), True, total))
            continue
        keys: list[str] = []
        size_now = 0
        for member in group:
            line = member.body_bytes + len(member.key) + 32
            if keys and size_now + line > file_limit:
                splits.append(Split(model, size, tuple(keys), False, size_now))
                keys, size_now = [], 0
            keys.append(member.key)
            size_now += line
        if keys:
            splits.append(Split(model, size, tuple(keys), False, size_now))
    return splits


def request_line(key: str, body: bytes) -> bytes:
    """One line of a batch's input file: `{"key": ..., "request": <generateContent body>}`."""
    return b'{"key":' + json.dumps(key).encode() + b',"request":' + body + b"}\n"


def inline_entry(key: str, body: bytes) -> bytes:
    """One inlined request of a create body, with its key in the metadata."""
    return b'{"request":' + body + b',"metadata":{"key":' + json.dumps(key).encode() + b"}}"


def create_body_head(display_name: str, model: str) -> bytes:
    """The create body up to its inputConfig (camelCase, as Google's REST takes it)."""
    head = {"displayName": display_name, "model": f"models/{model}"}
    return b'{"batch":' + json.dumps(head).encode()[:-1]


def inline_create_body(display_name: str, model: str, entries: Sequence[bytes]) -> bytes:
    """The whole create body of an inline batch."""
    return (
        create_body_head(display_name, model)
        + b',"inputConfig":{"requests":{"requests":['
        + b",".join(entries)
        + b"]}}}}"
    )


def file_create_body(display_name: str, model: str, file_name: str) -> bytes:
    """The create body of a batch whose requests are an uploaded file."""
    return (
        create_body_head(display_name, model)
        + b',"inputConfig":{"fileName":'
        + json.dumps(file_name).encode()
        + b"}}}"
    )


@dataclass(frozen=True, slots=True)
class BatchStatus:
    """What a batch's operation says: its name, display name, state, counts and where its
    results are (inline in the operation, or a responses file)."""

    name: str
    display_name: str | None
    state: BatchState
    stats: dict[str, int]
    responses_file: str | None
    has_inline_output: bool
    create_time: str | None = None


def _count(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


_STATS = {
    "requestCount": "requests",
    "successfulRequestCount": "succeeded",
    "failedRequestCount": "failed",
    "pendingRequestCount": "pending",
}


def batch_status(operation: Mapping[str, Any]) -> BatchStatus | None:
    """The status an operation (create, get or a list entry) describes, or None if it names no
    batch. The REST form keeps everything under `metadata`; the state may be spelt either way."""
    name = operation.get("name")
    metadata = operation.get("metadata")
    meta: Mapping[str, Any] = metadata if isinstance(metadata, Mapping) else operation
    if not isinstance(name, str) or not name:
        return None
    raw_stats = camel_or_snake(meta, "batchStats", "batch_stats")
    stats: dict[str, int] = {}
    if isinstance(raw_stats, Mapping):
        for key, label in _STATS.items():
            snake = "".join("_" + c.lower() if c.isupper() else c for c in key)
            count = _count(camel_or_snake(raw_stats, key, snake))
            if count is not None:
                stats[label] = count
    output = meta.get("output")
    if not isinstance(output, Mapping):
        response = operation.get("response")
        output = response if isinstance(response, Mapping) else {}
    responses_file = camel_or_snake(output, "responsesFile", "responses_file")
    display = camel_or_snake(meta, "displayName", "display_name")
    return BatchStatus(
        name=name,
        display_name=display if isinstance(display, str) else None,
        state=batch_state(meta.get("state")),
        stats=stats,
        responses_file=responses_file if isinstance(responses_file, str) else None,
        has_inline_output=camel_or_snake(output, "inlinedResponses", "inlined_responses")
        is not None,
        create_time=_text(camel_or_snake(meta, "createTime", "create_time")),
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


# google.rpc.Code -> the HTTP status Google answers it with (google/rpc/code.proto).
_GRPC_HTTP = {
    1: 499, 2: 500, 3: 400, 4: 504, 5: 404, 6: 409, 7: 403, 8: 429,
    9: 400, 10: 409, 11: 400, 12: 501, 13: 500, 14: 503, 15: 500, 16: 401,
}  # fmt: skip
_GRPC_NAMES = {
    "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4, "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9, "ABORTED": 10, "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12,
    "INTERNAL": 13, "UNAVAILABLE": 14, "DATA_LOSS": 15, "UNAUTHENTICATED": 16,
}  # fmt: skip


def error_http_status(error: Mapping[str, Any]) -> int:
    """The HTTP status a response line's error stands for. Google's lines carry a
    google.rpc.Status, whose `code` is the gRPC code (13 INTERNAL, 8 RESOURCE_EXHAUSTED...);
    an HTTP code (400-599) is taken as it is; with neither, the status name decides, else 500."""
    code = error.get("code")
    if isinstance(code, int) and not isinstance(code, bool):
        if 400 <= code < 600:
            return code
        if code in _GRPC_HTTP:
            return _GRPC_HTTP[code]
    name = error.get("status")
    if isinstance(name, str) and name.upper() in _GRPC_NAMES:
        return _GRPC_HTTP[_GRPC_NAMES[name.upper()]]
    return 500


def poll_delay_s(polls: int, first_s: float, max_s: float) -> float:
    """The wait before poll number `polls` + 1: `first_s`, growing by half each time to `max_s`
    (a batch takes minutes to hours: polling faster only spends quota)."""
    return float(min(max_s, first_s * 1.5 ** max(0, polls)))


def create_may_have_made(status: int | None, sent: bool) -> bool:
    """Whether a failed create may still have made its batch: the body reached the provider and
    no clear refusal (a 4xx) came back; a 200 whose answer could not be read made it for sure."""
    return sent and (status is None or status >= 500 or status == 200)


def not_created_outcome(status: int | None, sent: bool) -> Outcome:
    """How the requests of a create that provably made no batch end (status None: no answer;
    `sent`: the body may have gone out): none is billed."""
    if status == 429:
        return Outcome.RATE_LIMITED
    if status is None:
        return Outcome.CONNECT_ERROR if not sent else Outcome.UNAVAILABLE
    if 400 <= status < 500:
        return Outcome.HTTP_ERROR
    return Outcome.UNAVAILABLE
