"""`items_file`: items from a .csv or .jsonl file beside the manifest (contract section 2).

Columns (or keys) are those of `items`; in a CSV, `images` and `response_modalities` are
';'-separated and an empty cell takes the default. The file is UTF-8 (a byte-order mark is fine)
unless `items_file_encoding` names another encoding. Every problem names the file and its line.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from batchbanana.plan.load import LoadedManifest
from batchbanana.plan.manifest import ITEM_KEYS, Item
from batchbanana.plan.problems import Problem, problems_from_validation
from batchbanana.plan.yaml_lines import LineMap


@dataclass(slots=True)
class RawItem:
    """An item before expansion, with where it came from."""

    item: Item
    source: str
    line: int | None
    where: str


def read_items_file(loaded: LoadedManifest, problems: list[Problem]) -> Iterator[RawItem]:
    """The items of the manifest's .csv or .jsonl items file, in order; each problem (naming the
    file and line) is added to `problems` and its row skipped."""
    display = loaded.manifest.items_file
    if not display:
        return
    path = (loaded.base_dir / display).resolve()

    def about_the_setting(message: str) -> None:
        line = loaded.lines.line_of(("items_file",))
        problems.append(Problem(loaded.source, line, "", "items_file", f"{display}: {message}"))

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        about_the_setting("no such file; HINT: the path is relative to the manifest's folder")
        return
    except OSError as exc:
        about_the_setting(f"cannot read ({exc.strerror})")
        return
    read_rows = _READERS.get(path.suffix.lower())
    if read_rows is None:
        about_the_setting("use a .csv or .jsonl file")
        return
    text = _decoded(data, display, loaded.manifest.items_file_encoding, problems)
    if text is not None:
        yield from read_rows(io.StringIO(text, newline=""), display, problems)


def _decoded(data: bytes, display: str, encoding: str, problems: list[Problem]) -> str | None:
    """The file's text, or None (and a problem at the first undecodable byte's line)."""
    utf8 = codecs.lookup(encoding).name == "utf-8"
    if utf8 and data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]  # Excel's "CSV UTF-8" starts with a byte-order mark
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        line = data.count(b"\n", 0, exc.start) + 1
        column = len(data[line_start : exc.start].decode(encoding, errors="replace")) + 1
        name = "UTF-8" if utf8 else encoding
        hint = (
            "save it as UTF-8, or name the encoding it was saved in, e.g."
            " items_file_encoding: gb18030 (Chinese Excel), shift_jis or cp1252"
            if utf8
            else f"is {encoding} the encoding it was saved in? check items_file_encoding,"
            " or save the file as UTF-8 and remove the setting"
        )
        problem = f"not {name} (byte 0x{data[exc.start]:02x} at column {column}); HINT: {hint}"
        problems.append(Problem(display, line, "", "", problem))
        return None


def _csv_rows(handle: io.StringIO, display: str, problems: list[Problem]) -> Iterator[RawItem]:
    reader = csv.DictReader(handle)
    header = reader.fieldnames or []
    unknown = [name for name in header if name not in ITEM_KEYS]
    if unknown:
        problems.append(
            Problem(
                display,
                1,
                "",
                "",
                f"unknown column(s) {', '.join(unknown)}; known: {', '.join(ITEM_KEYS)}",
            )
        )
        return
    start = 2
    for row in reader:
        line = start
        start = reader.line_num + 1
        values = _csv_values(row, display, line, problems)
        if values is not None:
            yield from _validated(values, display, line, problems)


def _csv_values(
    row: dict[str | Any, str | Any], display: str, line: int, problems: list[Problem]
) -> dict[str, Any] | None:
    """A row's non-empty cells as item fields (lists split on ';'), or None if it is too long."""
    values: dict[str, Any] = {}
    for key, value in row.items():
        if key is None:
            problems.append(Problem(display, line, "", "", "more cells than columns"))
            return None
        if value is None or value.strip() == "":
            continue
        if key in ("images", "response_modalities"):
            values[key] = [part.strip() for part in value.split(";") if part.strip()]
        else:
            values[key] = value
    return values


def _jsonl_rows(handle: io.StringIO, display: str, problems: list[Problem]) -> Iterator[RawItem]:
    for number, text in enumerate(handle, start=1):
        if not text.strip():
            continue
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            problems.append(Problem(display, number, "", "", f"not JSON: {exc.msg}"))
            continue
        if not isinstance(values, dict):
            problems.append(Problem(display, number, "", "", "not a JSON object"))
            continue
        yield from _validated(values, display, number, problems)


_READERS: dict[str, Callable[[io.StringIO, str, list[Problem]], Iterator[RawItem]]] = {
    ".csv": _csv_rows,
    ".jsonl": _jsonl_rows,
}


def _validated(
    values: dict[str, Any], display: str, line: int, problems: list[Problem]
) -> Iterator[RawItem]:
    where = f"item '{values['id']}'" if isinstance(values.get("id"), str) else ""
    try:
        yield RawItem(Item.model_validate(values), display, line, where)
    except ValidationError as exc:
        rows = LineMap({(): line})
        problems.extend(problems_from_validation(exc, display, rows, (), where, ITEM_KEYS))
