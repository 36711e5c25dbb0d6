"""`items_file`: items from a .csv or .jsonl file beside the manifest (contract section 2).

Columns (or keys) are those of `items`, and the variables declared in the top-level `vars`, whose
cells fill the row's `{{name}}` placeholders; in a CSV, `images` and `response_modalities` are
';'-separated and an empty cell takes the default. The file is UTF-8 (a byte-order mark is fine)
unless `items_file_encoding` names another encoding. Every problem names the file and its line.
The rows are read as the file is, never all at once; a CSV row that nothing varies comes as a
PlainRow (plain_rows.py), any other as a RawItem read by the Item model.
"""

from __future__ import annotations

import codecs
import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TextIO

from pydantic import ValidationError

from batchbanana.plan.load import LoadedManifest
from batchbanana.plan.manifest import ITEM_KEYS, Item
from batchbanana.plan.plain_rows import (
    PlainRow,
    RawItem,
    plain_json_row,
    plain_layout,
    plain_row,
)
from batchbanana.plan.problems import Problem, problems_from_validation
from batchbanana.plan.yaml_lines import LineMap


def read_items_file(
    loaded: LoadedManifest, problems: list[Problem]
) -> Iterator[RawItem | PlainRow]:
    """The items of the manifest's .csv or .jsonl items file, in order, read as the file is;
    each problem (naming the file and line) is added to `problems` and its row skipped. A CSV
    row that nothing varies comes as a PlainRow (plan/plain.py plans it in bulk)."""
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
    encoding = loaded.manifest.items_file_encoding
    if _decoded(data, display, encoding, problems) is None:
        return
    del data  # read again as a stream: a million rows are never all in memory at once
    if codecs.lookup(encoding).name == "utf-8":
        encoding = "utf-8-sig"  # Excel's "CSV UTF-8" starts with a byte-order mark
    rows = _Rows(display, tuple(loaded.manifest.vars), problems)
    try:
        handle = path.open(encoding=encoding, newline="")
    except OSError as exc:
        about_the_setting(f"cannot read ({exc.strerror})")
        return
    with handle:
        try:
            yield from read_rows(handle, rows)
        except UnicodeError as exc:  # a stream decoder can refuse what a whole-file decode took
            about_the_setting(f"cannot be read as {encoding} ({exc})")


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


@dataclass(frozen=True, slots=True)
class _Rows:
    """What reading rows needs: the file's name, the declared variables, the problems so far."""

    display: str
    variables: tuple[str, ...]
    problems: list[Problem]


# Item keys whose values are mappings: a CSV cell cannot hold one (a .jsonl row can).
_NOT_COLUMNS = ("vars", "matrix")
_VARS_HINT = (
    "HINT: a column that fills {{name}} placeholders must be declared in the top-level `vars`"
    " (e.g. vars: {%s: null}, or with a default value)"
)


def _csv_rows(handle: TextIO, rows: _Rows) -> Iterator[RawItem | PlainRow]:
    reader = csv.reader(handle)
    header = next(reader, None) or []
    columns = [key for key in ITEM_KEYS if key not in _NOT_COLUMNS] + list(rows.variables)
    unknown = [name for name in header if name not in columns]
    if unknown:
        rows.problems.append(
            Problem(
                rows.display,
                1,
                "",
                "",
                f"unknown column(s) {', '.join(unknown)}; known: {', '.join(columns)};"
                f" {_VARS_HINT % unknown[0]}",
            )
        )
        return
    layout = plain_layout(header)
    start = 2
    for row, line_num in _records(reader):
        line = start  # as csv.DictReader counted (a blank line before a row is its line)
        start = line_num + 1
        plain = layout and len(row) == len(header) and plain_row(row, layout, rows.display, line)
        if plain:
            yield plain
            continue
        record: dict[str | None, Any] = dict(zip(header, row, strict=False))
        if len(row) > len(header):
            record[None] = row[len(header) :]
        values = _csv_values(record, rows.display, line, rows.problems)
        if values is not None:
            yield from _validated(values, line, rows)


def _records(reader: Any) -> Iterator[tuple[list[str], int]]:
    """Each record and the line number csv.DictReader gives it (blank records are skipped)."""
    for row in reader:
        line_num = reader.line_num
        while row == []:
            row = next(reader, None)
            if row is None:
                return
        yield row, line_num


def _csv_values(
    row: dict[str | None, Any], display: str, line: int, problems: list[Problem]
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


def _jsonl_rows(handle: TextIO, rows: _Rows) -> Iterator[RawItem | PlainRow]:
    display, problems = rows.display, rows.problems
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
        plain = plain_json_row(values, rows.variables, display, number)
        if plain:
            yield plain
        else:
            yield from _validated(values, number, rows)


_READERS: dict[str, Callable[[TextIO, _Rows], Iterator[RawItem | PlainRow]]] = {
    ".csv": _csv_rows,
    ".jsonl": _jsonl_rows,
}


def _validated(values: dict[str, Any], line: int, rows: _Rows) -> Iterator[RawItem]:
    """The row as an item, its declared variables' cells moved into its `vars`."""
    where = f"item '{values['id']}'" if isinstance(values.get("id"), str) else ""
    cells = {name: values.pop(name) for name in rows.variables if name in values}
    if cells:
        own = values.get("vars")
        values["vars"] = {**own, **cells} if isinstance(own, dict) else cells
    try:
        yield RawItem(Item.model_validate(values), rows.display, line, where)
    except ValidationError as exc:
        lines = LineMap({(): line})
        known = ITEM_KEYS + rows.variables
        for problem in problems_from_validation(exc, rows.display, lines, (), where, known):
            if problem.message.startswith("unknown key") and "." not in problem.field:
                problem.message += f"; {_VARS_HINT % problem.field}"
            rows.problems.append(problem)
