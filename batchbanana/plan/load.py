"""YAML manifest -> validated settings and raw items, every problem at once, each at its place.

Each problem names the file and line it comes from (`file:line: item 'x': field: message`), with a
"did you mean" hint for a misspelt key, so a user fixes the whole manifest in one edit instead of
one error per run.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from batchbanana.plan.manifest import ITEM_KEYS, NESTED_KEYS, TOP_LEVEL_KEYS, Item, Manifest

Loc = tuple[str | int, ...]


@dataclass(slots=True)
class Problem:
    """One thing wrong with the input, placed as precisely as it can be."""

    source: str
    line: int | None
    where: str  # "" or "item 'x'" or "items[3]"
    field: str
    message: str

    def render(self) -> str:
        """`file:line: item 'x': field: message`."""
        parts = [f"{self.source}:{self.line}" if self.line else self.source]
        if self.where:
            parts.append(self.where)
        if self.field:
            parts.append(self.field)
        parts.append(self.message)
        return ": ".join(parts)


@dataclass(slots=True)
class LineMap:
    """Where each key and list entry of a YAML document starts (1-based lines)."""

    lines: dict[Loc, int] = field(default_factory=dict)

    def line_of(self, loc: Iterable[str | int]) -> int | None:
        """The line of the deepest known ancestor of `loc`."""
        path = tuple(loc)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)


def _refers_to_itself(data: Any) -> bool:
    """True when aliases make the document contain itself (it would never end)."""
    on_path: set[int] = set()
    done: set[int] = set()

    def visit(value: Any) -> bool:
        if not isinstance(value, dict | list) or id(value) in done:
            return False
        if id(value) in on_path:
            return True
        on_path.add(id(value))
        children = value.values() if isinstance(value, dict) else value
        found = any(visit(child) for child in children)
        on_path.discard(id(value))
        done.add(id(value))
        return found

    return visit(data)


def _map_lines(
    node: yaml.Node, path: Loc, out: dict[Loc, int], seen: set[int] | None = None
) -> None:
    seen = set() if seen is None else seen
    out.setdefault(path, node.start_mark.line + 1)
    if id(node) in seen:
        return  # an alias: its lines were mapped where the anchor is (and it may be recursive)
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key: str | int = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
            child = (*path, str(key))
            out[child] = key_node.start_mark.line + 1
            _map_lines(value_node, child, out, seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, value_node in enumerate(node.value):
            child = (*path, index)
            out[child] = value_node.start_mark.line + 1
            _map_lines(value_node, child, out, seen)


# libyaml's C parser when the installed PyYAML has it: a 100,000-row manifest parses in seconds.
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _parse_yaml(text: str) -> tuple[yaml.Node | None, Any]:
    """The node tree (for line numbers) and the data, from one parse."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    finally:
        loader.dispose()
    return root, data


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


def _field_name(loc: Loc) -> str:
    name = ""
    for part in loc:
        if isinstance(part, int):
            name += f"[{part}]"
        else:
            name += ("." if name else "") + part
    return name


