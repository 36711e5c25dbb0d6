"""Problems with the input as the user reads them: one line each, `file:line: item 'x': field:
message`, and pydantic's validation errors turned into such lines, with a "did you mean" hint for a
misspelt key."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from batchbanana.plan.manifest import NESTED_KEYS
from batchbanana.plan.yaml_lines import LineMap, Loc


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


def item_label(raw: Any, index: int) -> str:
    """How an item is named in messages: its id when written, else its position."""
    if isinstance(raw, dict) and isinstance(raw.get("id"), str | int):
        return f"item '{raw['id']}'"
    return f"items[{index}]"


def problems_from_validation(
    exc: ValidationError,
    source: str,
    lines: LineMap,
    base: Loc,
    where: str,
    known_keys: Iterable[str],
) -> list[Problem]:
    """One problem per pydantic error, at the line of the key it is about (`base` + its loc)."""
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


def _is_union_tag(part: str | int) -> bool:
    # pydantic names the union branch or validator it went through ("str", "ImageEntry",
    # "function-after[...]"), or "[key]" for a mapping's key; users never wrote those.
    return isinstance(part, str) and (
        part in {"str", "int", "float", "[key]"}
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
