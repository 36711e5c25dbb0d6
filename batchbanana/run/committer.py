"""Saving answers: each answer's images made durable under their final names, in batches and in
threads of their own, before the answer's `ok` line is written."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.to_thread

from batchbanana.rules.answer import AnswerImage
from batchbanana.run.outputs import commit_image, sync_folder, write_image

BATCH_BYTES = 8 * 1024 * 1024  # image bytes one batch takes on (at least one answer)
SAVER_LANES = 4  # batches saved at once, at most; lanes past the first only for a backlog


@dataclass(frozen=True, slots=True)
class Saved:
    """What became of an answer's images: the final paths of those saved, in order, and the
    error that stopped the rest (None when all were saved)."""

    paths: list[Path]
    error: Exception | None = None


@dataclass(slots=True)
class _Commit:
    item_id: str
    images: Sequence[AnswerImage]
    size: int
    saved: list[Path] = field(default_factory=list)
    error: Exception | None = None
    done: anyio.Event = field(default_factory=anyio.Event)


def _commit_batch(output_dir: Path, batch: Sequence[_Commit]) -> None:
    """Make every image of a batch durable under its final name, then fsync the folder once.

    Runs in a worker thread. An answer whose image fails stops at that image (`error`); the
    others in the batch are not affected."""
    for commit in batch:
        try:
            for index, image in enumerate(commit.images, start=1):
                if image.path is not None:
                    path = commit_image(
                        image.path, output_dir, commit.item_id, index, image.mime_type
                    )
                else:
                    path = write_image(
                        output_dir, commit.item_id, index, image.mime_type, image.data
                    )
                commit.saved.append(path)
        except Exception as exc:  # reported to the one answer it concerns
            commit.error = exc
    if any(commit.saved for commit in batch):
        try:
            sync_folder(output_dir)
        except OSError as exc:
            for commit in batch:
                if commit.saved and commit.error is None:
                    commit.error = exc


class ImageCommitter:
    """Makes answers' images durable in batches, in threads of its own.

    Per image, the work is an fsync; per batch, one thread hop, one folder fsync and one wake-up
    of the event loop. Small images go through one lane, so their fsyncs do not crowd the journal
    commit that every `sent` line waits for; once BATCH_BYTES or more are waiting (4K images),
    more lanes open, since large fsyncs go faster side by side. Run `serve()` as a task for as
    long as `commit()` may be called.
    """

    def __init__(self, output_dir: Path, lanes: int = SAVER_LANES) -> None:
        self.output_dir = output_dir
        self._lanes = lanes
        self._limiter = anyio.CapacityLimiter(lanes)
        self._waiting: deque[_Commit] = deque()
        self._waiting_bytes = 0
        self._arrived = anyio.Event()  # set (and replaced) whenever an answer is queued
        self._closed = False

    async def commit(self, item_id: str, images: Sequence[AnswerImage]) -> Saved:
        """Save an answer's images as `<id>.<ext>`, `<id>+2.<ext>`...

        The first image that fails stops the rest; the ones before it stay saved (and are
        named in the result, so the ledger tells which files exist)."""
        if self._closed:
            return Saved([], RuntimeError("the image saver has stopped"))
        commit = _Commit(item_id, images, sum(image.size for image in images))
        self._waiting.append(commit)
        self._waiting_bytes += commit.size
        arrived, self._arrived = self._arrived, anyio.Event()
        arrived.set()
        await commit.done.wait()
        return Saved(commit.saved, commit.error)

    async def serve(self) -> None:
        """Run batches as answers arrive, until cancelled; nothing waiting is ever left hanging."""
        try:
            async with anyio.create_task_group() as group:
                for lane in range(self._lanes):
                    group.start_soon(self._lane, lane)
        finally:
            self._closed = True
            for commit in self._waiting:
                commit.error = RuntimeError("the image saver stopped")
                commit.done.set()
            self._waiting.clear()

    def _take_batch(self) -> list[_Commit]:
        batch: list[_Commit] = []
        size = 0
        while self._waiting and (not batch or size + self._waiting[0].size <= BATCH_BYTES):
            commit = self._waiting.popleft()
            batch.append(commit)
            size += commit.size
        self._waiting_bytes -= size
        return batch

    async def _lane(self, lane: int) -> None:
        while True:
            arrived = self._arrived  # taken before looking, so no arrival can be missed
            if not self._waiting or (lane > 0 and self._waiting_bytes < BATCH_BYTES):
                await arrived.wait()
                continue
            batch = self._take_batch()
            try:
                await anyio.to_thread.run_sync(
                    _commit_batch, self.output_dir, batch, limiter=self._limiter
                )
            except BaseException:
                for commit in batch:
                    if commit.error is None:
                        commit.error = RuntimeError("the image saver stopped before saving it")
                raise
            finally:
                for commit in batch:
                    commit.done.set()


