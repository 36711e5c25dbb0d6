"""Image files: written under a temporary name, fsynced, then renamed, so no partial image ever
stands under a final name. Names can never leave the output folder."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from batchbanana.errors import UserError
from batchbanana.outcomes import IMAGE_EXTENSIONS

TEMP_SUFFIX = ".tmp"


def output_name(item_id: str, index: int, extension: str) -> str:
    """`<id>.<ext>` for an answer's first image, `<id>+2.<ext>` for the second, and so on."""
    if "/" in item_id or "\\" in item_id or item_id in ("", ".", "..") or "+" in item_id:
        raise ValueError(f"unsafe item id {item_id!r}")
    suffix = "" if index == 1 else f"+{index}"
    return f"{item_id}{suffix}.{extension}"


def write_image(output_dir: Path, item_id: str, index: int, mime_type: str, data: bytes) -> Path:
    """Write one image atomically and durably; returns its final path. Raises OSError on failure."""
    extension = IMAGE_EXTENSIONS[mime_type]
    final = output_dir / output_name(item_id, index, extension)
    if final.resolve().parent != output_dir.resolve():
        raise ValueError(f"{final} would leave the output folder")
    temp = output_dir / f".{final.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}"
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


def existing_outputs(output_dir: Path, item_id: str) -> list[Path]:
    """Files already at an item's final names (any image extension, first image)."""
    found = []
    for extension in sorted(set(IMAGE_EXTENSIONS.values())):
        candidate = output_dir / output_name(item_id, 1, extension)
        if candidate.exists():
            found.append(candidate)
    return found


def remove_stale_temps(output_dir: Path) -> int:
    """Delete temporary files a killed run left behind; returns how many."""
    removed = 0
    if not output_dir.is_dir():
        return 0
    for entry in output_dir.glob(f".*{TEMP_SUFFIX}"):
        try:
            entry.unlink()
            removed += 1
        except OSError:
            pass
    return removed
