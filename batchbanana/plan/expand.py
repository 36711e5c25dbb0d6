"""Raw items -> work items: each item's variants (its templates filled), their generation fields
(the item's own, else the manifest's, else the defaults) checked against the model's rules and
priced, their ids (given, or derived from the item's meaning; numbered for `repeat`; unique across
the job), their seeds and their fingerprints."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchbanana.plan.checker import Checker
from batchbanana.plan.ids import IdBook, fit_id, repeat_ids
from batchbanana.plan.inputs import ImageInput
from batchbanana.plan.item_images import resolve_images
from batchbanana.plan.items_file import RawItem
from batchbanana.plan.job import DEFAULT_IMAGE_SIZE, DEFAULT_MODALITIES, WorkItem, fingerprint
from batchbanana.plan.manifest import Item, Manifest
from batchbanana.plan.values import SEED_MAX, SEED_RANGE
from batchbanana.plan.variants import ItemVariants, Variant, item_variants
from batchbanana.rules.models import check_generation, rules_for
from batchbanana.rules.pricing import PriceRule, price_rule

DEFAULT_MODEL = "gemini-3-pro-image-preview"


@dataclass(frozen=True, slots=True)
class _Fields:
    """The generation fields an item is sent with, once the defaults are filled in."""

    model: str
    image_size: str
    aspect_ratio: str | None
    system_prompt: str | None
    modalities: tuple[str, ...]
    seed: int | None


def expand_items(
    raw_items: list[RawItem],
    manifest: Manifest,
    pricing: dict[str, PriceRule],
    base_dir: Path,
    checker: Checker,
) -> list[WorkItem]:
    """The work items of the job, in order; every problem found is added to `checker`."""
    work: list[WorkItem] = []
    ids = IdBook()
    for raw in raw_items:
        found = item_variants(raw, manifest, checker)
        fields = _fields(raw.item, manifest)
        for field_name, message in check_generation(
            fields.model, fields.image_size, fields.aspect_ratio
        ):
            checker.add_item(raw, field_name, message)
        rule = _priced(raw, fields, manifest, pricing, checker)
        images = resolve_images(raw, base_dir, checker, manifest.inline_urls)
        if rule is not None and found is not None:
            work.extend(_work_items(raw, found, fields, images, rule, ids, checker))
    return work


def _fields(item: Item, manifest: Manifest) -> _Fields:
    return _Fields(
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


def _priced(
    raw: RawItem,
    fields: _Fields,
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


def _derived_meaning(item: Item, found: ItemVariants, fields: _Fields) -> dict[str, Any]:
    """What a derived id is a hash of: the item's request before its repeats (its prompts filled),
    with the fields added later only when set, so ids derived before them stay."""
    meaning: dict[str, Any] = {
        "prompt": found.meaning_prompt,
        "images": [
            str(entry) if isinstance(entry, str) else entry.model_dump() for entry in item.images
        ],
        "model": fields.model,
        "image_size": fields.image_size,
        "aspect_ratio": fields.aspect_ratio,
        "system_prompt": found.meaning_system_prompt,
        "response_modalities": list(fields.modalities),
    }
    if fields.seed is not None:
        meaning["seed"] = fields.seed
    if item.repeat != 1:
        # a repeated item differs from a single one, and its variations take -1..-N,
        # so its base id must not be one that a duplicate single item would get
        meaning["repeat"] = item.repeat
    return meaning


def _work_items(
    raw: RawItem,
    found: ItemVariants,
    fields: _Fields,
    images: tuple[ImageInput, ...],
    rule: PriceRule,
    ids: IdBook,
    checker: Checker,
) -> Iterator[WorkItem]:
    """One work item per id of each variant (one, or one per `repeat` variation, variation k
    with the seed + k - 1 when the item has a seed)."""
    item = raw.item
    if fields.seed is not None and fields.seed + item.repeat - 1 > SEED_MAX:
        checker.add_item(
            raw,
            "seed",
            f"{fields.seed} + {item.repeat - 1} (repeat: {item.repeat}) passes {SEED_MAX};"
            f" HINT: {SEED_RANGE}, and variation k of a repeat takes seed + k - 1",
        )
        return
    derived = None
    for variant in found.variants:
        if variant.id_stem is None and derived is None:
            derived = ids.derived(_derived_meaning(item, found, fields))
        stem = variant.id_stem or derived or ""
        if stem != item.id:  # filled in: fit it (an id as written keeps what it always made)
            stem = fit_id(stem, item.repeat)
        yield from _variations(raw, variant, stem, fields, images, rule, ids, checker)


def _variations(
    raw: RawItem,
    variant: Variant,
    stem: str,
    fields: _Fields,
    images: tuple[ImageInput, ...],
    rule: PriceRule,
    ids: IdBook,
    checker: Checker,
) -> Iterator[WorkItem]:
    """The work items of one variant: itself, or its repeat's variations."""
    for variation, item_id in enumerate(repeat_ids(stem, raw.item.repeat)):
        if not ids.claim(item_id, raw, checker):
            continue
        seed = None if fields.seed is None else fields.seed + variation
        print_id = fingerprint(
            fields.model,
            variant.prompt,
            fields.image_size,
            fields.aspect_ratio,
            variant.system_prompt,
            fields.modalities,
            images,
            seed,
        )
        yield WorkItem(
            id=item_id,
            prompt=variant.prompt,
            images=images,
            model=fields.model,
            image_size=fields.image_size,
            aspect_ratio=fields.aspect_ratio,
            system_prompt=variant.system_prompt,
            response_modalities=fields.modalities,
            price=rule,
            fingerprint=print_id,
            seed=seed,
        )
