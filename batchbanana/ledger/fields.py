"""Reading ledger values back as the types they mean, whatever a line holds: a value of the wrong
type reads as absent (None), never as an exception; and a line's `spec` read into typed fields.

The ledger is read from disk, where older versions, hand edits and torn writes leave values of any
JSON type: these are the only functions that look at such raw values. A record class declares its
fields once; `read_fields` reads each by its declared type and `field_names` gives their order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Self

Json = dict[str, Any]


def as_text(value: Any) -> str | None:
    """A string as written (the empty one included), or None."""
    return value if isinstance(value, str) else None


def as_int(value: Any) -> int | None:
    """An integer, also one written as a float (`1.0`, as tools that load JSON into floats write
    it back); JSON `true` is not one. Otherwise None."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def as_float(value: Any) -> float | None:
    """A finite number as a float (not a bool, nor an integer too large for a float), or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def as_dict(value: Any) -> Json | None:
    """A JSON object, or None."""
    return value if isinstance(value, dict) else None


# How a field declared with each of these types is read (the declarations are source text, as
# `from __future__ import annotations` keeps them).
_READERS: dict[str, Callable[[Any], Any]] = {
    "str | None": as_text,
    "int | None": as_int,
    "float | None": as_float,
    "Json | None": as_dict,
}
_DECLARED: dict[type[Any], tuple[tuple[str, Callable[[Any], Any] | None], ...]] = {}


def _declared(cls: type[Any]) -> tuple[tuple[str, Callable[[Any], Any] | None], ...]:
    """Each field of dataclass `cls` in order, with the reader of its declared type (None for a
    type that has none: such a field is always given); looked up once per class."""
    found = _DECLARED.get(cls)
    if found is None:
        found = tuple((field.name, _READERS.get(str(field.type))) for field in fields(cls))
        _DECLARED[cls] = found
    return found


def field_names(cls: type[Any]) -> tuple[str, ...]:
    """The fields of dataclass `cls`, in the order they are declared."""
    return tuple(name for name, _ in _declared(cls))


def read_fields(cls: type[Any], record: Mapping[str, Any], **given: Any) -> dict[str, Any]:
    """Each field of dataclass `cls` read from `record` by its declared type (a value of another
    type reads as None), except the fields `given`, which are taken as they are."""
    for name, read in _declared(cls):
        if name not in given:
            if read is None:
                raise TypeError(f"{cls.__name__}.{name}: no reader for its declared type")
            given[name] = read(record.get(name))
    return given


@dataclass(frozen=True, slots=True, kw_only=True)
class SpecImage:
    """One input image of a spec, as ImageInput.spec wrote it: a local file, a URL, or another
    item's output (`item`: with a path once it was known, `pending` while it was not)."""

    url: str | None
    path: str | None
    sha256: str | None
    mime_type: str | None
    inline: bool  # a URL downloaded and sent inline (inline_urls: true)
    item: str | None = None  # the item whose output this is (an `item:` reference)
    pending: bool = False  # that output was not known when the line was written

    @classmethod
    def from_json(cls, entry: Any) -> Self | None:
        """The image, or None when the entry cannot be read (not an object, or a digest that is
        not text, so its file could not be checked against it)."""
        if not isinstance(entry, dict):
            return None
        if entry.get("sha256") is not None and as_text(entry.get("sha256")) is None:
            return None
        return cls(
            **read_fields(
                cls, entry, inline=entry.get("inline") is True, pending=entry.get("pending") is True
            )
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Spec:
    """What a line's `spec` says about its request (WorkItem.spec wrote it); fields of the wrong
    type read as None. `images` holds None for each entry that cannot be read."""

    prompt: str | None = None
    model: str | None = None
    image_size: str | None = None
    aspect_ratio: str | None = None
    system_prompt: str | None = None
    response_modalities: tuple[str, ...] | None = None
    images: tuple[SpecImage | None, ...] = ()
    seed: int | None = None
    variant_of: str | None = None
    matrix: Json | None = None
    grounding: str | None = None  # absent: none
    thinking_level: str | None = None

    @classmethod
    def from_json(cls, spec: Any) -> Self:
        """The spec's fields; an absent or unreadable spec has none."""
        if not isinstance(spec, dict):
            return cls()
        raw = spec.get("response_modalities")
        modalities = tuple(str(value) for value in raw) if isinstance(raw, list) else None
        images = spec.get("images")
        if isinstance(images, list):
            entries = tuple(SpecImage.from_json(entry) for entry in images)
        else:
            entries = (None,) if images else ()  # something, but not a list: unreadable
        return cls(**read_fields(cls, spec, response_modalities=modalities, images=entries))
