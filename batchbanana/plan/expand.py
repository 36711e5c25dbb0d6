"""Raw items -> work items: each item's variants (its matrix combinations, its templates filled),
their generation fields (the combination's, else the item's own, else the manifest's, else the
defaults) checked against the model's rules and priced, their ids (given, or derived from the
item's meaning; labelled by combination; numbered for `repeat`; unique across the job), their
seeds and their fingerprints; held in a WorkItems as they come (plain rows in bulk, plain.py)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from batchbanana.plan.checker import Checker
from batchbanana.plan.ids import IdBook, combination_ids, fit_id, repeat_ids
from batchbanana.plan.inputs import ImageInput
from batchbanana.plan.item_images import resolve_images
from batchbanana.plan.job import WorkItem, fingerprint, later_fields
from batchbanana.plan.manifest import Item, Manifest
from batchbanana.plan.plain import PlainPlanner
from batchbanana.plan.plain_rows import PlainRow, RawItem, raw_item
from batchbanana.plan.resolved import Fields, item_fields, variant_fields
from batchbanana.plan.values import SEED_MAX, SEED_RANGE
from batchbanana.plan.variants import ItemVariants, Variant, item_variants
from batchbanana.plan.workitems import WorkItems
from batchbanana.rules.models import check_generation, rules_for
from batchbanana.rules.pricing import PriceRule, price_rule


@dataclass(slots=True)
class Expansion:
    """The work items of a job, and the ids as written of the items that made none (their
    problems stop the job; check_chains still knows the ids)."""

    items: WorkItems
    unexpanded: set[str]


def expand_items(
    raw_items: Iterable[RawItem | PlainRow],
    manifest: Manifest,
    pricing: dict[str, PriceRule],
    base_dir: Path,
    checker: Checker,
) -> Expansion:
    """The work items of the job, in order, taken as the items come (plain rows in bulk, by
    plain.py); every problem found is added to `checker`."""
    work = WorkItems()
    unexpanded: set[str] = set()
    ids = IdBook(common=manifest.items_file)
    plain = PlainPlanner(manifest, pricing, ids, work, checker)
    for entry in raw_items:
        if isinstance(entry, tuple):
            if plain.plan(entry):
                continue
            entry = raw_item(entry)
        raw = entry
        found = item_variants(raw, manifest, checker)
        base = item_fields(raw.item, manifest)
        variants = found.variants if found else _unexpanded(raw.item, manifest, base)
        priced = _checked(raw, variants, base, manifest, pricing, checker)
        images = resolve_images(raw, base_dir, checker, manifest.inline_urls)
        before = len(work)
        if priced is not None and found is not None:
            for item in _work_items(raw, found, base, priced, images, ids, checker):
                work.append(item)
        if len(work) == before and raw.item.id and raw.item.repeat == 1:
            unexpanded.add(raw.item.id)
    return Expansion(work, unexpanded)


_Priced = list[tuple[Variant, Fields, PriceRule]]


def _unexpanded(item: Item, manifest: Manifest, base: Fields) -> tuple[Variant, ...]:
    """What to check of an item whose variants could not be made: its own fields, unless a
    matrix would have replaced them."""
    if item.matrix is not None or manifest.matrix is not None:
        return ()
    return (Variant("", base.system_prompt, None),)


def _checked(
    raw: RawItem,
    variants: tuple[Variant, ...],
    base: Fields,
    manifest: Manifest,
    pricing: dict[str, PriceRule],
    checker: Checker,
) -> _Priced | None:
    """Each variant's fields, checked by the model rules and priced, or None when one cannot be
    sent. Each problem is said once, naming the combination's values of the fields it is about
    (the model and the field): a thinking level the model lacks is one problem, whatever else
    the matrix varies."""
    if len(variants) == 1 and not variants[0].combination:  # most items: nothing to share
        return _checked_one(raw, variants[0], base, manifest, pricing, checker)
    checked: set[tuple[str, str, str | None, str, str | None]] = set()
    said: set[tuple[str, str, str]] = set()
    prices: dict[tuple[str, str], PriceRule | None] = {}
    seeds_seen: set[int] = set()
    priced: _Priced = []
    ok = True
    for variant in variants:
        fields = variant_fields(base, variant)
        key = (
            fields.model,
            fields.image_size,
            fields.aspect_ratio,
            fields.grounding,
            fields.thinking_level,
        )
        if key not in checked:
            checked.add(key)
            for field_name, message in check_generation(*key):
                named = _naming(raw, variant, ("model", field_name))
                if (named.where, field_name, message) not in said:
                    said.add((named.where, field_name, message))
                    checker.add_item(named, field_name, message)
        book_key = (fields.model, fields.image_size)
        if book_key not in prices:
            named = _naming(raw, variant, ("model", "image_size"))
            prices[book_key] = _priced(named, fields, manifest, pricing, checker)
        rule = prices[book_key]
        if rule is None or not _seeds_fit(raw, variant, fields, seeds_seen, checker):
            ok = False
        else:
            priced.append((variant, fields, rule))
    return priced if ok else None


def _checked_one(
    raw: RawItem,
    variant: Variant,
    base: Fields,
    manifest: Manifest,
    pricing: dict[str, PriceRule],
    checker: Checker,
) -> _Priced | None:
    """_checked for an item without a matrix."""
    fields = variant_fields(base, variant)
    for field_name, message in check_generation(
        fields.model,
        fields.image_size,
        fields.aspect_ratio,
        fields.grounding,
        fields.thinking_level,
    ):
        checker.add_item(raw, field_name, message)
    rule = _priced(raw, fields, manifest, pricing, checker)
    if rule is None or not _seeds_fit(raw, variant, fields, set(), checker):
        return None
    return [(variant, fields, rule)]


def _seeds_fit(
    raw: RawItem, variant: Variant, fields: Fields, seen: set[int], checker: Checker
) -> bool:
    """True unless the last variation's seed (seed + repeat - 1) passes the largest seed; its
    problem is said once per seed."""
    repeat = raw.item.repeat
    if fields.seed is None or fields.seed + repeat - 1 <= SEED_MAX:
        return True
    if fields.seed not in seen:
        seen.add(fields.seed)
        checker.add_item(
            _naming(raw, variant, ("seed",)),
            "seed",
            f"{fields.seed} + {repeat - 1} (repeat: {repeat}) passes {SEED_MAX};"
            f" HINT: {SEED_RANGE}, and variation k of a repeat takes seed + k - 1",
        )
    return False


def _naming(raw: RawItem, variant: Variant, names: tuple[str, ...]) -> RawItem:
    """The item as its problems name it: with the matrix values of `names` it was given."""
    shown = [f"{name}={value}" for name, value in variant.combination if name in names]
    if not shown:
        return raw
    combination = f"({', '.join(shown)})"
    return replace(raw, where=f"{raw.where} {combination}" if raw.where else combination)


def _priced(
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


def _derived_meaning(item: Item, found: ItemVariants, fields: Fields) -> dict[str, Any]:
    """What a derived id is a hash of: the item's request before its repeats and its matrix (its
    texts filled but for the matrix's variables; not the matrix's lists, so adding a value to one
    keeps the ids already made), with the fields added later only when set, so ids derived before
    them stay."""
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
    meaning.update(later_fields(fields.grounding, fields.thinking_level))
    if item.repeat != 1:
        # a repeated item differs from a single one, and its variations take -1..-N,
        # so its base id must not be one that a duplicate single item would get
        meaning["repeat"] = item.repeat
    return meaning


def _work_items(
    raw: RawItem,
    found: ItemVariants,
    base: Fields,
    priced: _Priced,
    images: tuple[ImageInput, ...],
    ids: IdBook,
    checker: Checker,
) -> Iterator[WorkItem]:
    """One work item per id of each variant (one, or one per `repeat` variation, variation k
    with the seed + k - 1 when it has a seed)."""
    item = raw.item
    derived = None
    if found.shared_id is None:
        derived = ids.derived(_derived_meaning(item, found, base))
    stems = [variant.id_stem or derived or "" for variant in found.variants]
    if found.axes:
        combos = [variant.combination for variant in found.variants]
        stems = combination_ids(stems, combos, skip=found.id_shows)
    shared = found.shared_id or derived or ""
    variant_of = fit_id(shared, 1) if found.axes else None
    for stem, (variant, fields, rule) in zip(stems, priced, strict=True):
        if stem != item.id:  # filled in: fit it (an id as written keeps what it always made)
            stem = fit_id(stem, item.repeat)
        for variation, item_id in enumerate(repeat_ids(stem, item.repeat)):
            if not ids.claim(item_id, raw, checker):
                continue
            seed = None if fields.seed is None else fields.seed + variation
            yield WorkItem(
                id=item_id,
                prompt=variant.prompt,
                images=images,
                model=fields.model,
                image_size=fields.image_size,
                aspect_ratio=fields.aspect_ratio,
                system_prompt=fields.system_prompt,
                response_modalities=fields.modalities,
                price=rule,
                fingerprint=fingerprint(
                    fields.model,
                    variant.prompt,
                    fields.image_size,
                    fields.aspect_ratio,
                    fields.system_prompt,
                    fields.modalities,
                    images,
                    seed,
                    fields.grounding,
                    fields.thinking_level,
                ),
                seed=seed,
                grounding=fields.grounding,
                thinking_level=fields.thinking_level,
                matrix=tuple((name, str(value)) for name, value in variant.combination),
                variant_of=variant_of,
            )
