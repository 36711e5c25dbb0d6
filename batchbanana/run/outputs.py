"""Output files: images (and their sidecars) are written under a temporary name, fsynced,
renamed, and the folder fsynced, so no partial file ever stands under a final name and a renamed
one survives a power cut. Names can never leave the output folder."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Container, Iterable
from pathlib import Path

from batchbanana.errors import UserError
from batchbanana.rules.media import IMAGE_EXTENSIONS

TEMP_SUFFIX = ".tmp"
IMAGE_FILE_EXTENSIONS = frozenset(IMAGE_EXTENSIONS.values())
SIDECAR_EXTENSION = "json"
TEMP_MARK = "~"  # never in an id: a temporary file's name says which item it belongs to


def output_name(item_id: str, index: int, extension: str) -> str:
    """`<id>.<ext>` for an answer's first image, `<id>+2.<ext>` for the second, and so on."""
    if "/" in item_id or "\\" in item_id or item_id in ("", ".", "..") or "+" in item_id:
        raise ValueError(f"unsafe item id {item_id!r}")
    suffix = "" if index == 1 else f"+{index}"
    return f"{item_id}{suffix}.{extension}"


def temp_path(output_dir: Path, item_id: str, label: str) -> Path:
    """A fresh temporary name for one of an item's files: `.<id>~<label>-<random>.tmp`."""
    return output_dir / f".{item_id}{TEMP_MARK}{label}-{secrets.token_hex(4)}{TEMP_SUFFIX}"


def image_path(output_dir: Path, item_id: str, index: int, mime_type: str) -> Path:
    """The final name of an answer's image."""
    # output_name refuses separators and dot-names, so the file is a direct child of the folder;
    # a symlink already at the final name is replaced itself, never followed.
    return output_dir / output_name(item_id, index, IMAGE_EXTENSIONS[mime_type])


def sidecar_path(output_dir: Path, item_id: str, index: int) -> Path:
    """The final name of an image's sidecar: `<id>.json`, `<id>+2.json`..."""
    return output_dir / output_name(item_id, index, SIDECAR_EXTENSION)


def _fsync_path(path: Path, flags: int = os.O_RDONLY) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_folder(folder: Path) -> None:
    """fsync a folder: a rename lives in it, and without this a power cut could undo the rename
    after the `ok` line is on disk."""
    _fsync_path(folder, os.O_RDONLY | os.O_DIRECTORY)


def write_new_file(path: Path, chunks: Iterable[bytes]) -> None:
    """Create `path` (never an existing file), write the chunks and fsync it; on failure no file
    is left behind."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        try:
            for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def put_in_place(temp: Path, final: Path) -> Path:
    """Give a written, fsynced temporary file its final name; the temp is gone either way. The
    folder is the caller's to fsync (once per batch)."""
    try:
        os.replace(temp, final)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return final


def write_image(output_dir: Path, item_id: str, index: int, mime_type: str, data: bytes) -> Path:
    """Write one image under a temporary name, fsync it, give it its final name; the final path.

    The folder is the caller's to fsync (once per batch). Raises OSError on failure, leaving no
    temporary file."""
    temp = temp_path(output_dir, item_id, str(index))
    write_new_file(temp, [data])
    return put_in_place(temp, image_path(output_dir, item_id, index, mime_type))


def commit_image(temp: Path, output_dir: Path, item_id: str, index: int, mime_type: str) -> Path:
    """Fsync a streamed image's temporary file and give it its final name; the temp is gone
    either way. The folder is the caller's to fsync."""
    try:
        final = image_path(output_dir, item_id, index, mime_type)
        _fsync_path(temp)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return put_in_place(temp, final)


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


def output_owner(name: str, extensions: frozenset[str] = IMAGE_FILE_EXTENSIONS) -> str | None:
    """The item id whose output a file name is (`<id>.<ext>` or `<id>+N.<ext>`, with one of
    these extensions), or None."""
    stem, dot, extension = name.rpartition(".")
    if not dot or extension not in extensions:
        return None
    owner, plus, number = stem.rpartition("+")
    if plus and number.isdigit() and owner:
        return owner
    return stem or None


def existing_outputs(
    output_dir: Path, item_ids: Iterable[str], extensions: frozenset[str] = IMAGE_FILE_EXTENSIONS
) -> list[Path]:
    """Files already at the final names of these items' images (or, given the sidecar
    extension, their sidecars): first image and `+N` ones.

    The folder is listed once, whatever the number of items."""
    wanted = set(item_ids)
    try:
        names = os.listdir(output_dir)
    except FileNotFoundError:
        return []
    return sorted(output_dir / name for name in names if output_owner(name, extensions) in wanted)


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
