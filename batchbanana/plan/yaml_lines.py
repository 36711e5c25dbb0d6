"""Parse a manifest's YAML once into its data and a map of the line each key and entry starts on,
so that every problem can be placed at its file:line."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

Loc = tuple[str | int, ...]


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


def refers_to_itself(data: Any) -> bool:
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


def map_lines(root: yaml.Node | None) -> LineMap:
    """The line of every key and list entry under `root` (an empty map for an empty document)."""
    lines = LineMap()
    if root is not None:
        _map_lines(root, (), lines.lines)
    return lines


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


def parse_yaml(text: str) -> tuple[yaml.Node | None, Any]:
    """The node tree (for line numbers) and the data, from one parse."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    finally:
        loader.dispose()
    return root, data
