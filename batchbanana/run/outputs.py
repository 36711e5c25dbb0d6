"""Image files: written under a temporary name, fsynced, renamed, and the folder fsynced, so no
partial image ever stands under a final name and a renamed image survives a power cut.
Names can never leave the output folder."""

from __future__ import annotations

import os
import secrets
from collections import deque
from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.to_thread

from batchbanana.errors import UserError
from batchbanana.rules.answer import AnswerImage
from batchbanana.rules.media import IMAGE_EXTENSIONS

TEMP_SUFFIX = ".tmp"
_EXTENSIONS = frozenset(IMAGE_EXTENSIONS.values())
TEMP_MARK = "~"  # never in an id: a temporary file's name says which item it belongs to


def output_name(item_id: str, index: int, extension: str) -> str:
    """`<id>.<ext>` for an answer's first image, `<id>+2.<ext>` for the second, and so on."""
    if "/" in item_id or "\\" in item_id or item_id in ("", ".", "..") or "+" in item_id:
        raise ValueError(f"unsafe item id {item_id!r}")
    suffix = "" if index == 1 else f"+{index}"
    return f"{item_id}{suffix}.{extension}"


def temp_path(output_dir: Path, item_id: str, label: str) -> Path:
    """A fresh temporary name for one of an item's images: `.<id>~<label>-<random>.tmp`."""
    return output_dir / f".{item_id}{TEMP_MARK}{label}-{secrets.token_hex(4)}{TEMP_SUFFIX}"


def _final_path(output_dir: Path, item_id: str, index: int, mime_type: str) -> Path:
    # output_name refuses separators and dot-names, so the file is a direct child of the folder;
    # a symlink already at the final name is replaced itself, never followed.
    return output_dir / output_name(item_id, index, IMAGE_EXTENSIONS[mime_type])


def _fsync_path(path: Path, flags: int = os.O_RDONLY) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_folder(folder: Path) -> None:
    # A rename lives in the folder: without this, a power cut could undo it after the `ok`
    # line is on disk.
    _fsync_path(folder, os.O_RDONLY | os.O_DIRECTORY)


def write_image(output_dir: Path, item_id: str, index: int, mime_type: str, data: bytes) -> Path:
    """Write one image under a temporary name, fsync it, give it its final name; the final path.

    The folder is the caller's to fsync (once per batch). Raises OSError on failure, leaving no
    temporary file."""
    final = _final_path(output_dir, item_id, index, mime_type)
    temp = temp_path(output_dir, item_id, str(index))
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, final)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return final


def commit_image(temp: Path, output_dir: Path, item_id: str, index: int, mime_type: str) -> Path:
    """Fsync a streamed image's temporary file and give it its final name; the temp is gone
    either way. The folder is the caller's to fsync."""
    try:
        final = _final_path(output_dir, item_id, index, mime_type)
        _fsync_path(temp)
        os.replace(temp, final)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return final


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
            _sync_folder(output_dir)
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


def prepare_output_dir(output_dir: Path) -> None:
    """Create the output folder and prove it is writable, before anything is sent."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        probe = output_dir / f".batchbanana-probe-{secrets.token_hex(4)}{TEMP_SUFFIX}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UserError(
            f"{output_dir}: the output folder cannot be written ({exc.strerror or exc})"
        ) from None


def output_owner(name: str) -> str | None:
    """The item id whose output a file name is (`<id>.<ext>` or `<id>+N.<ext>`), or None."""
    stem, dot, extension = name.rpartition(".")
    if not dot or extension not in _EXTENSIONS:
        return None
    owner, plus, number = stem.rpartition("+")
    if plus and number.isdigit() and owner:
        return owner
    return stem or None


def existing_outputs(output_dir: Path, item_ids: Iterable[str]) -> list[Path]:
    """Image files already at the final names of these items (first image and `+N` ones).

    The folder is listed once, whatever the number of items."""
    wanted = set(item_ids)
    try:
        names = os.listdir(output_dir)
    except FileNotFoundError:
        return []
    return sorted(output_dir / name for name in names if output_owner(name) in wanted)


def remove_stale_temps(output_dir: Path, item_ids: Callable[[], Container[str]]) -> int:
    """Delete temporary files a killed run of this job left behind; returns how many.

    Only this job's items' temporaries are touched (`item_ids()`, asked only when there are
    some): another job may share the folder."""
    removed = 0
    if not output_dir.is_dir():
        return 0
    stale = list(output_dir.glob(f".*{TEMP_MARK}*{TEMP_SUFFIX}"))
    ids = item_ids() if stale else ()
    for entry in stale:
        owner = entry.name[1:].partition(TEMP_MARK)[0]
        if owner in ids:
            try:
                entry.unlink()
                removed += 1
            except OSError:
                pass
    return removed
