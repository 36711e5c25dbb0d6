"""The ledger's lines as types (contract section 6): the one place their format is written down.

Every `job`, `sent` and `result` line is built as a JobLine, SentLine or ResultLine and written by
its `to_json`: the event, then the fields in the order the class declares them. It is read back
through `from_json` (or `parse_line`), which takes any line a ledger may hold (older versions'
lines, hand edits, garbage) and never raises: a field of the wrong type reads as None, and a line
no reader can use is None.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Self

from batchbanana.ledger.fields import (
    Json,
    as_dict,
    as_float,
    as_int,
    as_text,
    field_names,
    read_fields,
)
from batchbanana.rules.outcomes import Billed, Outcome, billed

# The outcome of a result line whose own outcome cannot be read (never "ok").
UNREADABLE_OUTCOME = "unknown"
_BILLED = tuple(kind.value for kind in Billed)


def utc_now() -> str:
    """An ISO-8601 UTC timestamp with milliseconds, as the ledger writes them."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Line:
    """What the three kinds of line share: the event they are, and how they are written."""

    __slots__ = ()
    EVENT: ClassVar[str]
    OPTIONAL: ClassVar[frozenset[str]] = frozenset()  # written only when not None

    def to_json(self) -> Json:
        """The line as written: the event, then each field in the order the class declares it
        (JSON writes a Billed or an Outcome as its string, a sequence as a list)."""
        record: Json = {"event": self.EVENT}
        for name in field_names(type(self)):
            value = getattr(self, name)
            if value is not None or name not in self.OPTIONAL:
                record[name] = value
        return record


def _item_of(cls: type[_Line], record: Mapping[str, Any]) -> str | None:
    """The item id of a `sent` or `result` line of kind `cls`, or None if it is not one."""
    item = as_text(record.get("item"))
    return item if record.get("event") == cls.EVENT else None


@dataclass(frozen=True, slots=True, kw_only=True)
class JobLine(_Line):
    """`{"event": "job"}`, written at each start of `run` or `retry`: who ran what, and the job's
    settings without secrets (what `retry` rebuilds the job from)."""

    EVENT: ClassVar[str] = "job"

    ts: str | None = field(default_factory=utc_now)
    run_id: str | None
    command: str | None
    job: str | None  # older ledgers lack it
    manifest: str | None
    manifest_sha256: str | None
    ledger: str | None
    version: str | None
    settings: Json = field(default_factory=dict)

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> Self | None:
        """The `job` line `record` is, or None if it is another kind of line."""
        if record.get("event") != cls.EVENT:
            return None
        return cls(**read_fields(cls, record, settings=as_dict(record.get("settings")) or {}))


@dataclass(frozen=True, slots=True, kw_only=True)
class SentLine(_Line):
    """`{"event": "sent"}`, made durable before its request goes out: until a result follows, the
    request may have been paid for."""

    EVENT: ClassVar[str] = "sent"
    OPTIONAL: ClassVar[frozenset[str]] = frozenset({"batch_key"})

    ts: str | None = field(default_factory=utc_now)
    item: str
    attempt: int | None
    fingerprint: str | None
    price_usd: float | None  # older ledgers wrote no price here
    model: str | None
    image_size: str | None
    spec: Json | None
    batch_key: str | None = None  # batch mode: the batch this request goes out in

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> Self | None:
        """The `sent` line `record` is, or None if it is another kind or names no item."""
        item = _item_of(cls, record)
        return None if item is None else cls(**read_fields(cls, record, item=item))