def _suggest(key: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def _keys_at(loc: Loc, known_keys: Iterable[str]) -> Iterable[str]:
    """The keys allowed where an unknown key was found, for the "did you mean" hint."""
    parents = [part for part in loc[:-1] if isinstance(part, str)]
    if not parents:
        return known_keys
    return NESTED_KEYS.get(parents[0], ())


def _describe_error(error: Mapping[str, Any], known_keys: Iterable[str]) -> str:
    kind = error.get("type", "")
    loc = tuple(part for part in error.get("loc", ()) if not _is_union_tag(part))
    if kind == "extra_forbidden":
        key = str(loc[-1]) if loc else "?"
        return "unknown key" + _suggest(key, _keys_at(loc, known_keys))
    if kind == "missing":
        return "required"
    message = str(error.get("msg", "invalid"))
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    if kind == "literal_error":
        got = error.get("input")
        message = f"{got!r} is not allowed; {message[0].lower()}{message[1:]}"
    return message


def problems_from_validation(
    exc: ValidationError,
    source: str,
    lines: LineMap,
    base: Loc,
    where: str,
    known_keys: Iterable[str],
) -> list[Problem]:
    problems: list[Problem] = []
    for error in exc.errors():
        loc = tuple(part for part in error["loc"] if not _is_union_tag(part))
        shown = _field_name(loc)
        problems.append(
            Problem(
                source,
                lines.line_of((*base, *loc)),
                where,
                shown,
                _describe_error(error, known_keys),
            )
        )
    return _dedupe(problems)


def _is_union_tag(part: str | int) -> bool:
    # pydantic names the union branch or validator it went through ("str", "ImageEntry",
    # "function-after[...]"); users never wrote those.
    return isinstance(part, str) and (
        part in {"str", "int", "float"}
        or part[:1].isupper()
        or part.startswith(("function-", "literal["))
    )


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen: set[str] = set()
    unique = []
    for problem in problems:
        text = problem.render()
        if text not in seen:
            seen.add(text)
            unique.append(problem)
    return unique


def item_label(raw: Any, index: int) -> str:
    """How an item is named in messages: its id when written, else its position."""
    if isinstance(raw, dict) and isinstance(raw.get("id"), str | int):
        return f"item '{raw['id']}'"
    return f"items[{index}]"


def load_manifest(path: Path) -> tuple[LoadedManifest | None, list[Problem]]:
    """Read and schema-check a manifest; returns what validated and every problem found."""
    source = str(path)
    try:
        text_bytes = path.read_bytes()
    except FileNotFoundError:
        return None, [Problem(source, None, "", "", "no such manifest file")]
    except OSError as exc:
        return None, [Problem(source, None, "", "", f"cannot read: {exc.strerror}")]
    try:
        text = text_bytes.decode("utf-8")
    except UnicodeDecodeError:
        return None, [Problem(source, None, "", "", "not UTF-8 text")]
    try:
        root, data = _parse_yaml(text)
    except RecursionError:
        return None, [Problem(source, None, "", "", "YAML nests too deeply (a recursive alias?)")]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return None, [Problem(source, line, "", "", f"not valid YAML: {reason}")]
    if _refers_to_itself(data):
        return None, [Problem(source, None, "", "", "a YAML alias refers to itself (&x ... *x)")]
    lines = LineMap()
    if root is not None:
        _map_lines(root, (), lines.lines)
    if not isinstance(data, dict):
        return None, [
            Problem(source, 1, "", "", "a manifest is a YAML mapping with `version: 1` and `items`")
        ]
    problems: list[Problem] = []
    raw_items = data.get("items", [])
    top = {key: value for key, value in data.items() if key != "items"}
    top = {str(key): value for key, value in top.items()}
    manifest: Manifest | None = None
    try:
        manifest = Manifest.model_validate(top)
    except ValidationError as exc:
        problems.extend(problems_from_validation(exc, source, lines, (), "", TOP_LEVEL_KEYS))
        # Check the rest of the manifest without the broken keys, so one pass reports everything
        # (model rules, files) rather than one layer of problems per run.
        broken = {str(error["loc"][0]) for error in exc.errors() if error["loc"]}
        try:
            manifest = Manifest.model_validate(
                {key: value for key, value in top.items() if key not in broken}
            )
        except ValidationError:
            manifest = None

    items: list[tuple[int, Item]] = []
    if raw_items is None:
        raw_items = []
    if not isinstance(raw_items, list):
        problems.append(Problem(source, lines.line_of(("items",)), "", "items", "must be a list"))
        raw_items = []
    for index, raw in enumerate(raw_items):
        where = item_label(raw, index)
        try:
            items.append((index, Item.model_validate(raw)))
        except ValidationError as exc:
            problems.extend(
                problems_from_validation(exc, source, lines, ("items", index), where, ITEM_KEYS)
            )
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
