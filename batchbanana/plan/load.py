"""YAML manifest -> validated settings and raw items, every problem at once, each at its place.

Each problem names the file and line it comes from (`file:line: item 'x': field: message`), with a
"did you mean" hint for a misspelt key, so a user fixes the whole manifest in one edit instead of
one error per run.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from batchbanana.errors import ManifestUnreadable
from batchbanana.plan.manifest import ITEM_KEYS, TOP_LEVEL_KEYS, Item, Manifest
from batchbanana.plan.problems import Problem, item_label, problems_from_validation
from batchbanana.plan.yaml_lines import LineMap, map_lines, parse_yaml, refers_to_itself


@dataclass(slots=True)
class LoadedManifest:
    """A manifest that passed the schema: its settings, raw items and where they came from."""

    path: Path
    sha256: str
    manifest: Manifest
    lines: LineMap
    items: list[tuple[int, Item]]  # (index in `items`, item) for the items that passed the schema

    @property
    def source(self) -> str:
        """The manifest's path as the user gave it, for messages."""
        return str(self.path)

    @property
    def base_dir(self) -> Path:
        """The folder that the manifest's relative paths are relative to."""
        return self.path.parent.resolve()


def load_manifest(path: Path) -> tuple[LoadedManifest | None, list[Problem]]:
    """Read and schema-check a manifest; returns what validated and every problem found."""
    source = str(path)
    try:
        text_bytes = _read_bytes(path)
        data, lines = _read_document(text_bytes)
    except ManifestUnreadable as exc:
        return None, [Problem(source, exc.line, "", "", exc.message)]
    problems: list[Problem] = []
    manifest = _validated_settings(data, source, lines, problems)
    raw_items = _raw_items(data, source, lines, problems)
    items = _validated_items(raw_items, source, lines, problems)
    if manifest is not None and not raw_items and manifest.items_file is None:
        problems.append(
            Problem(
                source,
                lines.line_of(()),
                "",
                "items",
                "the job has no items (give `items` or `items_file`)",
            )
        )
    if manifest is None:
        return None, problems
    loaded = LoadedManifest(
        path=path,
        sha256=hashlib.sha256(text_bytes).hexdigest(),
        manifest=manifest,
        lines=lines,
        items=items,
    )
    return loaded, problems


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ManifestUnreadable("no such manifest file") from None
    except OSError as exc:
        raise ManifestUnreadable(f"cannot read: {exc.strerror}") from None


def _read_document(text_bytes: bytes) -> tuple[dict[Any, Any], LineMap]:
    """The manifest's mapping and the line of each of its keys and entries."""
    try:
        text = text_bytes.decode("utf-8")
    except UnicodeDecodeError:
        raise ManifestUnreadable("not UTF-8 text") from None
    try:
        root, data = parse_yaml(text)
    except RecursionError:
        raise ManifestUnreadable("YAML nests too deeply (a recursive alias?)") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ManifestUnreadable(f"not valid YAML: {reason}", line) from None
    if refers_to_itself(data):
        raise ManifestUnreadable("a YAML alias refers to itself (&x ... *x)")
    lines = map_lines(root)
    if not isinstance(data, dict):
        raise ManifestUnreadable("a manifest is a YAML mapping with `version: 1` and `items`", 1)
    return data, lines


def _validated_settings(
    data: dict[Any, Any], source: str, lines: LineMap, problems: list[Problem]
) -> Manifest | None:
    """The top-level settings; their problems are added to `problems`."""
    top = {key: value for key, value in data.items() if key != "items"}
    top = {str(key): value for key, value in top.items()}
    try:
        return Manifest.model_validate(top)
    except ValidationError as exc:
        problems.extend(problems_from_validation(exc, source, lines, (), "", TOP_LEVEL_KEYS))
        # Check the rest of the manifest without the broken keys, so one pass reports everything
        # (model rules, files) rather than one layer of problems per run.
        broken = {str(error["loc"][0]) for error in exc.errors() if error["loc"]}
    try:
        return Manifest.model_validate(
            {key: value for key, value in top.items() if key not in broken}
        )
    except ValidationError:
        return None


def _raw_items(
    data: dict[Any, Any], source: str, lines: LineMap, problems: list[Problem]
) -> list[Any]:
    raw_items = data.get("items", [])
    if raw_items is None:
        return []
    if not isinstance(raw_items, list):
        problems.append(Problem(source, lines.line_of(("items",)), "", "items", "must be a list"))
        return []
    return raw_items


def _validated_items(
    raw_items: list[Any], source: str, lines: LineMap, problems: list[Problem]
) -> list[tuple[int, Item]]:
    """(index, item) for each item that passes the schema; the others' problems are added."""
    items: list[tuple[int, Item]] = []
    for index, raw in enumerate(raw_items):
        try:
            items.append((index, Item.model_validate(raw)))
        except ValidationError as exc:
            where = item_label(raw, index)
            problems.extend(
                problems_from_validation(exc, source, lines, ("items", index), where, ITEM_KEYS)
            )
    return items
