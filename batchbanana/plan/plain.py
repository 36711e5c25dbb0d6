"""Planning plain rows in bulk (plan/plain_rows.py): an items_file row that nothing varies is
one work item whose fields are the row's, else the manifest's, else the defaults. Rows that give
the same fields share their checks, their price, their Shape and the canonical JSON around their
prompt (job.FingerprintTemplate), so a million of them plan in seconds.

A row goes the usual way (expand.py, through the Item model) when it cannot be planned so: the
manifest has a matrix or a templated system prompt, or its fields break a model rule or have no
price (those problems name each row). Ids, fingerprints and the order of items are the same
either way (tests/test_plain_rows.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from batchbanana.plan.checker import Checker
from batchbanana.plan.ids import IdBook
from batchbanana.plan.job import (
    DEFAULT_IMAGE_SIZE,
    DEFAULT_MODALITIES,
    DEFAULT_MODEL,
    FingerprintTemplate,
    later_fields,
)
from batchbanana.plan.manifest import Manifest
from batchbanana.plan.plain_rows import PlainRow, raw_item
from batchbanana.plan.shape import Shape
from batchbanana.plan.workitems import WorkItems
from batchbanana.rules.models import NO_GROUNDING, check_generation
from batchbanana.rules.pricing import PriceRule, price_rule

_UNSEEN = object()


@dataclass(frozen=True, slots=True)
class _Kind:
    """What the rows that give the same fields share."""

    shape: Shape
    template: FingerprintTemplate
    seed: int | None


class PlainPlanner:
    """Adds plain rows' work items to `work`, claiming their ids in `ids`."""

    def __init__(
        self,
        manifest: Manifest,
        pricing: dict[str, PriceRule],
        ids: IdBook,
        work: WorkItems,
        checker: Checker,
    ) -> None:
        self._manifest = manifest
        self._pricing = pricing
        self._ids = ids
        self._work = work
        self._checker = checker
        system_prompt = manifest.system_prompt
        self._usable = manifest.matrix is None and not (system_prompt and "{{" in system_prompt)
        self._kinds: dict[tuple[Any, ...], _Kind | None] = {}

    def plan(self, row: PlainRow) -> bool:
        """Add the row's work item (or its duplicate id's problem); False when it must go the
        usual way instead (nothing was added nor claimed)."""
        if not self._usable:
            return False
        source, line, item_id, prompt, model, image_size, ratio, system_prompt, seed = row
        key = (model, image_size, ratio, system_prompt, seed)
        kind = self._kinds.get(key, _UNSEEN)
        if kind is _UNSEEN:
            kind = self._kinds[key] = self._kind(model, image_size, ratio, system_prompt, seed)
        if not isinstance(kind, _Kind):
            return False
        shape = kind.shape
        if item_id is None:
            item_id = self._ids.derived(_meaning(prompt, shape, kind.seed))
        if not self._ids.claim_at(item_id, source, line):
            self._ids.claim(item_id, raw_item(row), self._checker)  # says where it was first used
            return True
        digest = kind.template.digest(prompt, kind.seed)
        self._work.add_digest(item_id, prompt, shape, digest, kind.seed)
        return True

    def _kind(
        self,
        model: str | None,
        image_size: str | None,
        ratio: str | None,
        system_prompt: str | None,
        seed: int | None,
    ) -> _Kind | None:
        """The fields of rows that give these, over the manifest's and the defaults (as
        expand.py fills them in); None when a model rule or the price book has a problem."""
        manifest = self._manifest
        model = model or manifest.model or DEFAULT_MODEL
        image_size = image_size or manifest.image_size or DEFAULT_IMAGE_SIZE
        ratio = ratio if ratio is not None else manifest.aspect_ratio
        system_prompt = system_prompt if system_prompt is not None else manifest.system_prompt
        modalities = tuple(manifest.response_modalities or DEFAULT_MODALITIES)
        seed = seed if seed is not None else manifest.seed
        grounding = manifest.grounding or NO_GROUNDING
        thinking = manifest.thinking_level
        rule = price_rule(manifest.price_book, self._pricing, model, image_size)
        if check_generation(model, image_size, ratio, grounding, thinking) or rule is None:
            return None
        shape = Shape(
            (), model, image_size, ratio, system_prompt, modalities, rule, (), None, grounding,
            thinking,
        )  # fmt: skip
        template = FingerprintTemplate.of(
            model, image_size, ratio, system_prompt, modalities, (), grounding, thinking
        )
        return _Kind(shape, template, seed)


def _meaning(prompt: str, shape: Shape, seed: int | None) -> dict[str, Any]:
    """What the derived id of a plain row is a hash of (as expand.py's _derived_meaning)."""
    meaning: dict[str, Any] = {
        "prompt": prompt,
        "images": [],
        "model": shape.model,
        "image_size": shape.image_size,
        "aspect_ratio": shape.aspect_ratio,
        "system_prompt": shape.system_prompt,
        "response_modalities": list(shape.response_modalities),
    }
    if seed is not None:
        meaning["seed"] = seed
    meaning.update(later_fields(shape.grounding, shape.thinking_level))
    return meaning
