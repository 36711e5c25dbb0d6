"""Rebuild a job from its ledger alone, for `batchbanana retry` (the manifest may be gone).

The latest `job` line gives the settings; each failed item's `spec` gives its request, and its
local images are checked against the digests recorded when they were first sent. A `blocked`
item's image that is another item's output not known then stays a reference (`item:<id>`): the
run reads that item's output once it is ok, as `run` would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from batchbanana.errors import UserError
from batchbanana.ledger.fields import Spec
from batchbanana.ledger.fold import ELSEWHERE
from batchbanana.ledger.replay import LedgerState
from batchbanana.plan.inputs import ImageInput, ImageProblem, inspect_file
from batchbanana.plan.job import (
    DEFAULT_IMAGE_SIZE,
    DEFAULT_MODALITIES,
    Job,
    WorkItem,
    rule_from_json,
)
from batchbanana.plan.manifest import Manifest, RetrySettings, Timeouts
from batchbanana.rules.models import NO_GROUNDING
from batchbanana.rules.outcomes import Outcome
from batchbanana.rules.pricing import PriceRule, price_rule

FAILED_OUTCOMES = tuple(outcome.value for outcome in Outcome if outcome is not Outcome.OK)


def parse_only(text: str | None) -> set[str] | None:
    """The `--only` list of outcomes, checked against the contract's names."""
    if text is None:
        return None
    names = {part.strip() for part in text.split(",") if part.strip()}
    unknown = sorted(names - set(FAILED_OUTCOMES))
    if unknown or not names:
        raise UserError(
            f"--only: unknown outcome(s) {', '.join(unknown) or '(none given)'};"
            f" use some of {', '.join(FAILED_OUTCOMES)}"
        )
    return names


def _settings(state: LedgerState, ledger_path: Path) -> dict[str, Any]:
    if not state.jobs:
        raise UserError(f"{ledger_path}: no `job` line; is this a batchbanana ledger?")
    return state.jobs[-1].settings


def _model(cls: Any, data: Any, default: Any) -> Any:
    try:
        return cls.model_validate(data) if isinstance(data, dict) else default
    except ValidationError:
        return default


def _images(item_id: str, spec: Spec) -> tuple[ImageInput, ...]:
    images: list[ImageInput] = []
    for entry in spec.images:
        if entry is None:
            raise UserError(f"item '{item_id}': unreadable image entry in the ledger's spec")
        if entry.item is not None and (entry.pending or entry.path is None):
            # another item's output, not known when this line was written: the run reads it
            # once that item is ok (run/chains.py), or blocks this item again
            images.append(ImageInput(kind="item", reference=entry.item, mime_type=""))
            continue
        if entry.url is not None:
            mime = entry.mime_type or ("" if entry.inline else "image/png")
            images.append(
                ImageInput(kind="url", reference=entry.url, mime_type=mime, inline=entry.inline)
            )
            continue
        path = Path(str(entry.path))
        try:
            found = inspect_file(path)
        except ImageProblem as exc:
            raise UserError(f"item '{item_id}': {exc}") from None
        if entry.sha256 and found.sha256 != entry.sha256:
            raise UserError(
                f"item '{item_id}': {path} changed since it was first sent (its sha256 differs);"
                " run the manifest instead, which treats it as new work"
            )
        images.append(replace(found, from_item=entry.item))
    return tuple(images)


