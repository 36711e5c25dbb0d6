"""The generation fields an item is sent with (its matrix combination's, else its own, else the
manifest's, else the defaults), and the price of one request with them (or a problem when none
is known)."""

from __future__ import annotations

from dataclasses import dataclass

from batchbanana.plan.checker import Checker
from batchbanana.plan.job import DEFAULT_IMAGE_SIZE, DEFAULT_MODALITIES, DEFAULT_MODEL
from batchbanana.plan.manifest import Item, Manifest
from batchbanana.plan.plain_rows import RawItem
from batchbanana.plan.variants import Variant
from batchbanana.rules.models import rules_for
from batchbanana.rules.pricing import PriceRule, price_rule


@dataclass(frozen=True, slots=True)
class Fields:
    """The generation fields an item is sent with, once the defaults are filled in."""

    model: str
    image_size: str
    aspect_ratio: str | None
    system_prompt: str | None
    modalities: tuple[str, ...]
    seed: int | None


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
    )


def item_fields(item: Item, manifest: Manifest) -> Fields:
    """The item's own fields, else the manifest's, else the defaults."""
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
    )


def price_of(
    raw: RawItem,
    fields: Fields,
    manifest: Manifest,
    pricing: dict[str, PriceRule],
    checker: Checker,
) -> PriceRule | None:
    """The price of one request of the item, or None (and a problem) when none is known."""
    rule = price_rule(manifest.price_book, pricing, fields.model, fields.image_size)
    if rule is not None:
        return rule
    if rules_for(fields.model) is None:
        checker.add_item(
            raw,
            "model",
            f"unknown model {fields.model!r}; HINT: add `pricing: {{{fields.model}:"
            " {per_request_usd: ...}}` to use it (its sizes are then not checked)",
        )
    else:
        checker.add_item(
            raw,
            "image_size",
            f"the {manifest.price_book} price book has no price for {fields.model}"
            f" at {fields.image_size}; add a `pricing` entry",
        )
    return None
