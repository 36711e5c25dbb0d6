"""An item's generation fields as it is sent: the matrix combination's, else the item's own, else
the manifest's, else the defaults."""

from __future__ import annotations

from dataclasses import dataclass

from batchbanana.plan.job import DEFAULT_IMAGE_SIZE, DEFAULT_MODALITIES, DEFAULT_MODEL
from batchbanana.plan.manifest import Item, Manifest
from batchbanana.plan.variants import Variant
from batchbanana.rules.models import NO_GROUNDING


@dataclass(frozen=True, slots=True)
class Fields:
    """The generation fields an item is sent with, once the defaults are filled in."""

    model: str
    image_size: str
    aspect_ratio: str | None
    system_prompt: str | None
    modalities: tuple[str, ...]
    seed: int | None
    grounding: str = NO_GROUNDING
    thinking_level: str | None = None


def item_fields(item: Item, manifest: Manifest) -> Fields:
    """The item's own fields over the manifest's, over the defaults."""
    return Fields(
        model=item.model or manifest.model or DEFAULT_MODEL,
        image_size=item.image_size or manifest.image_size or DEFAULT_IMAGE_SIZE,
        aspect_ratio=(
            item.aspect_ratio if item.aspect_ratio is not None else manifest.aspect_ratio
        ),
        system_prompt=(
            item.system_prompt if item.system_prompt is not None else manifest.system_prompt
        ),
        modalities=tuple(
            item.response_modalities or manifest.response_modalities or DEFAULT_MODALITIES
        ),
        seed=item.seed if item.seed is not None else manifest.seed,
        grounding=item.grounding or manifest.grounding or NO_GROUNDING,
        thinking_level=item.thinking_level or manifest.thinking_level,
    )


def variant_fields(base: Fields, variant: Variant) -> Fields:
    """The item's fields with those its matrix combination sets, and its filled system prompt."""
    if not variant.combination and variant.system_prompt == base.system_prompt:
        return base
    chosen = dict(variant.combination)
    return Fields(
        model=str(chosen.get("model", base.model)),
        image_size=str(chosen.get("image_size", base.image_size)),
        aspect_ratio=str(chosen["aspect_ratio"]) if "aspect_ratio" in chosen else base.aspect_ratio,
        system_prompt=variant.system_prompt,
        modalities=base.modalities,
        seed=int(chosen["seed"]) if "seed" in chosen else base.seed,
        grounding=str(chosen.get("grounding", base.grounding)),
        thinking_level=(
            str(chosen["thinking_level"]) if "thinking_level" in chosen else base.thinking_level
        ),
    )
