"""Saving answers: each answer's images made durable under their final names, with the record
of their making beside them (`<id>.json`) or also inside them (`metadata: embed`), in batches and
in threads of their own, before the answer's `ok` line is written."""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from batchbanana.plan.job import Job, WorkItem
from batchbanana.rules.answer import AnswerImage
from batchbanana.rules.embedding import Splice
from batchbanana.run.client import AttemptResult
from batchbanana.run.making import Making, for_image, plan_for, write_embedded, write_sidecar
from batchbanana.run.outputs import (
    commit_image,
    image_path,
    put_in_place,
    sidecar_path,
    sync_folder,
    temp_path,
    write_image,
)

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
    record: dict[str, Any] | None = None  # the making of the answer's images, if recorded
    saved: list[Path] = field(default_factory=list)
    error: Exception | None = None
    done: anyio.Event = field(default_factory=anyio.Event)


def _save_image(
    output_dir: Path, item_id: str, index: int, image: AnswerImage, record: dict[str, Any] | None
) -> Path:
    """One image under its final name: a copy with the record inside when one is given and the
    image can take it, else the bytes exactly as received."""
    final = image_path(output_dir, item_id, index, image.mime_type)
    plan = plan_for(image, record) if record is not None else None
    if isinstance(plan, Splice):
        temp = temp_path(output_dir, item_id, f"e{index}")
        write_embedded(image, plan, temp)
        put_in_place(temp, final)
        if image.path is not None:
            with contextlib.suppress(OSError):  # a leftover temp is removed at the next start
                image.path.unlink()
        return final
    if image.path is not None:
        return commit_image(image.path, output_dir, item_id, index, image.mime_type)
    return write_image(output_dir, item_id, index, image.mime_type, image.data)


def _save_sidecar(output_dir: Path, item_id: str, index: int, record: dict[str, Any]) -> None:
    final = sidecar_path(output_dir, item_id, index)
    temp = temp_path(output_dir, item_id, f"j{index}")
    try:
        write_sidecar(record, temp)
        put_in_place(temp, final)
    except OSError as exc:  # the ledger's line says "could not write the image": say which file
        raise OSError(exc.errno, f"{exc.strerror or exc} (the sidecar {final.name})") from exc


def save_images(
    output_dir: Path,
    item_id: str,
    images: Sequence[AnswerImage],
    record: dict[str, Any] | None,
    embed: bool,
) -> Saved:
    """An answer's images under their final names, each followed by its sidecar when a record
    is given (and with the record inside too when `embed`). The first image or sidecar that
    fails stops the rest; the folder is the caller's to fsync."""
    saved: list[Path] = []
    try:
        for index, image in enumerate(images, start=1):
            if record is None:
                saved.append(_save_image(output_dir, item_id, index, image, None))
                continue
            name = image_path(output_dir, item_id, index, image.mime_type).name
            own = for_image(record, name, index)
            saved.append(_save_image(output_dir, item_id, index, image, own if embed else None))
            _save_sidecar(output_dir, item_id, index, own)
    except Exception as exc:  # reported to the one answer it concerns
        return Saved(saved, exc)
    return Saved(saved)


def _commit_batch(output_dir: Path, batch: Sequence[_Commit], embed: bool) -> None:
    """Make every image of a batch (and its sidecar) durable under its final name, then fsync
    the folder once.

    Runs in a worker thread. An answer whose image or sidecar fails stops there (`error`); the
    others in the batch are not affected."""
    for commit in batch:
        saved = save_images(output_dir, commit.item_id, commit.images, commit.record, embed)
        commit.saved, commit.error = saved.paths, saved.error
    if any(commit.saved for commit in batch):
        try:
            sync_folder(output_dir)
        except OSError as exc:
            for commit in batch:
                if commit.saved and commit.error is None:
                    commit.error = exc


class ImageCommitter:
    """Makes answers' images durable in batches, in threads of its own.

    Per image, the work is an fsync (two with a sidecar); per batch, one thread hop, one folder
    fsync and one wake-up of the event loop. Small images go through one lane, so their fsyncs
    do not crowd the journal commit that every `sent` line waits for; once BATCH_BYTES or more
    are waiting (4K images), more lanes open, since large fsyncs go faster side by side. Run
    `serve()` as a task for as long as `commit()` may be called.
    """

    def __init__(
        self,
        output_dir: Path,
        lanes: int = SAVER_LANES,
        making: Making | None = None,
    ) -> None:
        self.output_dir = output_dir
        self.making = making or Making()  # what is recorded of the images' making
        self._lanes = lanes
        self._limiter = anyio.CapacityLimiter(lanes)
        self._waiting: deque[_Commit] = deque()
        self._waiting_bytes = 0
        self._arrived = anyio.Event()  # set (and replaced) whenever an answer is queued
        self._closed = False

    @classmethod
    def for_job(cls, job: Job, scrub: Callable[[str], str]) -> ImageCommitter:
        """The saver of a job's answers, recording their making as its `metadata` says, with
        every secret scrubbed from the record."""
        return cls(job.output_dir, making=Making.for_job(job, scrub))

    async def commit_answer(
        self, item: WorkItem, attempt: int, price_usd: float, result: AttemptResult
    ) -> Saved:
        """Save a paid answer's images with the record of their making (see commit)."""
        spec = item.spec()
        record = self.making.record(item.id, spec, item.fingerprint, attempt, price_usd, result)
        return await self.commit(item.id, result.images, record)

    async def commit(
        self,
        item_id: str,
        images: Sequence[AnswerImage],
        record: dict[str, Any] | None = None,
    ) -> Saved:
        """Save an answer's images as `<id>.<ext>`, `<id>+2.<ext>`..., each with a sidecar
        `<id>.json`, `<id>+2.json`... when a record is given (embedded too with `embed`).

        The first image (or sidecar) that fails stops the rest; the images before it stay saved
        (and are named in the result, so the ledger tells which files exist)."""
        if self._closed:
            return Saved([], RuntimeError("the image saver has stopped"))
        size = sum(image.size for image in images)
        commit = _Commit(item_id, images, size, record)
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
                    _commit_batch,
                    self.output_dir,
                    batch,
                    self.making.embed,
                    limiter=self._limiter,
                )
            except BaseException:
                for commit in batch:
                    if commit.error is None:
                        commit.error = RuntimeError("the image saver stopped before saving it")
                raise
            finally:
                for commit in batch:
                    commit.done.set()
