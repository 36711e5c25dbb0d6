"""One manifest value at a time, checked with the message a user reads: an image size, an aspect
ratio, a seed, a grounding, a thinking level, a template variable's name and value. generation.py
and variations.py build their fields from these checks, so a value means the same wherever it is
written (a field, an items_file cell, a matrix list)."""

from __future__ import annotations

import re
from typing import Any, Literal

from batchbanana.rules.models import ALL_SIZES, GROUNDINGS, THINKING_LEVELS

ImageSize = Literal["512", "1K", "2K", "4K"]
Grounding = Literal["none", "web", "web+image"]
ThinkingLevel = Literal["minimal", "high"]

RATIO_PATTERN = re.compile(r"^\d{1,2}:\d{1,2}$")
VAR_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Google's `generationConfig.seed` is an int32; a negative seed is refused here, so the variations
# seed + k - 1 of a `repeat` never cross zero.
SEED_MAX = 2**31 - 1
SEED_RANGE = f"a seed is an integer from 0 to {SEED_MAX} (Google takes a 32-bit seed)"


def coerce_image_size(value: Any) -> Any:
    """`512` written as a number is "512"; `1k` is refused with the spelling to use."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value == 512:
        return "512"
    stripped = value.strip() if isinstance(value, str) else None
    if stripped is not None and stripped.upper() in ALL_SIZES and stripped not in ALL_SIZES:
        raise ValueError(f"{value!r}: write {stripped.upper()!r} (uppercase K)")
    return value


def coerce_grounding(value: Any) -> Any:
    """`Web` or `WEB+IMAGE` is refused with the spelling to use; YAML's true/false (and null) with
    what to write instead."""
    if isinstance(value, bool):
        raise ValueError(
            f"{value!r}: write one of {', '.join(GROUNDINGS)} (web: Google web search;"
            " web+image: also image search)"
        )
    return _lowercase_hint(value, GROUNDINGS)


def coerce_thinking_level(value: Any) -> Any:
    """`High` or `MINIMAL` is refused with the spelling to use."""
    return _lowercase_hint(value, THINKING_LEVELS)


def _lowercase_hint(value: Any, allowed: tuple[str, ...]) -> Any:
    stripped = value.strip() if isinstance(value, str) else None
    if stripped is not None and stripped.lower() in allowed and stripped not in allowed:
        raise ValueError(f"{value!r}: write {stripped.lower()!r} (lowercase)")
    return value


def check_ratio(value: Any) -> Any:
    """A ratio such as "16:9" (None passes); the hint explains YAML's reading of unquoted 16:9."""
    if value is None:
        return None
    if not isinstance(value, str) or not RATIO_PATTERN.match(value):
        raise ValueError(
            f'{value!r} is not a ratio like "16:9"; quote it in YAML (unquoted 16:9 reads as a'
            " number)"
        )
    return value


def coerce_seed(value: Any) -> Any:
    """A seed: a whole number in Google's range, also written as text (an items_file cell)."""
    if value is None:
        return None
    number = value
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        number = int(value)
    if isinstance(number, bool) or not isinstance(number, int):
        raise ValueError(f"{value!r} is not an integer; {SEED_RANGE}")
    if not 0 <= number <= SEED_MAX:
        raise ValueError(f"{number} is out of range; {SEED_RANGE}")
    return number


def coerce_var_value(value: Any) -> Any:
    """A variable's value as the text it fills in: text as written, a number as YAML printed it;
    None (declared, no value) passes. true/false and lists are refused with what to write."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        raise ValueError(f"{value!r}: quote it (YAML reads yes/no/true/false as booleans)")
    if isinstance(value, int | float):
        return str(value)
    raise ValueError(
        "a variable's value is a text or a number; HINT: to try several values, list them"
        " under `matrix` instead"
    )


def check_var_name(name: str) -> str:
    """A variable's name: letters, digits and '_', not starting with a digit."""
    if not VAR_NAME_PATTERN.match(name):
        raise ValueError(
            f"{name!r} is not a variable name: use letters, digits and '_', starting with a"
            " letter or '_'"
        )
    return name