@dataclass(frozen=True, slots=True, kw_only=True)
class ResultLine(_Line):
    """`{"event": "result"}`: how one attempt ended, whether it was billed and at what price.

    `outcome` is an Outcome's value, or a name this version does not know (a newer one's);
    `billed` is None when the line's own mark cannot be read. The fields after `spec` are
    written only when known."""

    EVENT: ClassVar[str] = "result"
    OPTIONAL: ClassVar[frozenset[str]] = frozenset(
        {
            "text",
            "response_id",
            "model_version",
            "outputs",
            "retry_in_s",
            "mode",
            "batch",
            "grounding",
        }
    )

    ts: str | None = field(default_factory=utc_now)
    item: str
    attempt: int | None
    fingerprint: str | None
    outcome: str
    billed: Billed | None
    price_usd: float | None
    http_status: int | None = None
    latency_s: float | None = None
    output: str | None = None  # the first image saved
    bytes: int | None = None
    finish_reason: str | None = None
    error: str | None = None
    usage: Json | None = None
    model: str | None = None
    image_size: str | None = None
    aspect_ratio: str | None = None
    spec: Json | None = None
    text: str | None = None  # the model's words, cut at 500 characters
    response_id: str | None = None
    model_version: str | None = None
    outputs: Sequence[str] | None = None  # every image saved, when there are several
    retry_in_s: float | None = None  # the backoff before `run` tries again
    mode: str | None = None  # "batch" for a request answered through a batch (sync: left out)
    batch: str | None = None  # that batch's name (`batches/...`)
    grounding: Json | None = None  # a grounded answer's queries and sources (rules/grounding.py)

    @classmethod
    def for_attempt(
        cls,
        item: str,
        attempt: int,
        fingerprint: str,
        outcome: Outcome,
        price_usd: float,
        spec: Json | None,
        **known: Any,
    ) -> Self:
        """The result of one attempt, billed as its outcome is (rules/outcomes.py), with the
        request's model, size and ratio taken from its spec; `known` gives the other fields."""
        request = spec or {}
        return cls(
            item=item,
            attempt=attempt,
            fingerprint=fingerprint,
            outcome=outcome,
            billed=billed(outcome),
            price_usd=price_usd,
            model=request.get("model"),
            image_size=request.get("image_size"),
            aspect_ratio=request.get("aspect_ratio"),
            spec=spec,
            **known,
        )

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> Self | None:
        """The `result` line `record` is, or None if it is another kind or names no item."""
        item = _item_of(cls, record)
        if item is None:
            return None
        mark = as_text(record.get("billed"))
        outputs = record.get("outputs")
        return cls(
            **read_fields(
                cls,
                record,
                item=item,
                outcome=as_text(record.get("outcome")) or UNREADABLE_OUTCOME,
                billed=Billed(mark) if mark in _BILLED else None,
                outputs=(
                    tuple(path for path in outputs if isinstance(path, str))
                    if isinstance(outputs, list)
                    else None
                ),
            )
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchLine(_Line):
    """`{"event": "batch"}`: what the ledger knows of a remote batch (contract section 10). The
    first is written once the batch is created, with the name the provider gave it; later ones
    record state changes. `name` is None for a batch found never created (`state` says so)."""

    EVENT: ClassVar[str] = "batch"
    OPTIONAL: ClassVar[frozenset[str]] = frozenset(
        {"model", "image_size", "requests", "input", "stats", "note"}
    )

    ts: str | None = field(default_factory=utc_now)
    batch_key: str
    name: str | None
    state: str | None
    model: str | None = None
    image_size: str | None = None
    requests: int | None = None
    input: str | None = None  # "inline" or the uploaded file's name
    stats: Json | None = None  # the provider's batchStats counts
    note: str | None = None

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> Self | None:
        """The `batch` line `record` is, or None if it is another kind or names no batch key."""
        key = as_text(record.get("batch_key"))
        if record.get("event") != cls.EVENT or not key:
            return None
        return cls(**read_fields(cls, record, batch_key=key, stats=as_dict(record.get("stats"))))


LedgerLine = JobLine | SentLine | ResultLine | BatchLine
_KINDS: dict[str, type[JobLine] | type[SentLine] | type[ResultLine] | type[BatchLine]] = {
    kind.EVENT: kind for kind in (JobLine, SentLine, ResultLine, BatchLine)
}


def parse_line(record: Mapping[str, Any]) -> LedgerLine | None:
    """The line a ledger record is, or None for a kind this version does not read (or one that
    names no item)."""
    kind = _KINDS.get(as_text(record.get("event")) or "")
    return kind.from_json(record) if kind is not None else None


# What replaying needs of a `sent` or `result` line: (is it `sent`, item, attempt, fingerprint,
# price_usd, spec, batch_key (sent), outcome (result; "" for sent), billed, output), each read as
# SentLine.from_json and ResultLine.from_json read it, without building the whole line (a
# million-item ledger has two million of them).
Step = tuple[
    bool, str, int | None, str | None, float | None, Json | None, str | None, str,
    Billed | None, str | None,
]  # fmt: skip
_BILLED_MARKS: dict[Any, Billed] = {kind.value: kind for kind in Billed}


def read_step(record: Mapping[str, Any]) -> Step | None:
    """The Step of a `sent` or `result` record; None for another kind, or one naming no item."""
    get = record.get
    event, item = get("event"), get("item")
    sent = event == "sent"
    if not (sent or event == "result") or not isinstance(item, str):
        return None
    attempt, fingerprint, spec = get("attempt"), get("fingerprint"), get("spec")
    if type(attempt) is not int:
        attempt = as_int(attempt)
    if type(fingerprint) is not str:
        fingerprint = as_text(fingerprint)
    if type(spec) is not dict:
        spec = as_dict(spec)
    price = get("price_usd")
    if type(price) is not float or price - price != 0.0:  # not a finite float: read it
        price = as_float(price)
    if sent:
        return (True, item, attempt, fingerprint, price, spec, as_text(get("batch_key")), "",
                None, None)  # fmt: skip
    outcome, mark, output = get("outcome"), get("billed"), get("output")
    return (
        False,
        item,
        attempt,
        fingerprint,
        price,
        spec,
        None,
        outcome if isinstance(outcome, str) and outcome else UNREADABLE_OUTCOME,
        _BILLED_MARKS.get(mark) if isinstance(mark, str) else None,
        output if type(output) is str else as_text(output),
    )
