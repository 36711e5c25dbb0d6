"""The batches a simulator holds: each one's state, counts and output, and the registry that
creates, finds and pages through them (newest first) and summarises them for /_sim/batches."""

from __future__ import annotations

import asyncio
import base64
import binascii
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchbanana.simulator.batch_input import BatchInput, BatchLine
from batchbanana.simulator.files import new_id

PENDING = "BATCH_STATE_PENDING"
RUNNING = "BATCH_STATE_RUNNING"
SUCCEEDED = "BATCH_STATE_SUCCEEDED"
FAILED = "BATCH_STATE_FAILED"
EXPIRED = "BATCH_STATE_EXPIRED"
CANCELLED = "BATCH_STATE_CANCELLED"
TERMINAL = frozenset({SUCCEEDED, FAILED, EXPIRED, CANCELLED})
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


@dataclass(eq=False, slots=True)
class Batch:
    """One batch: what it was asked, how it is to end, and how far it got."""

    batch_id: str
    seq: int  # creation order: the list's order and its page tokens
    model: str
    display_name: str
    mode: str  # inline | file
    lines: tuple[BatchLine, ...]
    api_key: str  # only for the `echo_key_403` directive, which echoes it on purpose
    ending: str  # succeeded | failed | expired | cancelled | stuck
    downloads_503: int  # the first downloads of its responses file that answer 503
    input_file: str | None = None
    created_s: float = field(default_factory=time.time)
    updated_s: float = 0.0
    end_s: float | None = None
    state: str = PENDING
    succeeded: int = 0  # response lines written
    failed: int = 0  # error lines written
    output: Path | None = None  # the lines written so far, one JSON object each
    output_bytes: int = 0
    responses_file: str | None = None  # file input: `files/batch-<id>`, once finished
    deleted: bool = False
    stop: str | None = None  # "cancel" or "delete" once asked; the work stops after its line
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.updated_s = self.created_s

    @property
    def name(self) -> str:
        return f"batches/{self.batch_id}"

    @property
    def done(self) -> bool:
        return self.state in TERMINAL

    @property
    def has_output(self) -> bool:
        """Finished with at least one line: SUCCEEDED, or CANCELLED after some were produced."""
        return (
            self.state in (SUCCEEDED, CANCELLED)
            and self.output is not None
            and (self.succeeded + self.failed > 0)
        )


def page_token(seq: int) -> str:
    return base64.urlsafe_b64encode(f"before:{seq}".encode()).decode().rstrip("=")


def read_page_token(token: str) -> int | None:
    """The sequence number a page token continues before; None if it is not one of ours."""
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, ValueError):
        return None
    prefix, _, number = text.partition(":")
    return int(number) if prefix == "before" and number.isdigit() else None


class BatchStore:
    """Every batch of one simulator. Changed on the event loop; summary() may be read from any
    thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._batches: dict[str, Batch] = {}
        self._next_seq = 0

    def create(
        self, model: str, spec: BatchInput, api_key: str, ending: str, downloads_503: int
    ) -> Batch:
        with self._lock:
            batch = Batch(
                new_id(20),
                self._next_seq,
                model,
                spec.display_name,
                spec.mode,
                spec.lines,
                api_key,
                ending,
                downloads_503,
                spec.file_name,
            )
            self._next_seq += 1
            self._batches[batch.batch_id] = batch
            return batch

    def get(self, batch_id: str) -> Batch | None:
        """A batch that exists (deleted ones do not)."""
        batch = self._batches.get(batch_id)
        return None if batch is None or batch.deleted else batch

    def all(self) -> list[Batch]:
        """Every batch ever created, deleted ones included, oldest first."""
        with self._lock:
            return list(self._batches.values())

    def page(self, size: int, before: int | None) -> tuple[list[Batch], str | None]:
        """Up to `size` batches, newest first, older than the token's; and the next token."""
        with self._lock:
            live = [b for b in reversed(self._batches.values()) if not b.deleted]
        if before is not None:
            live = [b for b in live if b.seq < before]
        page = live[:size]
        more = len(live) > size
        return page, page_token(page[-1].seq) if more else None

    def set_state(self, batch: Batch, state: str) -> None:
        with self._lock:
            batch.state = state
            batch.updated_s = time.time()
            if state in TERMINAL:
                batch.end_s = batch.updated_s

    def summary(self) -> list[dict[str, Any]]:
        """What GET /_sim/batches answers: every batch created, oldest first."""
        with self._lock:
            return [
                {
                    "name": b.name,
                    "displayName": b.display_name,
                    "state": b.state,
                    "model": f"models/{b.model}",
                    "requestCount": len(b.lines),
                    "mode": b.mode,
                    "succeeded": b.succeeded,
                    "failed": b.failed,
                    "deleted": b.deleted,
                }
                for b in self._batches.values()
            ]
