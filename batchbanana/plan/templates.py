"""`{{name}}` placeholders in a prompt, a system prompt or an id (contract section 11): a text is
parsed once into literal pieces and variable names, then filled for each item and combination.

`{{ name }}` (spaces inside the braces allowed) is a placeholder; `\\{{` is a literal `{{`; any
other `{{` is a mistake the user is told about, never sent as written. A text without `{{` is
itself, unchanged, so prompts written before templates existed mean what they meant.
"""

from __future__ import annotations

import re
from collections.abc import Container, Mapping
from dataclasses import dataclass

# An escaped `{{`, a placeholder, or a `{{` that opens none (in this order of preference).
_TOKEN = re.compile(r"\\\{\{|\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}|\{\{")
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


@dataclass(frozen=True, slots=True)
class Template:
    """A text as literal pieces with a variable's name between each two: (lit, name, lit, ...)."""

    pieces: tuple[str, ...]

    @property
    def names(self) -> tuple[str, ...]:
        """The variables it uses, in order of first use."""
        return tuple(dict.fromkeys(self.pieces[1::2]))

    def fill(self, values: Mapping[str, str], keep: Container[str] = ()) -> str:
        """The text with each placeholder replaced by its value; those named in `keep` are
        written back as `{{name}}` (an item's meaning before its matrix is applied)."""
        out: list[str] = []
        for index, piece in enumerate(self.pieces):
            if index % 2 == 0:
                out.append(piece)
            elif piece in keep:
                out.append("{{" + piece + "}}")
            else:
                out.append(values[piece])
        return "".join(out)


def parse_template(text: str) -> Template | str:
    """The text as a Template, or why it is not one (a `{{` that opens no placeholder)."""
    if "{{" not in text:
        return Template((text,))
    pieces: list[str] = []
    literal: list[str] = []
    position = 0
    for match in _TOKEN.finditer(text):
        literal.append(text[position : match.start()])
        position = match.end()
        if match.group(0) == "\\{{":
            literal.append("{{")
        elif match.group(1) is not None:
            pieces.extend(("".join(literal), match.group(1)))
            literal = []
        else:
            shown = text[match.start() : match.start() + 24]
            return (
                f"{shown!r}: '{{{{' opens no placeholder; HINT: write {{{{name}}}} with a"
                " variable's name (letters, digits, '_'), or \\{{ for a literal '{{'"
            )
    literal.append(text[position:])
    pieces.append("".join(literal))
    return Template(tuple(pieces))


def id_shape(text: str) -> str:
    """An id as written with each placeholder standing for one letter, to check its literal
    characters before any value is known."""
    return PLACEHOLDER.sub("x", text)
