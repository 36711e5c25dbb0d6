"""The JSONL ledger (contract section 6): one writer, whole lines, fsync before money moves.

Every line is written with one `os.write` on an O_APPEND descriptor from the event loop's one
thread, so lines never interleave. fsyncs run in a worker thread and are grouped: every caller
waiting for durability is served by the next fsync that starts after its line was written.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from batchbanana.errors import LedgerLockedError, UserError
from batchbanana.ledger.records import LedgerLine

Scrubber = Callable[[str], str]
Record = LedgerLine | dict[str, Any]  # a typed line, or a raw one (tests write damaged ledgers)


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

    def append(self, record: Record) -> None:
        """Write one record as one whole line (not yet fsynced)."""
        fields = record if isinstance(record, dict) else record.to_json()
        line = json.dumps(fields, ensure_ascii=False, separators=(", ", ": "), default=str)
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

    def append_sync(self, record: Record) -> None:
        """Write one record and fsync it at once (for the rare lines outside the event loop)."""
        self.append(record)
        os.fsync(self._fd)
        self._synced = self._written

    def sync_now(self) -> None:
        """Fsync every line written so far, blocking (for a worker thread's lines)."""
        os.fsync(self._fd)
        self._synced = self._written

    def append_soon_durable(self, record: Record) -> None:
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

    async def append_durable(self, record: Record) -> None:
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
