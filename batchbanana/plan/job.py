"""What a job is once planned: its settings (Job) and its work items (WorkItem), each with the
fingerprint of its meaning and the price rule that bills it. build.py builds them from a manifest;
ledger/rebuild.py from a ledger.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from json.encoder import encode_basestring
from pathlib import Path
from typing import Any

from batchbanana.plan.inputs import ImageInput
from batchbanana.plan.manifest import BatchSettings, RetrySettings, Timeouts
from batchbanana.rules.models import NO_GROUNDING
from batchbanana.rules.pricing import PriceRule

SIMULATE = "simulate"  # the endpoint that means the built-in simulator
DEFAULT_MODEL = "gemini-3-pro-image-preview"
DEFAULT_IMAGE_SIZE = "1K"
DEFAULT_MODALITIES = ("TEXT", "IMAGE")


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One request to make: everything needed to send it, price it and recognise it again."""

    id: str
    prompt: str
    images: tuple[ImageInput, ...]
    model: str
    image_size: str
    aspect_ratio: str | None
    system_prompt: str | None
    response_modalities: tuple[str, ...]
    price: PriceRule
    fingerprint: str = ""
    # seeds and matrices (contract section 11)
    seed: int | None = None  # sent as generationConfig.seed
    matrix: tuple[tuple[str, str], ...] = ()  # (key, value) of the matrix combination it is
    variant_of: str | None = None  # the id its matrix combinations share, when it is one
    # grounding and thinking (contract section 13)
    grounding: str = NO_GROUNDING  # "web": Google Search as a tool; "web+image": image search too
    thinking_level: str | None = None  # sent as generationConfig.thinkingConfig.thinkingLevel

    def spec(self) -> dict[str, Any]:
        """What the ledger keeps so that `retry` can send this item again without the manifest."""
        spec: dict[str, Any] = {
            "prompt": self.prompt,
            "images": [image.spec() for image in self.images],
            "model": self.model,
            "image_size": self.image_size,
            "aspect_ratio": self.aspect_ratio,
            "response_modalities": list(self.response_modalities),
        }
        if self.system_prompt is not None:
            spec["system_prompt"] = self.system_prompt
        if self.seed is not None:
            spec["seed"] = self.seed
        spec.update(later_fields(self.grounding, self.thinking_level))
        if self.variant_of is not None:  # not needed to send it again: for reports
            spec["variant_of"] = self.variant_of
            spec["matrix"] = dict(self.matrix)
        return spec


