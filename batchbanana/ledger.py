"""The JSONL ledger (contract section 6): one writer, whole lines, fsync before money moves.

Every line is written with one `os.write` on an O_APPEND descriptor from the event loop's one
thread, so lines never interleave. fsyncs run in a worker thread and are grouped: every caller
waiting for durability is served by the next fsync that starts after its line was written.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from batchbanana.errors import LedgerLockedError, UserError

Scrubber = Callable[[str], str]


def utc_now() -> str:
    """An ISO-8601 UTC timestamp with milliseconds, as the ledger writes them."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_RESULT_FIELDS = (
    "http_status", "latency_s", "output", "bytes", "finish_reason", "error", "usage",
)  # fmt: skip


def result_record(
    item: str,
    attempt: int,
    fingerprint: str,
    outcome: str,
    billed: str,
    price_usd: float,
    spec: dict[str, Any] | None,
    **fields: Any,
) -> dict[str, Any]:
    """A `result` line with every field the contract lists (None where not known), the request's
    model, size and ratio taken from its spec, then any further `fields` (text, outputs...)."""
    record: dict[str, Any] = {
        "event": "result",
        "ts": utc_now(),
        "item": item,
        "attempt": attempt,
        "fingerprint": fingerprint,
        "outcome": outcome,
        "billed": billed,
        "price_usd": price_usd,
    }
    record.update({key: fields.pop(key, None) for key in _RESULT_FIELDS})
    record.update({key: (spec or {}).get(key) for key in ("model", "image_size", "aspect_ratio")})
    record["spec"] = spec
    record.update(fields)
    return record


def _no_scrub(text: str) -> str:
    return text


