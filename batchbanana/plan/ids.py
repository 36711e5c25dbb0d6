"""Work items' ids: the given id (its placeholders filled), or a short hash of the item's meaning;
`-1` .. `-N` for a repeat's variations; unique across the job. And the ids of an item's matrix
combinations (contract section 11): readable, stable, unique, valid.

A value becomes an id label by keeping letters, digits, '.' and '_' and writing every other run of
characters as one '-' ("red apple" -> "red-apple", "16:9" -> "16x9" for ratios); a value with
nothing left (all non-ASCII, say) is labelled by a short hash of it. A matrix combination adds its
labels to the item's id, in the matrix's order: `<id>-<label>-<label>`; Gemini models are written
without `gemini-` and `-image` (`gemini-3-pro-image-preview` -> `3-pro-preview`), seeds as
`seed42`, groundings as `ground-web-image`, thinking levels as `think-high`. Combinations whose ids
would still be equal each get a hash of their exact values; an id longer than 128 characters (with
room for a repeat's `-N`) is cut and ends with a hash of the whole, so it stays unique.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Container, Sequence
from dataclasses import dataclass, field
from typing import Any

from batchbanana.plan.checker import Checker
from batchbanana.plan.job import derived_id
from batchbanana.plan.plain_rows import RawItem

MAX_ID_LENGTH = 128
_OTHER = re.compile(r"[^A-Za-z0-9._]+")
_MODEL_NOISE = re.compile(r"^gemini-|-image(?=-|$)")
_PREFIXED = {"grounding": "ground", "thinking_level": "think"}  # a bare "high" says little


def _digest(text: str, length: int) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def value_label(value: str) -> str:
    """A variable's value as it is written in an id."""
    label = _OTHER.sub("-", value).strip("-.")
    return label or "h" + _digest(value, 6)


def axis_label(axis: str, value: str | int) -> str:
    """One matrix value as it is written in a combination's id."""
    if axis == "seed":
        return f"seed{value}"
    if axis in _PREFIXED:
        return f"{_PREFIXED[axis]}-{value_label(str(value))}"
    text = str(value)
    if axis == "model":
        text = _MODEL_NOISE.sub("", text) or text
    elif axis == "aspect_ratio":
        text = text.replace(":", "x")
    return value_label(text)


def fit_id(item_id: str, repeat: int) -> str:
    """The id cut to fit 128 characters with its repeat's `-N`, ending with a hash of the whole
    when cut (so two long ids that share a beginning stay apart)."""
    room = MAX_ID_LENGTH - (len(f"-{repeat}") if repeat > 1 else 0)
    if len(item_id) <= room:
        return item_id
    suffix = "-" + _digest(item_id, 8)
    return item_id[: room - len(suffix)].rstrip("-.") + suffix


def combination_ids(
    stems: Sequence[str],
    combinations: Sequence[Sequence[tuple[str, str | int]]],
    skip: Container[str] = (),
) -> list[str]:
    """`<stem>-<label>-...` for each combination (its stem: the item's id, filled for it), but
    for the axes in `skip` (variables its id already shows); ids that come out equal each get
    `-<hash of the combination's exact values>`."""
    ids = [
        "-".join([stem, *(axis_label(axis, value) for axis, value in combo if axis not in skip)])
        for stem, combo in zip(stems, combinations, strict=True)
    ]
    counts = Counter(ids)
    for index, item_id in enumerate(ids):
        if counts[item_id] > 1:
            exact = json.dumps(list(combinations[index]), ensure_ascii=False)
            ids[index] = f"{item_id}-{_digest(exact, 6)}"
    return ids


@dataclass(slots=True)
class IdBook:
    """The ids given so far (and where), and how often each derived id has been made."""

    # id -> where it was first used: its line when in `common` (the file most ids come from)
    first_use: dict[str, int | tuple[str, int | None]] = field(default_factory=dict)
    derived_count: dict[str, int] = field(default_factory=dict)
    common: str | None = None  # the items_file, whose rows are most of a large job

    def claim(self, item_id: str, raw: RawItem, checker: Checker) -> bool:
        """Take `item_id` for `raw`; False (and a problem) when an earlier item has it."""
        if self.claim_at(item_id, raw.source, raw.line):
            return True
        first = self.first_use[item_id]
        first_source, first_line = (self.common or "", first) if isinstance(first, int) else first
        at = f"{first_source}:{first_line}" if first_line else first_source
        checker.add_item(
            raw, "id", f"duplicate id {item_id!r} (first used at {at}); ids must be unique"
        )
        return False

    def claim_at(self, item_id: str, source: str, line: int | None) -> bool:
        """Take `item_id` for the item at this source and line; False when it is taken."""
        if item_id in self.first_use:
            return False
        if line is not None and source == self.common:
            self.first_use[item_id] = line
        else:
            self.first_use[item_id] = (source, line)
        return True

    def derived(self, meaning: dict[str, Any]) -> str:
        """A short hash of an item's meaning; exact duplicates get `-2`, `-3`."""
        base_id = derived_id(meaning)
        self.derived_count[base_id] = self.derived_count.get(base_id, 0) + 1
        count = self.derived_count[base_id]
        return f"{base_id}-{count}" if count > 1 else base_id


def repeat_ids(item_id: str, repeat: int) -> list[str]:
    """The id, or the ids of a repeat's variations `-1` .. `-N`."""
    if repeat == 1:
        return [item_id]
    return [f"{item_id}-{n}" for n in range(1, repeat + 1)]