def fingerprint(
    model: str,
    prompt: str,
    image_size: str,
    aspect_ratio: str | None,
    system_prompt: str | None,
    response_modalities: tuple[str, ...],
    images: tuple[ImageInput, ...],
    seed: int | None = None,
    grounding: str = NO_GROUNDING,
    thinking_level: str | None = None,
) -> str:
    """sha256 of a request's meaning: the same meaning always gives the same fingerprint.

    A field added later (`seed`, `grounding`, `thinking_level`) is part of the meaning only when
    set (grounding: other than none), so a request without it keeps the fingerprint it always had
    and its ledger still resumes."""
    meaning: dict[str, Any] = {
        "model": model,
        "prompt": prompt,
        "image_size": image_size,
        "aspect_ratio": aspect_ratio,
        "system_prompt": system_prompt,
        "response_modalities": list(response_modalities),
        "images": [image.meaning() for image in images],
    }
    if seed is not None:
        meaning["seed"] = seed
    meaning.update(later_fields(grounding, thinking_level))
    canonical = json.dumps(meaning, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def later_fields(grounding: str, thinking_level: str | None) -> dict[str, str]:
    """The grounding and thinking level as a spec, a fingerprint and a derived id hold them: only
    when set, so what was written before they existed stays as it was."""
    fields = {}
    if grounding != NO_GROUNDING:
        fields["grounding"] = grounding
    if thinking_level is not None:
        fields["thinking_level"] = thinking_level
    return fields


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class FingerprintTemplate:
    """`fingerprint` for the requests that differ only in their prompt and seed, made faster:
    the canonical JSON around them is written once (keys in sorted order: aspect_ratio,
    grounding, image_size, images, model, prompt, response_modalities, seed, system_prompt,
    thinking_level; grounding and thinking_level only when set)."""

    head: str
    middle: str
    tail: str

    @classmethod
    def of(
        cls,
        model: str,
        image_size: str,
        aspect_ratio: str | None,
        system_prompt: str | None,
        response_modalities: tuple[str, ...],
        images: tuple[ImageInput, ...],
        grounding: str = NO_GROUNDING,
        thinking_level: str | None = None,
    ) -> FingerprintTemplate:
        """The template of requests with these fields."""
        meanings = [image.meaning() for image in images]
        later = later_fields(grounding, thinking_level)
        grounded = f',"grounding":{_canonical(later["grounding"])}' if "grounding" in later else ""
        thinking = (
            f',"thinking_level":{_canonical(thinking_level)}' if "thinking_level" in later else ""
        )
        return cls(
            f'{{"aspect_ratio":{_canonical(aspect_ratio)}{grounded},'
            f'"image_size":{_canonical(image_size)},"images":{_canonical(meanings)},'
            f'"model":{_canonical(model)},"prompt":',
            f',"response_modalities":{_canonical(list(response_modalities))}',
            f',"system_prompt":{_canonical(system_prompt)}{thinking}}}',
        )

    def digest(self, prompt: str, seed: int | None) -> bytes:
        """The sha256 digest `fingerprint` would give (as bytes) for this prompt and seed."""
        seeded = self.middle if seed is None else f'{self.middle},"seed":{seed!r}'
        text = self.head + encode_basestring(prompt) + seeded + self.tail
        return hashlib.sha256(text.encode("utf-8")).digest()


def derived_id(meaning: dict[str, Any]) -> str:
    """A short, stable id from an item's meaning, so inserting a row shifts no other id."""
    canonical = json.dumps(meaning, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:10]


@dataclass(frozen=True, slots=True)
class Job:
    """A validated, expanded job: settings and the ordered list of work items."""

    name: str
    manifest_path: Path
    manifest_sha256: str
    endpoint: str
    auth: str
    api_key_env: str
    concurrency: int
    budget_usd: float | None
    output_dir: Path
    ledger_path: Path
    timeouts: Timeouts
    retry: RetrySettings
    adaptive: bool
    rate_limit_rpm: float | None
    price_book: str
    pricing: dict[str, PriceRule]
    items: Sequence[WorkItem]  # a WorkItems when planned from a manifest
    allow_insecure_http: bool = False
    optimize_inputs: str = "none"
    mode: str = "sync"  # "batch": Google's Batch API at half price (items priced accordingly)
    batch: BatchSettings = field(default_factory=BatchSettings)
    # How each image carries its making (section 11): none | sidecar | embed.
    metadata: str = "sidecar"

    def settings(self) -> dict[str, Any]:
        """The job's settings as the ledger's `job` line records them (never a secret)."""
        recorded = {
            "endpoint": self.endpoint,
            "auth": self.auth,
            "api_key_env": self.api_key_env,
            "concurrency": self.concurrency,
            "budget_usd": self.budget_usd,
            "price_book": self.price_book,
            "pricing": {model: _rule_json(rule) for model, rule in sorted(self.pricing.items())},
            "output_dir": str(self.output_dir),
            "timeouts": self.timeouts.model_dump(by_alias=True),
            "retry": self.retry.model_dump(),
            "adaptive": self.adaptive,
            "rate_limit_rpm": self.rate_limit_rpm,
            "allow_insecure_http": self.allow_insecure_http,
            "optimize_inputs": self.optimize_inputs,
        }
        if self.mode != "sync":  # a synchronous job's line stays as it always was
            recorded.update(mode=self.mode, batch=self.batch.model_dump())
        if self.metadata != "sidecar":  # so does one with the default (see ledger/rebuild.py)
            recorded["metadata"] = self.metadata
        return recorded


def _rule_json(rule: PriceRule) -> dict[str, float]:
    if rule.per_request_usd is not None:
        return {"per_request_usd": rule.per_request_usd}
    return {"per_million_tokens_usd": rule.per_million_tokens_usd or 0.0}


def rule_from_json(data: Any) -> PriceRule | None:
    """A price rule as recorded in a `job` line, or None if the record is not one."""
    if not isinstance(data, dict):
        return None
    per_request = data.get("per_request_usd")
    per_million = data.get("per_million_tokens_usd")
    if isinstance(per_request, int | float):
        return PriceRule(per_request_usd=float(per_request))
    if isinstance(per_million, int | float):
        return PriceRule(per_million_tokens_usd=float(per_million))
    return None
