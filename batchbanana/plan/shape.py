"""What many work items share: their images, model, size, ratio, system prompt, modalities,
price, matrix combination, grounding and thinking level (a Shape); per item only its id, prompt,
seed and fingerprint differ (workitems.py holds them)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from batchbanana.plan.inputs import ImageInput
from batchbanana.plan.job import WorkItem
from batchbanana.rules.models import NO_GROUNDING
from batchbanana.rules.pricing import PriceRule


@dataclass(frozen=True, slots=True)
class Shape:
    """What a request is made of but for its id, prompt, seed and fingerprint."""

    images: tuple[ImageInput, ...]
    model: str
    image_size: str
    aspect_ratio: str | None
    system_prompt: str | None
    response_modalities: tuple[str, ...]
    price: PriceRule
    matrix: tuple[tuple[str, str], ...] = ()
    variant_of: str | None = None
    grounding: str = NO_GROUNDING
    thinking_level: str | None = None

    @classmethod
    def of(cls, item: WorkItem) -> Shape:
        """The shape of a work item."""
        return cls(
            item.images,
            item.model,
            item.image_size,
            item.aspect_ratio,
            item.system_prompt,
            item.response_modalities,
            item.price,
            item.matrix,
            item.variant_of,
            item.grounding,
            item.thinking_level,
        )


def counted(shapes: Sequence[Shape]) -> list[tuple[Shape, int]]:
    """Each distinct Shape object of `shapes` and how often it comes, in order of first use."""
    counts = Counter(map(id, shapes))
    first: dict[int, Shape] = {}
    for shape in shapes:
        if id(shape) not in first:
            first[id(shape)] = shape
            if len(first) == len(counts):
                break
    return [(shape, counts[key]) for key, shape in first.items()]