def failed_items(
    state: LedgerState,
    only: set[str] | None,
    pricing: dict[str, PriceRule],
    book: str,
    include: Callable[[str], bool] | None = None,
) -> list[tuple[WorkItem, str]]:
    """(item, its latest outcome) for every item whose latest outcome is a failure (of the
    items `include` accepts: a shard's, say)."""
    chosen: list[tuple[WorkItem, str]] = []
    for row, item_id in enumerate(state.ids):
        if include is not None and not include(item_id):
            continue
        pair = state.latest_pair(row)
        if pair.in_batch is not None and pair.in_flight_attempt is not None:
            continue  # waiting in a remote batch: `run` re-attaches to it, nothing failed yet
        if pair.outcome == ELSEWHERE:
            continue  # in flight in another ledger of the folder: never sent from here
        outcome = pair.outcome or (Outcome.INTERRUPTED.value if pair.in_flight_attempt else None)
        if outcome is None or outcome == Outcome.OK.value:
            continue
        if only is not None and outcome not in only:
            continue
        history = state.history_at(row)
        spec = Spec.from_json(history.spec)
        if spec.prompt is None:
            raise UserError(f"item '{item_id}': the ledger has no usable spec to send it again")
        model = str(spec.model)
        image_size = spec.image_size or DEFAULT_IMAGE_SIZE
        rule = price_rule(book, pricing, model, image_size)
        if rule is None:
            raise UserError(f"item '{item_id}': no price known for {model} at {image_size}")
        item = WorkItem(
            id=item_id,
            prompt=spec.prompt,
            images=_images(item_id, spec),
            model=model,
            image_size=image_size,
            aspect_ratio=spec.aspect_ratio,
            system_prompt=spec.system_prompt,
            response_modalities=spec.response_modalities or DEFAULT_MODALITIES,
            price=rule,
            fingerprint=history.fingerprint or "",
            seed=spec.seed,
            matrix=tuple((str(key), str(value)) for key, value in (spec.matrix or {}).items()),
            variant_of=spec.variant_of,
            grounding=spec.grounding or NO_GROUNDING,
            thinking_level=spec.thinking_level,
        )
        chosen.append((item, outcome))
    return chosen


def job_from_ledger(
    state: LedgerState,
    ledger_path: Path,
    items: Sequence[WorkItem],
    concurrency: int | None = None,
    budget_usd: float | None = None,
    endpoint: str | None = None,
) -> Job:
    """A Job whose settings come from the ledger's latest `job` line and whose items are given."""
    settings = _settings(state, ledger_path)
    latest = state.jobs[-1]
    pricing, book = ledger_pricing(state, ledger_path)
    output_dir = settings.get("output_dir")
    return Job(
        name=latest.job or ledger_path.parent.name,
        manifest_path=Path(latest.manifest or ledger_path),
        manifest_sha256=latest.manifest_sha256 or "",
        endpoint=endpoint or str(settings.get("endpoint") or _default("endpoint")),
        auth=str(settings.get("auth") or _default("auth")),
        api_key_env=str(settings.get("api_key_env") or _default("api_key_env")),
        concurrency=concurrency or int(settings.get("concurrency") or _default("concurrency")),
        budget_usd=budget_usd if budget_usd is not None else settings.get("budget_usd"),
        output_dir=Path(str(output_dir)) if output_dir else ledger_path.parent,
        ledger_path=ledger_path.resolve(),
        timeouts=_model(Timeouts, settings.get("timeouts"), Timeouts()),
        retry=_model(RetrySettings, settings.get("retry"), RetrySettings()),
        adaptive=bool(settings.get("adaptive", _default("adaptive"))),
        rate_limit_rpm=settings.get("rate_limit_rpm"),
        price_book=book,
        pricing=pricing,
        items=tuple(items),
        allow_insecure_http=bool(
            settings.get("allow_insecure_http", _default("allow_insecure_http"))
        ),
        optimize_inputs=str(settings.get("optimize_inputs") or _default("optimize_inputs")),
        metadata=_metadata(settings.get("metadata")),
    )


def ledger_pricing(state: LedgerState, ledger_path: Path) -> tuple[dict[str, PriceRule], str]:
    """The price overrides and price book recorded by the latest `job` line."""
    settings = _settings(state, ledger_path)
    pricing = {
        str(model): rule
        for model, data in (settings.get("pricing") or {}).items()
        if (rule := rule_from_json(data)) is not None
    }
    return pricing, str(settings.get("price_book") or _default("price_book"))


def _metadata(recorded: Any) -> str:
    """The job's `metadata`. A `job` line names it only when it is not the default, so a line
    without it (a default job's, or one older than the setting) means sidecar, as a run of its
    manifest would now (a `<id>.json` batchbanana did not write is still refused)."""
    if recorded in ("none", "sidecar", "embed"):
        return str(recorded)
    return str(_default("metadata"))


def _default(field: str) -> Any:
    """What a manifest that leaves `field` out gets (for a `job` line that lacks it)."""
    return Manifest.model_fields[field].default
