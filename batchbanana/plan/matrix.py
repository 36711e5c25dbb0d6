"""An item's matrix (contract section 11): the top-level `matrix` and the item's own merged into
axes, checked, and multiplied out into combinations.

Merging is key by key: an item's own key replaces the top-level key of that name in its place, its
other keys follow. A field the item sets itself (`model: x`, an items_file cell) or a variable its
own `vars` give pins that key: the top-level list does not apply to it. A top-level variable that
none of the item's texts use is left out for that item (it would only repeat its requests).
Combinations come in the order of the axes, the last varying fastest, values in the order listed.
"""

from __future__ import annotations

import difflib
import itertools
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from batchbanana.plan.checker import Checker
from batchbanana.plan.manifest import Item, Manifest
from batchbanana.plan.plain_rows import RawItem
from batchbanana.plan.templates import Template, parse_template
from batchbanana.plan.variations import MATRIX_FIELDS, MatrixValue
from batchbanana.plan.yaml_lines import Loc

MAX_REQUESTS_PER_ITEM = 10_000  # combinations x repeat, as `repeat` alone allows
Combination = tuple[tuple[str, MatrixValue], ...]


@dataclass(frozen=True, slots=True)
class Axis:
    """One key of an item's matrix and the values it takes."""

    name: str
    values: tuple[MatrixValue, ...]

    @property
    def is_field(self) -> bool:
        """True for a generation field (model, image_size, aspect_ratio, seed, grounding,
        thinking_level)."""
        return self.name in MATRIX_FIELDS


def combinations(axes: tuple[Axis, ...]) -> Iterator[Combination]:
    """Every combination of the axes' values: the last axis varies fastest."""
    names = [axis.name for axis in axes]
    for values in itertools.product(*(axis.values for axis in axes)):
        yield tuple(zip(names, values, strict=True))


def _pins(item: Item, name: str) -> bool:
    """True when the item gives `name` a value itself (a field, or a variable in its vars)."""
    if name in MATRIX_FIELDS:
        return getattr(item, name) is not None
    return item.vars is not None and item.vars.get(name) is not None


def item_axes(
    raw: RawItem, manifest: Manifest, used: set[str], checker: Checker
) -> tuple[Axis, ...] | None:
    """The item's axes (`used`: the variables its texts use), or None (and problems) when its
    matrix contradicts itself or the item, or makes too many requests."""
    item = raw.item
    top = manifest.matrix.axes() if manifest.matrix else ()
    own = dict(item.matrix.axes()) if item.matrix else {}
    ok = True
    for name in own:
        if _pins(item, name):
            written = name if name in MATRIX_FIELDS else f"vars.{name}"
            checker.add_item(
                raw, f"matrix.{name}", f"the item also sets {written}; keep one of the two"
            )
            ok = False
        elif name not in MATRIX_FIELDS and name not in used:
            checker.add_item(raw, f"matrix.{name}", unused_variable(name, used))
            ok = False
    axes = [
        Axis(name, own.pop(name) if name in own else values)
        for name, values in top
        if name in own or (not _pins(item, name) and (name in MATRIX_FIELDS or name in used))
    ]
    axes.extend(Axis(name, values) for name, values in own.items())
    count = math.prod(len(axis.values) for axis in axes) * item.repeat
    if count > MAX_REQUESTS_PER_ITEM:
        sizes = " x ".join(f"{axis.name} {len(axis.values)}" for axis in axes)
        checker.add_item(
            raw,
            "matrix",
            f"{sizes} x repeat {item.repeat} makes {count} requests; at most"
            f" {MAX_REQUESTS_PER_ITEM} per item; HINT: split it into several items",
        )
        ok = False
    return tuple(axes) if ok else None


def unused_variable(name: str, used: Iterable[str]) -> str:
    """The problem of a matrix key that is neither a field nor a variable any text uses."""
    close = difflib.get_close_matches(name, [*MATRIX_FIELDS, *used], n=1, cutoff=0.6)
    guess = f"did you mean {close[0]}? " if close else ""
    return (
        f"no {{{{{name}}}}} in the prompt, system_prompt or id uses it; HINT: {guess}a matrix"
        f" varies {', '.join(MATRIX_FIELDS)} and variables the item's texts use"
    )


def texts_of(item: Item, manifest: Manifest) -> Iterator[Template]:
    """The item's texts that may hold placeholders, those that parse."""
    system_prompt = item.system_prompt if item.system_prompt is not None else manifest.system_prompt
    for text in (item.prompt, system_prompt, item.id):
        template = parse_template(text) if text is not None else None
        if isinstance(template, Template):
            yield template


def check_top_level_matrix(
    manifest: Manifest,
    items: Iterable[Item],
    line_of: Callable[[Loc], int | None],
    checker: Checker,
) -> None:
    """The top-level matrix: no key also given a value at the top level, and each variable used
    by some item's texts; each problem once, at its line."""
    if manifest.matrix is None:
        return
    used = {
        name for item in items for template in texts_of(item, manifest) for name in template.names
    }
    for name, _ in manifest.matrix.axes():
        line = line_of(("matrix", name))
        given = getattr(manifest, name) if name in MATRIX_FIELDS else manifest.vars.get(name)
        if given is not None:
            written = name if name in MATRIX_FIELDS else f"vars.{name}"
            checker.add(line, "", f"matrix.{name}", f"{written} is also given; keep one of the two")
        elif name not in MATRIX_FIELDS and name not in used:
            checker.add(line, "", f"matrix.{name}", unused_variable(name, used))