class LedgerWriter:
    """An exclusively locked, append-only ledger file."""

    def __init__(self, path: Path, scrub: Scrubber = _no_scrub) -> None:
        self.path = path
        self._scrub = scrub
        self._fd = -1
        self._written = 0  # lines written so far
        self._synced = 0  # lines known to be on disk
        self._syncing = False
        self._sync_done = anyio.Event()
        self._unsynced = anyio.Event()  # set when a line was written without waiting for fsync
        self._fsync_thread: anyio.CapacityLimiter | None = None

    def set_scrubber(self, scrub: Scrubber) -> None:
        """Use this function to remove secrets from every line written from now on."""
        self._scrub = scrub

    def open(self) -> None:
        """Create or open the ledger, take its lock, and make sure the next line starts clean."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UserError(f"{self.path}: cannot open the ledger ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LedgerLockedError(
                f"{self.path}: the ledger is in use by another batchbanana process;"
                " HINT: wait for it to finish, or stop it first"
            ) from None
        self._fd = fd
        size = os.fstat(fd).st_size
        # A crash can leave a torn last line; end it so the next record starts on its own line.
        if size and os.pread(fd, 1, size - 1) != b"\n":
            os.write(fd, b"\n")
            os.fsync(fd)

    def close(self) -> None:
        """fsync, release the lock and close."""
        if self._fd >= 0:
            try:
                os.fsync(self._fd)
            finally:
                os.close(self._fd)
                self._fd = -1

    def append(self, record: dict[str, Any]) -> None:
        """Write one record as one whole line (not yet fsynced)."""
        line = json.dumps(record, ensure_ascii=False, separators=(", ", ": "), default=str)
        data = (self._scrub(line) + "\n").encode("utf-8")
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError:
            partial = len(data) - len(view)
            if partial:  # a torn line would swallow the next one written: take it back
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, os.fstat(self._fd).st_size - partial)
            raise
        self._written += 1

    def append_sync(self, record: dict[str, Any]) -> None:
        """Write one record and fsync it at once (for the rare lines outside the event loop)."""
        self.append(record)
        os.fsync(self._fd)
        self._synced = self._written

    def append_soon_durable(self, record: dict[str, Any]) -> None:
        """Write one record now; `keep_synced` makes it durable shortly after, without waiting.

        For result lines: nothing decided later depends on one being on disk at once (the next
        `sent` line's fsync covers every earlier line), and a power cut that loses one leaves its
        `sent` line, which counts as possibly spent, never as unpaid."""
        self.append(record)
        self._unsynced.set()

    async def keep_synced(self) -> None:
        """Run as a task: fsync soon after lines written with append_soon_durable (grouped)."""
        while True:
            await self._unsynced.wait()
            self._unsynced = anyio.Event()
            await self.sync()

    async def append_durable(self, record: dict[str, Any]) -> None:
        """Write one record; return once it is on disk (fsyncs shared with concurrent callers)."""
        self.append(record)
        await self.sync()

    async def sync(self) -> None:
        """Wait until every line written so far is on disk."""
        target = self._written
        while self._synced < target:
            if self._syncing:
                await self._sync_done.wait()
                continue
            self._syncing = True
            upto = self._written
            if self._fsync_thread is None:
                self._fsync_thread = anyio.CapacityLimiter(1)
            try:
                # A thread slot of its own: the `sent` line's fsync gates every request, so it
                # must never queue behind image commits in the shared pool.
                await anyio.to_thread.run_sync(os.fsync, self._fd, limiter=self._fsync_thread)
                self._synced = upto
            finally:
                self._syncing = False
                done, self._sync_done = self._sync_done, anyio.Event()
                done.set()


@dataclass(slots=True)
class LedgerRead:
    """The records of a ledger file and the warnings about lines that could not be read."""

    records: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


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
                record = json.loads(raw)
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


@dataclass(slots=True)
class AttemptState:
    """The latest known state of one (item, fingerprint) pair."""

    outcome: str | None = None  # latest result's outcome; None while a request is in flight
    billed: str | None = None
    in_flight_attempt: int | None = None  # a `sent` line with no result after it
    in_flight_price_usd: float = 0.0


@dataclass(slots=True)
class ItemHistory:
    """Everything the ledger says about one item id."""

    attempts: int = 0  # highest attempt number used
    fingerprint: str | None = None  # the latest one: the current work for this id
    spec: dict[str, Any] | None = None  # the latest request's spec, kept while it is not ok
    by_fingerprint: dict[str, AttemptState] = field(default_factory=dict)
    ever_sent: bool = False  # a `sent` line exists (an over_budget line alone sends nothing)

    def current(self) -> AttemptState:
        """The state of the latest fingerprint."""
        return self.by_fingerprint.setdefault(self.fingerprint or "", AttemptState())


@dataclass(slots=True)
class LedgerState:
    """A ledger replayed: per-item history, and the money it already records."""

    items: dict[str, ItemHistory] = field(default_factory=dict)
    spent_usd: float = 0.0
    possibly_spent_usd: float = 0.0
    jobs: list[dict[str, Any]] = field(default_factory=list)

    def dangling(self) -> list[tuple[str, str, int, float]]:
        """(item, fingerprint, attempt, price) of requests whose `sent` line has no result."""
        found = []
        for item_id, history in self.items.items():
            for print_id, state in history.by_fingerprint.items():
                if state.in_flight_attempt is not None:
                    found.append(
                        (item_id, print_id, state.in_flight_attempt, state.in_flight_price_usd)
                    )
        return found


def _price(record: dict[str, Any]) -> float:
    value = record.get("price_usd")
    if not isinstance(value, int | float) or isinstance(value, bool):
        return 0.0
    try:
        price = float(value)
    except OverflowError:
        return 0.0
    return price if math.isfinite(price) and price >= 0 else 0.0


def replay(records: Iterable[dict[str, Any]]) -> LedgerState:
    """Fold ledger records, in order, into per-item state and money totals."""
    state = LedgerState()
    spent = 0.0
    possibly = 0.0
    for record in records:
        event = record.get("event")
        if event == "job":
            state.jobs.append(record)
            continue
        item_id = record.get("item")
        print_id = record.get("fingerprint")
        if not isinstance(item_id, str) or not isinstance(print_id, str):
            continue
        history = state.items.setdefault(item_id, ItemHistory())
        attempt = record.get("attempt")
        if isinstance(attempt, int) and not isinstance(attempt, bool):
            history.attempts = max(history.attempts, attempt)
        history.fingerprint = print_id
        spec = record.get("spec")
        if isinstance(spec, dict):
            history.spec = spec
        pair = history.by_fingerprint.setdefault(print_id, AttemptState())
        if event == "sent":
            history.ever_sent = True
            pair.outcome = None  # a new attempt: the previous outcome no longer describes it
            pair.billed = None
            pair.in_flight_attempt = attempt if isinstance(attempt, int) else history.attempts
            pair.in_flight_price_usd = _price(record)
        elif event == "result":
            if pair.in_flight_attempt is not None and pair.in_flight_attempt == attempt:
                pair.in_flight_attempt = None
            pair.outcome = str(record.get("outcome"))
            pair.billed = str(record.get("billed"))
            if pair.outcome == "ok":
                history.spec = None  # only `retry` needs specs, and only of failed items
            if pair.billed == "yes":
                spent += _price(record)
            elif pair.billed == "unknown":
                possibly += _price(record)
    for history in state.items.values():
        for pair in history.by_fingerprint.values():
            if pair.in_flight_attempt is not None:
                possibly += pair.in_flight_price_usd
    state.spent_usd = round(spent, 6)
    state.possibly_spent_usd = round(possibly, 6)
    return state
