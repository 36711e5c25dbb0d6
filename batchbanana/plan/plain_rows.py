"""Items before expansion: a RawItem (a validated Item and where it was written), or a PlainRow,
an items_file row that nothing varies, checked here as the Item model would check it, without
building one (a million rows plan in seconds; plan/plain.py plans them).

A row is plain when its cells (or a .jsonl row's keys) are only among PLAIN_COLUMNS and each
passes the very checks the Item model makes (no NUL, an id of the id's form, a size as written in
the rules, a ratio, a seed), with no placeholder anywhere; a .jsonl value must be null or text
(a seed also a whole number). Any other row is read by the Item model as before, so a
plain row and the same row read by the model make the same item (tests/test_plain_rows.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from batchbanana.plan.manifest import ID_PATTERN, Item
from batchbanana.plan.values import check_ratio, coerce_seed
from batchbanana.rules.models import ALL_SIZES


@dataclass(slots=True)
class RawItem:
    """An item before expansion, with where it came from."""

    item: Item
    source: str
    line: int | None
    where: str


# (file, line, id, prompt, model, image_size, aspect_ratio, system_prompt, seed): a field the
# row leaves empty is None (the manifest's value, or the default, applies).
PlainRow = tuple[
    str, int, str | None, str, str | None, str | None, str | None, str | None, int | None
]
PLAIN_COLUMNS = ("id", "prompt", "model", "image_size", "aspect_ratio", "system_prompt", "seed")
_SIZES = frozenset(ALL_SIZES)
_PLAIN = frozenset(PLAIN_COLUMNS)


def plain_layout(header: Sequence[str]) -> tuple[int, ...] | None:
    """For each of PLAIN_COLUMNS, its position in the header (-1: absent); None when a column
    is not one of them (or is given twice), so no row of the file is plain."""
    if not header or len(set(header)) != len(header) or "prompt" not in header:
        return None
    if any(name not in PLAIN_COLUMNS for name in header):
        return None
    return tuple(header.index(name) if name in header else -1 for name in PLAIN_COLUMNS)


def plain_row(row: list[str], layout: tuple[int, ...], display: str, line: int) -> PlainRow | None:
    """The row as a PlainRow, or None when it is not plain (the Item model reads it then)."""
    values: list[str | None] = []
    for position in layout:
        cell = row[position] if position >= 0 else None
        if cell is not None and (not cell.strip() or "\x00" in cell):
            if cell.strip():
                return None  # a NUL: the model says so
            cell = None  # an empty cell takes the default
        values.append(cell)
    item_id, prompt, model, image_size, aspect_ratio, system_prompt, seed = values
    if prompt is None or "{{" in prompt or len(prompt) > 1_000_000:
        return None
    if item_id is not None and ("{{" in item_id or not ID_PATTERN.match(item_id)):
        return None
    if image_size is not None and image_size not in _SIZES:
        return None
    if system_prompt is not None and "{{" in system_prompt:
        return None
    number: int | None = None
    try:
        if aspect_ratio is not None:
            check_ratio(aspect_ratio)
        if seed is not None:
            number = coerce_seed(seed)
    except ValueError:
        return None
    return (display, line, item_id, prompt, model, image_size, aspect_ratio, system_prompt, number)


def plain_json_row(
    values: dict[str, Any], variables: Sequence[str], display: str, line: int
) -> PlainRow | None:
    """A .jsonl row as a PlainRow, or None when it is not plain. Its values are JSON's: a field
    is plain when it is null (or absent), or text the model keeps as it is (a seed may also be a
    whole number); any other type is left to the model."""
    if not values.keys() <= _PLAIN or any(name in values for name in variables):
        return None
    found: list[str | None] = []
    for name in PLAIN_COLUMNS[:6]:
        value = values.get(name)
        if value is not None and (type(value) is not str or "\x00" in value):
            return None
        found.append(value)
    item_id, prompt, model, image_size, aspect_ratio, system_prompt = found
    seed = values.get("seed")
    if prompt is None or not prompt or "{{" in prompt or len(prompt) > 1_000_000:
        return None
    if item_id is not None and ("{{" in item_id or not ID_PATTERN.match(item_id)):
        return None
    if image_size is not None and image_size not in _SIZES:
        return None
    if system_prompt is not None and "{{" in system_prompt:
        return None
    try:
        if aspect_ratio is not None:
            check_ratio(aspect_ratio)
        number = coerce_seed(seed) if type(seed) in (str, int) else None
    except ValueError:
        return None
    if seed is not None and number is None:
        return None
    return (display, line, item_id, prompt, model, image_size, aspect_ratio, system_prompt, number)


def raw_item(row: PlainRow) -> RawItem:
    """The RawItem the Item model makes of a plain row (for the items a plain row cannot be
    planned without: one with a problem to name)."""
    display, line, item_id, prompt, model, image_size, aspect_ratio, system_prompt, seed = row
    values = {
        "id": item_id,
        "prompt": prompt,
        "model": model,
        "image_size": image_size,
        "aspect_ratio": aspect_ratio,
        "system_prompt": system_prompt,
        "seed": seed,
    }
    item = Item.model_validate({key: value for key, value in values.items() if value is not None})
    return RawItem(item, display, line, f"item '{item_id}'" if item_id is not None else "")
