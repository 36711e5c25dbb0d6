"""The report's attempts: each `result` line read into an Attempt, and each `sent` line left
without a result made one too, priced from its own line: in flight when the process stopped
(`interrupted`), or, for a request sent in a remote batch, waiting in that batch (`in_batch`: `run`
re-attaches to it and collects its results; possibly spent until then).

Text that came from a server is redacted: the ledger never holds a key, but an echo might look
like one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from batchbanana.ledger.fields import Json, Spec
from batchbanana.ledger.records import ResultLine, SentLine
from batchbanana.report.batches import Batch
from batchbanana.rules.outcomes import Billed, Outcome

__all__ = [
    "EPOCH", "IN_BATCH", "UNKNOWN", "Attempt", "parse_ts", "redact", "result_attempt",
    "unanswered",
]  # fmt: skip

UNKNOWN = "unknown"
IN_BATCH = "in_batch"  # an item's request waits in a remote batch: no outcome yet
SYNC, BATCH = "sync", "batch"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Defence in depth: the ledger never holds a key, but text echoed by servers might look like one.
_KEY_LIKE = re.compile(
    r"(?<![A-Za-z0-9])sk-[A-Za-z0-9_\-]{16,}|AIza[0-9A-Za-z_\-]{30,}"
    r"|(?i:(?<=[?&]key=))[^&\s\"']+|(?i:(?<=bearer ))[A-Za-z0-9._\-]{12,}"
)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One `result` line, or a `sent` line that never got one (`dangling`: interrupted, or
    in_batch when it went out in a remote batch)."""

    item: str
    group: str  # items merge by (group, item): "job:NAME" or "file:N"
    ledger: int  # index into LoadedReport.ledgers
    order: int  # position of the line among its ledger's records
    outcome: str
    billed: str  # yes | no | unknown
    price_usd: float
    model: str
    image_size: str
    ts: datetime | None
    latency_s: float | None = None
    http_status: int | None = None
    outputs: tuple[str, ...] = ()
    error: str | None = None
    prompt: str = ""
    aspect_ratio: str | None = None
    dangling: bool = False
    mode: str = SYNC  # "batch": sent through Google's Batch API, at batch prices
    batch: str | None = None  # that batch's name (its key while no name is recorded)
    sent_order: int | None = None  # position of its `sent` line in the same ledger, if any
    sent_ts: datetime | None = None  # and that line's time
    variant_of: str | None = None  # a matrix's variants share it (their item id before expansion)
    combination: tuple[tuple[str, str], ...] = ()  # the matrix values that made this variant
    uses: tuple[str, ...] = ()  # items whose outputs it edits (`item:<id>` inputs)
    attempt: int | None = None  # its number among the item's requests
    finish_reason: str | None = None
    response_id: str | None = None
    grounding: Json | None = None  # a grounded answer's queries and sources


def request_of(line: SentLine | ResultLine) -> tuple[str, str, str, str | None]:
    """(model, size, prompt, ratio) of a line's request; its spec gives what the line lacks."""
    spec = Spec.from_json(line.spec)
    ratio = line.aspect_ratio if isinstance(line, ResultLine) else None
    return (
        line.model or spec.model or UNKNOWN,
        line.image_size or spec.image_size or UNKNOWN,
        redact(spec.prompt or ""),
        ratio or spec.aspect_ratio or None,
    )


def result_attempt(
    line: ResultLine, group: str, ledger: int, order: int, sent: tuple[int, SentLine] | None = None
) -> Attempt:
    """The attempt a `result` line records, read `order`-th in ledger number `ledger` (`sent`:
    its `sent` line, and where it was read)."""
    model, image_size, prompt, aspect_ratio = request_of(line)
    key = sent[1].batch_key if sent is not None else None
    if line.outputs is not None:
        paths = tuple(line.outputs)
    else:
        paths = (line.output,) if line.output is not None else ()
    return Attempt(
        item=line.item,
        group=group,
        ledger=ledger,
        order=order,
        outcome=line.outcome,
        # An unreadable billing mark is treated as "maybe paid", never as free.
        billed=(line.billed or Billed.UNKNOWN).value,
        price_usd=line.price_usd or 0.0,
        model=model,
        image_size=image_size,
        ts=parse_ts(line.ts),
        latency_s=line.latency_s,
        http_status=line.http_status,
        outputs=paths,
        error=redact(line.error) if line.error is not None else None,
        prompt=prompt,
        aspect_ratio=aspect_ratio,
        # A result that names no batch (one never created, say) is linked by its `sent` line.
        mode=line.mode or (BATCH if key is not None else SYNC),
        batch=line.batch or key,
        sent_order=sent[0] if sent is not None else None,
        sent_ts=parse_ts(sent[1].ts) if sent is not None else None,
        attempt=line.attempt,
        finish_reason=line.finish_reason,
        response_id=line.response_id,
        grounding=line.grounding,
        **spec_links(line.spec),
    )


