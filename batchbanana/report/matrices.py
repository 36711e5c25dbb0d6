"""`plan`'s lines about the items a matrix expanded: each one's lists, combinations, items and
cost, and (when there are few) the cost of each combination of the generation fields it varies."""

from __future__ import annotations

import math

from batchbanana.plan.job import Job
from batchbanana.plan.shape import Shape
from batchbanana.plan.variations import MATRIX_FIELDS
from batchbanana.plan.workitems import shapes_of
from batchbanana.rules.pricing import money


def _usd(amount: float) -> str:
    return f"${amount:.4f}"


_MATRICES_SHOWN = 50  # items whose expansion is listed; the rest are counted
_COMBINATIONS_SHOWN = 24  # per item: a longer list would drown the plan


def describe_matrices(job: Job) -> list[str]:
    """Each item a matrix expanded: its lists, combinations, items and cost, and (when there are
    few) the cost of each combination of the generation fields it varies."""
    expanded: dict[str, list[tuple[Shape, int]]] = {}
    for shape, count in shapes_of(job.items):
        if shape.variant_of is not None:
            expanded.setdefault(shape.variant_of, []).append((shape, count))
    if not expanded:
        return []
    count = sum(number for shapes in expanded.values() for _, number in shapes)
    lines = ["", f"matrices: {len(expanded)} item(s) expanded into {count} item(s)"]
    for shown, (name, shapes) in enumerate(expanded.items()):
        if shown == _MATRICES_SHOWN:
            lines.append(f"... and {len(expanded) - shown} more item(s) with a matrix")
            break
        lines.extend(_matrix_lines(name, shapes))
    return lines


def _matrix_lines(name: str, shapes: list[tuple[Shape, int]]) -> list[str]:
    axes: dict[str, dict[str, None]] = {}
    rows: dict[str, list[tuple[Shape, int]]] = {}
    for shape, count in shapes:
        for key, value in shape.matrix:
            axes.setdefault(key, {})[value] = None
        fields = " ".join(f"{key}={value}" for key, value in shape.matrix if key in MATRIX_FIELDS)
        rows.setdefault(fields, []).append((shape, count))
    combinations = math.prod(len(values) for values in axes.values())
    lists = " x ".join(f"{key} {len(values)}" for key, values in axes.items())
    items = sum(count for _, count in shapes)
    total = money(sum(_cost(shape, count) for shape, count in shapes))
    lines = [f"{name}: {lists} = {combinations} combination(s), {items} item(s), {_usd(total)}"]
    if "" not in rows and len(rows) <= _COMBINATIONS_SHOWN:
        for fields, members in rows.items():
            cost = money(sum(_cost(shape, count) for shape, count in members))
            number = sum(count for _, count in members)
            lines.append(f"  {fields:<60} {number:>7} {_usd(cost):>11}")
    return lines


def _cost(shape: Shape, count: int) -> float:
    """What `count` requests of this shape cost, added one by one as the items are."""
    price = shape.price.estimate_usd(shape.image_size)
    return sum(price for _ in range(count)) if count < 1000 else price * count
