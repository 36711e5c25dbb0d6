"""A job's work items held compactly: about a hundred bytes an item for most jobs' items.

What many items share (their images, model, size, ratio, system prompt, modalities, price, matrix
combination) is one Shape; per item only its id, prompt, seed, shape and fingerprint (as its
32-byte digest) are kept, in columns. A WorkItem is built when one is read (iterating builds them
one at a time); the passes over a whole job that must stay fast read the columns instead (`ids`,
`shape_counts`, `digests`).
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from dataclasses import replace
from typing import overload

from batchbanana.plan.job import WorkItem
from batchbanana.plan.shape import Shape, counted
from batchbanana.rules.pricing import PriceRule

_STANDARD = re.compile(r"sha256:[0-9a-f]{64}").fullmatch  # a fingerprint held as its digest
_NO_DIGEST = bytes(32)


class WorkItems(Sequence[WorkItem]):
    """The work items of a job, in order, held in columns."""

    __slots__ = ("_digests", "_ends", "_odd_prints", "_seeds", "_shapes", "_text")

    def __init__(self, items: Iterable[WorkItem] = ()) -> None:
        self._text = bytearray()  # each item's id, then its prompt, in UTF-8
        self._ends = array("q")  # where each of them ends in `_text`
        self._shapes: list[Shape] = []
        self._seeds: list[int | None] = []
        self._digests = bytearray()  # 32 bytes an item
        self._odd_prints: dict[int, str] = {}  # a fingerprint of another form, as it is
        for item in items:
            self.append(item)

    def add(
        self, item_id: str, prompt: str, shape: Shape, fingerprint: str, seed: int | None
    ) -> None:
        """Add an item from its parts (items of one shape should share that Shape object)."""
        if _STANDARD(fingerprint):
            self._digests += bytes.fromhex(fingerprint[7:])
        else:
            self._odd_prints[len(self)] = fingerprint
            self._digests += _NO_DIGEST
        self._add_texts(item_id, prompt)
        self._shapes.append(shape)
        self._seeds.append(seed)

    def _add_texts(self, item_id: str, prompt: str) -> None:
        self._text += item_id.encode("utf-8", "surrogatepass")
        self._ends.append(len(self._text))
        self._text += prompt.encode("utf-8", "surrogatepass")
        self._ends.append(len(self._text))

    def _text_at(self, slot: int) -> str:
        start = self._ends[slot - 1] if slot else 0
        return self._text[start : self._ends[slot]].decode("utf-8", "surrogatepass")

    def add_digest(
        self, item_id: str, prompt: str, shape: Shape, digest: bytes | bytearray, seed: int | None
    ) -> None:
        """Add an item whose fingerprint is `sha256:` and this digest's hex."""
        self._digests += digest
        self._add_texts(item_id, prompt)
        self._shapes.append(shape)
        self._seeds.append(seed)

    def append(self, item: WorkItem) -> None:
        """Add a work item (its shape shared with the item before it when they are alike)."""
        shape = Shape.of(item)
        if self._shapes and self._shapes[-1] == shape:
            shape = self._shapes[-1]
        self.add(item.id, item.prompt, shape, item.fingerprint, item.seed)

    def __len__(self) -> int:
        return len(self._shapes)

    @overload
    def __getitem__(self, index: int) -> WorkItem: ...
    @overload
    def __getitem__(self, index: slice) -> WorkItems: ...
    def __getitem__(self, index: int | slice) -> WorkItem | WorkItems:
        if isinstance(index, slice):
            return WorkItems(self[position] for position in range(len(self))[index])
        if index < 0:
            index += len(self)
        shape = self._shapes[index]
        return WorkItem(
            id=self._text_at(2 * index),
            prompt=self._text_at(2 * index + 1),
            images=shape.images,
            model=shape.model,
            image_size=shape.image_size,
            aspect_ratio=shape.aspect_ratio,
            system_prompt=shape.system_prompt,
            response_modalities=shape.response_modalities,
            price=shape.price,
            fingerprint=self.fingerprint_at(index),
            seed=self._seeds[index],
            matrix=shape.matrix,
            variant_of=shape.variant_of,
            grounding=shape.grounding,
            thinking_level=shape.thinking_level,
        )

    def __iter__(self) -> Iterator[WorkItem]:
        for index in range(len(self)):
            yield self[index]

    def __repr__(self) -> str:
        return f"WorkItems({len(self)} items)"

    # -- columns --------------------------------------------------------------------------------
    @property
    def ids(self) -> Sequence[str]:
        """Every item's id, in order (not to be changed)."""
        return _Texts(self, 0)

    def fingerprint_at(self, index: int) -> str:
        """The fingerprint of the item at `index`."""
        odd = self._odd_prints.get(index)
        if odd is not None:
            return odd
        return "sha256:" + self._digests[32 * index : 32 * index + 32].hex()

    @property
    def digests(self) -> bytes | bytearray:
        """Every item's fingerprint digest, 32 bytes each (zeros where `odd_indices` says the
        fingerprint is of another form); not to be changed."""
        return self._digests

    @property
    def odd_indices(self) -> Container[int]:
        """The indices of the items whose fingerprint is not `sha256:<hex>`."""
        return self._odd_prints

    def shape_counts(self) -> list[tuple[Shape, int]]:
        """Each distinct Shape object and how many items have it, in order of first use."""
        return counted(self._shapes)

    @property
    def prompts(self) -> Sequence[str]:
        """Every item's prompt, in order (not to be changed)."""
        return _Texts(self, 1)

    @property
    def shapes(self) -> Sequence[Shape]:
        """Every item's Shape, in order (items alike share one; not to be changed)."""
        return self._shapes

    def pick(self, indices: Iterable[int]) -> Picked:
        """The items at these indices, in that order, read from this one when read."""
        return Picked(self, array("q", indices))

    def select(self, keep: Callable[[str], bool]) -> WorkItems:
        """The items whose id `keep` accepts, in order, held as compactly (a shard's items)."""
        chosen = WorkItems()
        for index, item_id in enumerate(self.ids):
            if keep(item_id):
                odd = self._odd_prints.get(index)
                digest = self._digests[32 * index : 32 * index + 32]
                if odd is not None:
                    chosen._odd_prints[len(chosen)] = odd
                shape, seed = self._shapes[index], self._seeds[index]
                chosen.add_digest(item_id, self._text_at(2 * index + 1), shape, digest, seed)
        return chosen

    def with_prices(self, price: Callable[[PriceRule], PriceRule]) -> WorkItems:
        """The same items, each shape's price made `price(its price)`."""
        changed: dict[int, Shape] = {}
        copy = WorkItems()
        copy._text, copy._ends, copy._seeds = self._text, self._ends, self._seeds
        copy._digests, copy._odd_prints = self._digests, self._odd_prints
        for shape in self._shapes:
            new = changed.get(id(shape))
            if new is None:
                new = changed[id(shape)] = replace(shape, price=price(shape.price))
            copy._shapes.append(new)
        return copy