def spec_links(spec: Any) -> dict[str, Any]:
    """What a line's spec says about the item's relatives: the matrix it is a variant of (with
    its combination) and the items whose outputs it uses (edit chains)."""
    if not isinstance(spec, dict):
        return {}
    found: dict[str, Any] = {}
    variant_of = spec.get("variant_of")
    if isinstance(variant_of, str):
        found["variant_of"] = variant_of
        matrix = spec.get("matrix")
        if isinstance(matrix, dict):
            found["combination"] = tuple((str(k), str(v)) for k, v in matrix.items())
    images = spec.get("images")
    if isinstance(images, list):
        uses = tuple(
            image["item"]
            for image in images
            if isinstance(image, dict) and isinstance(image.get("item"), str)
        )
        if uses:
            found["uses"] = uses
    return found


def _waiting(key: str, batch: Batch | None) -> tuple[str, str]:
    """(batch label, why there is no result yet) for a request sent in batch `key`."""
    if batch is None:
        return key, (
            f"waiting in batch {key}: its creation is not recorded yet"
            " (`batchbanana run` finds it by that display name)"
        )
    if batch.finished:
        return batch.label, (
            f"batch {batch.label} ended {batch.state}; its result is not recorded yet"
            " (`batchbanana run` collects it)"
        )
    return batch.label, f"waiting in batch {batch.label} ({batch.state or 'no state recorded'})"


def unanswered(
    pending: list[tuple[int, str, int, SentLine]],
    results: list[Attempt],
    ledgers: list[Path],
    note: Callable[[str], None],
    batches: Mapping[tuple[str, str], Batch],
) -> list[Attempt]:
    """`sent` lines with no result after them: in flight when the process stopped, or waiting
    in their remote batch (`batches`: by group and batch key)."""
    latest_price = {(a.model, a.image_size): a.price_usd for a in results if a.price_usd}
    found = []
    for ledger, group, order, sent in pending:
        model, image_size, prompt, aspect_ratio = request_of(sent)
        price = sent.price_usd
        if price is None:
            # Older ledgers wrote no price on `sent`; the job's price for that model and size
            # is the best estimate, and a silent zero would understate what may be owed.
            price = latest_price.get((model, image_size))
            if price is None:
                note(f"{ledgers[ledger]}: item '{sent.item}': in-flight request has no price")
        outcome, mode, label = Outcome.INTERRUPTED.value, SYNC, None
        error = "in flight when the process stopped (a sent line with no result)"
        if sent.batch_key is not None:
            outcome, mode = IN_BATCH, BATCH
            label, error = _waiting(sent.batch_key, batches.get((group, sent.batch_key)))
        found.append(
            Attempt(
                item=sent.item,
                group=group,
                ledger=ledger,
                order=order,
                outcome=outcome,
                billed=Billed.UNKNOWN.value,
                price_usd=price or 0.0,
                model=model,
                image_size=image_size,
                ts=parse_ts(sent.ts),
                error=error,
                prompt=prompt,
                aspect_ratio=aspect_ratio,
                dangling=True,
                mode=mode,
                batch=label,
                attempt=sent.attempt,
            )
        )
    return found


def parse_ts(value: str | None) -> datetime | None:
    """A ledger timestamp as an aware datetime (UTC when it names no zone), or None."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def redact(text: str) -> str:
    return _KEY_LIKE.sub("***", text)
