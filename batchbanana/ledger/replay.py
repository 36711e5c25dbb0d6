"""Reading a ledger back: every readable line (a torn or garbage one is skipped with a warning
that names its line), folded into per-item state and the money the ledger already records.

Lines are understood only through ledger/records.py: a record is read as a JobLine or BatchLine
there, a `sent` or `result` line as the Step replaying needs of it, and a kind this version does
not know is passed over. The state is held compactly (ledger/state.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchbanana.errors import UserError
from batchbanana.ledger.columns import AttemptState
from batchbanana.ledger.records import BatchLine, JobLine, parse_line
from batchbanana.ledger.state import (
    BatchRecord,
    InFlight,
    ItemHistory,
    LedgerState,
)

__all__ = [
    "AttemptState",
    "BatchRecord",
    "InFlight",
    "ItemHistory",
    "LedgerRead",
    "LedgerState",
    "iter_records",
    "read_ledger",
    "replay",
    "scan_ledger",
]

# json.loads's own scanner, called without its wrappers
_scan: Callable[[str, int], tuple[Any, int]] = vars(json.JSONDecoder())["scan_once"]
_BLANK = " \t\n\r"


@dataclass(slots=True)
class LedgerRead:
    """The records of a ledger file and the warnings about lines that could not be read."""

    records: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _loaded(raw: bytes) -> Any:
    """json.loads(raw), faster for the lines a ledger holds (UTF-8 text starting with `{`):
    the same value for every line, and an exception for every line json.loads refuses."""
    if raw[:1] == b"{" and raw[1:2] != b"\x00":  # else json.loads may read it as UTF-16
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return json.loads(raw)  # its own decoding (surrogates pass) and its own verdict
        try:
            value, end = _scan(text, 0)
        except StopIteration:
            raise ValueError("not JSON") from None
        if end != len(text) and text[end:].strip(_BLANK):
            raise ValueError("extra data")
        return value
    return json.loads(raw)


def iter_records(path: Path, warnings: list[str]) -> Iterator[dict[str, Any]]:
    """Each readable record, read as the file is (a torn or garbage line adds a warning naming
    its line instead). A missing file has no records."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return
    except OSError as exc:
        raise UserError(f"{path}: cannot read the ledger ({exc.strerror})") from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                record = _loaded(raw)
            except (ValueError, RecursionError):  # not JSON or UTF-8, absurd numbers or nesting
                record = None
            if isinstance(record, dict) and isinstance(record.get("event"), str):
                yield record
                continue
            kind = "not a ledger record" if raw.endswith(b"\n") else "torn (cut off mid-write)"
            warnings.append(f"{path}:{number}: skipped a line that is {kind}")


def read_ledger(path: Path) -> LedgerRead:
    """Every readable record; a torn or garbage line is skipped with a warning naming its line."""
    result = LedgerRead()
    result.records.extend(iter_records(path, result.warnings))
    return result


def scan_ledger(path: Path) -> tuple[LedgerState, list[str]]:
    """Replay a ledger as it is read, without holding its records (a 100,000-item ledger)."""
    warnings: list[str] = []
    state = replay(iter_records(path, warnings))
    return state, warnings


def replay(records: Iterable[Mapping[str, Any]]) -> LedgerState:
    """Fold ledger records, in order, into per-item state and money totals."""
    state = LedgerState()
    state.fold(records, lambda record: _other_line(state, record))
    state.spent_usd = round(state.spent_usd, 6)
    state.possibly_spent_usd = round(state.possibly_spent_usd + state.pending_prices(), 6)
    return state


def _other_line(state: LedgerState, record: Mapping[str, Any]) -> None:
    """A `job` or `batch` line into the state; any other kind is passed over."""
    line = parse_line(record)
    if isinstance(line, JobLine):
        state.jobs.append(line)
    elif isinstance(line, BatchLine):
        batch = state.batches.setdefault(line.batch_key, BatchRecord(line.batch_key))
        for name in ("name", "state", "model", "image_size", "input"):
            value = getattr(line, name)
            if value is not None:
                setattr(batch, name, value)
