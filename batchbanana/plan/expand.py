"""Raw items -> work items: each item's generation fields (its own, else the manifest's, else the
defaults), checked against the model's rules and priced; its ids (given, or derived from its
meaning; numbered for `repeat`; unique across the job) and its fingerprint."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchbanana.plan.checker import Checker
from batchbanana.plan.inputs import ImageInput
from batchbanana.plan.item_images import resolve_images
from batchbanana.plan.items_file import RawItem
from batchbanana.plan.job import (
    DEFAULT_IMAGE_SIZE,
    DEFAULT_MODALITIES,
    WorkItem,
    derived_id,
    fingerprint,
)
from batchbanana.plan.manifest import Item, Manifest
from batchbanana.plan.values import SEED_MAX, SEED_RANGE
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


@dataclass(slots=True)
class _IdBook:
    """The ids given so far (and where), and how often each derived id has been made."""

    first_use: dict[str, tuple[str, int | None]] = field(default_factory=dict)
    derived_count: dict[str, int] = field(default_factory=dict)

    def ids_for(self, item: Item, fields: _Fields) -> list[str]:
        """The item's id, or the ids of its variations `-1` .. `-N` with `repeat: N`."""
        base_id = item.id if item.id is not None else self._derived(item, fields)
        if item.repeat == 1:
            return [base_id]
        return [f"{base_id}-{n}" for n in range(1, item.repeat + 1)]

    def claim(self, item_id: str, raw: RawItem, checker: Checker) -> bool:
        """Take `item_id` for `raw`; False (and a problem) when an earlier item has it."""
        if item_id in self.first_use:
            first_source, first_line = self.first_use[item_id]
            at = f"{first_source}:{first_line}" if first_line else first_source
            checker.add_item(
                raw, "id", f"duplicate id {item_id!r} (first used at {at}); ids must be unique"
            )
            return False
        self.first_use[item_id] = (raw.source, raw.line)
        return True

    def _derived(self, item: Item, fields: _Fields) -> str:
        """A short hash of the item's meaning; exact duplicates get `-2`, `-3`."""
        meaning: dict[str, Any] = {
            "prompt": item.prompt,
            "images": [
                str(entry) if isinstance(entry, str) else entry.model_dump()
                for entry in item.images
            ],
            "model": fields.model,
            "image_size": fields.image_size,
            "aspect_ratio": fields.aspect_ratio,
            "system_prompt": fields.system_prompt,
            "response_modalities": list(fields.modalities),
        }
        if fields.seed is not None:
            meaning["seed"] = fields.seed  # only when set: ids derived before seeds stay
        if item.repeat != 1:
            # a repeated item differs from a single one, and its variations take -1..-N,
            # so its base id must not be one that a duplicate single item would get
            meaning["repeat"] = item.repeat
        base_id = derived_id(meaning)
        self.derived_count[base_id] = self.derived_count.get(base_id, 0) + 1
        count = self.derived_count[base_id]
        return f"{base_id}-{count}" if count > 1 else base_id


def expand_items(
    raw_items: list[RawItem],
    manifest: Manifest,
    pricing: dict[str, PriceRule],
    base_dir: Path,
    checker: Checker,
) -> list[WorkItem]:
    """The work items of the job, in order; every problem found is added to `checker`."""
    work: list[WorkItem] = []
    ids = _IdBook()
    for raw in raw_items:
        fields = _fields(raw.item, manifest)
        for field_name, message in check_generation(
            fields.model, fields.image_size, fields.aspect_ratio
        ):
            checker.add_item(raw, field_name, message)
        rule = _priced(raw, fields, manifest, pricing, checker)
        images = resolve_images(raw, base_dir, checker, manifest.inline_urls)
        if rule is not None:
            work.extend(_work_items(raw, fields, images, rule, ids, checker))
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


def _work_items(
    raw: RawItem,
    fields: _Fields,
    images: tuple[ImageInput, ...],
    rule: PriceRule,
    ids: _IdBook,
    checker: Checker,
) -> Iterator[WorkItem]:
    """One work item per id of the item (one, or one per `repeat` variation, variation k with
    the seed + k - 1 when the item has a seed)."""
    item = raw.item
    if fields.seed is not None and fields.seed + item.repeat - 1 > SEED_MAX:
        checker.add_item(
            raw,
            "seed",
            f"{fields.seed} + {item.repeat - 1} (repeat: {item.repeat}) passes {SEED_MAX};"
            f" HINT: {SEED_RANGE}, and variation k of a repeat takes seed + k - 1",
        )
        return
    for variation, item_id in enumerate(ids.ids_for(item, fields)):
        if not ids.claim(item_id, raw, checker):
            continue
        seed = None if fields.seed is None else fields.seed + variation
        print_id = fingerprint(
            fields.model,
            item.prompt,
            fields.image_size,
            fields.aspect_ratio,
            fields.system_prompt,
            fields.modalities,
            images,
            seed,
        )
        yield WorkItem(
            id=item_id,
            prompt=item.prompt,
            images=images,
            model=fields.model,
            image_size=fields.image_size,
            aspect_ratio=fields.aspect_ratio,
            system_prompt=fields.system_prompt,
            response_modalities=fields.modalities,
            price=rule,
            fingerprint=print_id,
            seed=seed,
        )
