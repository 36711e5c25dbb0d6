"""`items_file`: items from a .csv or .jsonl file beside the manifest (contract section 2).

Columns (or keys) are those of `items`; in a CSV, `images` and `response_modalities` are
';'-separated and an empty cell takes the default. Every problem names the file and its line.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

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


def read_items_file(
    path: Path, display: str, manifest_source: str, problems: list[Problem]
) -> Iterator[RawItem]:
    """The items of a .csv or .jsonl items file, in order; each problem (naming the file and
    line) is added to `problems` and its row skipped."""
    suffix = path.suffix.lower()
    try:
        handle = path.open("r", encoding="utf-8-sig", newline="")  # Excel writes a BOM
    except OSError as exc:
        problems.append(
            Problem(
                manifest_source, None, "", "items_file", f"{display}: cannot read ({exc.strerror})"
            )
        )
        return
    with handle:
        if suffix == ".csv":
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
                values: dict[str, Any] = {}
                for key, value in row.items():
                    if key is None:
                        problems.append(Problem(display, line, "", "", "more cells than columns"))
                        break
                    if value is None or value.strip() == "":
                        continue
                    if key in ("images", "response_modalities"):
                        values[key] = [part.strip() for part in value.split(";") if part.strip()]
                    else:
                        values[key] = value
                else:
                    yield from _validated(values, display, line, problems)
        elif suffix == ".jsonl":
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
        else:
            problems.append(
                Problem(
                    manifest_source, None, "", "items_file", f"{display}: use a .csv or .jsonl file"
                )
            )


def _validated(
    values: dict[str, Any], display: str, line: int, problems: list[Problem]
) -> Iterator[RawItem]:
    where = f"item '{values['id']}'" if isinstance(values.get("id"), str) else ""
    try:
        yield RawItem(Item.model_validate(values), display, line, where)
    except ValidationError as exc:
        rows = LineMap({(): line})
        problems.extend(problems_from_validation(exc, display, rows, (), where, ITEM_KEYS))