class _Texts(Sequence[str]):
    """The ids (which 0) or the prompts (which 1) of a WorkItems, decoded when read."""

    __slots__ = ("_items", "_which")

    def __init__(self, items: WorkItems, which: int) -> None:
        self._items = items
        self._which = which

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...
    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return [self[position] for position in range(len(self))[index]]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self._items._text_at(2 * index + self._which)

    def __iter__(self) -> Iterator[str]:
        text, ends, which = self._items._text, self._items._ends, self._which
        start = ends[which - 1] if which else 0
        for slot in range(which, len(ends), 2):
            yield text[start : ends[slot]].decode("utf-8", "surrogatepass")
            start = ends[slot + 1] if slot + 1 < len(ends) else 0


def shapes_of(items: Sequence[WorkItem]) -> list[tuple[Shape, int]]:
    """Each distinct shape of these items and how many have it, in order of first use."""
    if isinstance(items, WorkItems | Picked):
        return items.shape_counts()
    counts: dict[Shape, int] = {}
    for item in items:
        shape = Shape.of(item)
        counts[shape] = counts.get(shape, 0) + 1
    return list(counts.items())


def prompts_and_shapes(items: Sequence[WorkItem]) -> Iterator[tuple[str, Shape]]:
    """Each item's prompt and shape, without building the items of a WorkItems."""
    if isinstance(items, WorkItems):
        return zip(items.prompts, items.shapes, strict=True)
    return ((item.prompt, Shape.of(item)) for item in items)


class Picked(Sequence[WorkItem]):
    """Some items of a WorkItems, by their indices there (a million of them in 8 MB)."""

    __slots__ = ("_indices", "_items")

    def __init__(self, items: WorkItems, indices: array[int]) -> None:
        self._items = items
        self._indices = indices

    def __len__(self) -> int:
        return len(self._indices)

    @overload
    def __getitem__(self, index: int) -> WorkItem: ...
    @overload
    def __getitem__(self, index: slice) -> Picked: ...
    def __getitem__(self, index: int | slice) -> WorkItem | Picked:
        if isinstance(index, slice):
            return Picked(self._items, self._indices[index])
        return self._items[self._indices[index]]

    def __iter__(self) -> Iterator[WorkItem]:
        items = self._items
        for index in self._indices:
            yield items[index]

    def __repr__(self) -> str:
        return f"Picked({len(self)} items)"

    def shape_counts(self) -> list[tuple[Shape, int]]:
        """Each distinct Shape object and how many of these items have it."""
        shapes = self._items.shapes
        return counted([shapes[index] for index in self._indices])
