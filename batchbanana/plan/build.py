"""Manifest -> job: expand items (items_file rows, repeats), give ids and fingerprints, check rules.

Everything a request needs is decided here, before anything is sent; every problem found in the
whole manifest is collected and reported together.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from batchbanana.errors import UserError
from batchbanana.plan.inputs import ImageInput, ImageProblem, inspect_file, pillow_available
from batchbanana.plan.items_file import RawItem, read_items_file
from batchbanana.plan.job import (
    DEFAULT_IMAGE_SIZE,
    DEFAULT_MODALITIES,
    SIMULATE,
    Job,
    WorkItem,
    derived_id,
    fingerprint,
)
from batchbanana.plan.load import LoadedManifest, load_manifest
from batchbanana.plan.manifest import ImageEntry, Manifest
from batchbanana.plan.problems import Problem, item_label
from batchbanana.rules.media import (
    ACCEPTED_MIME_TYPES,
    MAX_IMAGES_PER_REQUEST,
    body_size_problem,
    is_url,
    mime_from_url,
    normalise_mime,
    request_body_bytes,
)
from batchbanana.rules.models import check_generation, rules_for
from batchbanana.rules.pricing import PriceRule, price_rule

DEFAULT_MODEL = "gemini-3-pro-image-preview"


def check_endpoint(endpoint: str, allow_insecure_http: bool) -> str | None:
    """Why an endpoint cannot be used, or None when it is a usable base URL (or `simulate`)."""
    if endpoint == SIMULATE:
        return None
    try:
        parts = urlsplit(endpoint)
        hostname = parts.hostname
    except ValueError:
        hostname = None
    if hostname is None or parts.scheme not in ("http", "https"):
        return (
            f"{endpoint!r} is not an http(s) base URL such as https://api.apiyi.com, nor `simulate`"
        )
    if parts.query or parts.fragment:
        return (
            "give the base URL only, without a query (never put the key in the URL: set the"
            " variable named by api_key_env)"
        )
    if (
        ":generateContent" in parts.path
        or "/models/" in parts.path
        or parts.path.endswith("/v1beta")
    ):
        return (
            "give the base URL only (such as https://api.apiyi.com); batchbanana adds"
            " /v1beta/models/MODEL:generateContent itself"
        )
    if parts.scheme == "http" and not allow_insecure_http and not _is_loopback(hostname):
        return (
            "plain http:// would send the API key in clear text; use https://, or set"
            " allow_insecure_http: true if you really mean it"
        )
    return None


def _valid_url(url: str) -> bool:
    try:
        return bool(urlsplit(url).hostname)
    except ValueError:
        return False


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(slots=True)
class _Checker:
    """Collects problems and inspects each distinct local image once."""

    source: str
    problems: list[Problem] = field(default_factory=list)
    files: dict[Path, ImageInput | str] = field(default_factory=dict)

    def add(self, line: int | None, where: str, field_name: str, message: str) -> None:
        self.problems.append(Problem(self.source, line, where, field_name, message))

    def add_item(self, raw: RawItem, field_name: str, message: str) -> None:
        """A problem with one item, placed in the file (manifest or items_file) it came from."""
        self.problems.append(Problem(raw.source, raw.line, raw.where, field_name, message))

    def image(self, path: Path) -> ImageInput | str:
        if path not in self.files:
            try:
                self.files[path] = inspect_file(path)
            except ImageProblem as exc:
                self.files[path] = str(exc)
        return self.files[path]


def _resolve_images(
    raw: RawItem, base_dir: Path, checker: _Checker, inline_urls: bool = False
) -> tuple[tuple[ImageInput, ...], bool]:
    images: list[ImageInput] = []
    ok = True
    for position, entry in enumerate(raw.item.images):
        label = f"images[{position}]"
        if isinstance(entry, ImageEntry):
            reference = entry.url if entry.url is not None else entry.path
            declared = entry.mime_type
        else:
            reference, declared = entry, None
        assert reference is not None  # ImageEntry guarantees one of url/path
        if is_url(reference) and inline_urls and _valid_url(reference):
            # Downloaded and sniffed before anything is sent; its type is known only then.
            images.append(ImageInput(kind="url", reference=reference, mime_type="", inline=True))
            continue
        if is_url(reference) and not _valid_url(reference):
            checker.add_item(raw, label, f"{reference!r} is not a valid URL")
            ok = False
            continue
        if is_url(reference):
            mime = normalise_mime(declared) if declared else mime_from_url(reference)
            if mime is None:
                checker.add_item(
                    raw,
                    label,
                    f"{reference}: cannot tell the image type from the URL;"
                    " HINT: write it as {url: ..., mime_type: image/png}",
                )
                ok = False
            elif mime not in ACCEPTED_MIME_TYPES:
                checker.add_item(
                    raw,
                    label,
                    f"{mime} is not accepted; use one of {', '.join(ACCEPTED_MIME_TYPES)}",
                )
                ok = False
            else:
                images.append(ImageInput(kind="url", reference=reference, mime_type=mime))
            continue
        path = (base_dir / reference).resolve()
        found = checker.image(path)
        if isinstance(found, str):
            checker.add_item(raw, label, found)
            ok = False
            continue
        if declared and normalise_mime(declared) != found.mime_type:
            checker.add_item(
                raw,
                label,
                f"{reference}: declared {declared} but its bytes are {found.mime_type}",
            )
            ok = False
            continue
        images.append(found)
    if len(raw.item.images) > MAX_IMAGES_PER_REQUEST:
        checker.add_item(
            raw,
            "images",
            f"{len(raw.item.images)} images; at most {MAX_IMAGES_PER_REQUEST} per request",
        )
        ok = False
    too_large = body_size_problem(
        request_body_bytes(raw.item.prompt, (image.encoded_size() for image in images))
    )
    if too_large:
        checker.add_item(raw, "images", too_large)
        ok = False
    return tuple(images), ok


def build_job(
    loaded: LoadedManifest,
    problems: list[Problem],
    endpoint_override: str | None = None,
    concurrency_override: int | None = None,
    budget_override: float | None = None,
) -> Job:
    """Expand and check a schema-valid manifest; raises UserError listing every problem."""
    manifest: Manifest = loaded.manifest
    checker = _Checker(loaded.source, problems=list(problems))
    base_dir = loaded.path.parent.resolve()
    lines = loaded.lines

    endpoint = (endpoint_override or manifest.endpoint).rstrip("/")
    endpoint_problem = check_endpoint(endpoint, manifest.allow_insecure_http)
    if endpoint_problem:
        line = None if endpoint_override else lines.line_of(("endpoint",))
        checker.add(line, "", "--endpoint" if endpoint_override else "endpoint", endpoint_problem)
    if manifest.optimize_inputs == "lossless" and not pillow_available():
        checker.add(
            lines.line_of(("optimize_inputs",)),
            "",
            "optimize_inputs",
            "lossless needs Pillow; HINT: pip install 'batchbanana[optimize]', or remove the key",
        )

    raw_items: list[RawItem] = [
        RawItem(
            item,
            loaded.source,
            lines.line_of(("items", index)),
            item_label({"id": item.id} if item.id else None, index),
        )
        for index, item in loaded.items
    ]
    if manifest.items_file:
        file_path = (base_dir / manifest.items_file).resolve()
        raw_items.extend(
            read_items_file(file_path, manifest.items_file, loaded.source, checker.problems)
        )

    pricing = {
        model: PriceRule(entry.per_request_usd, entry.per_million_tokens_usd)
        for model, entry in manifest.pricing.items()
    }
    work: list[WorkItem] = []
    ids_seen: dict[str, tuple[str, int | None]] = {}
    derived_count: dict[str, int] = {}
    for raw in raw_items:
        item = raw.item
        model = item.model or manifest.model or DEFAULT_MODEL
        image_size = item.image_size or manifest.image_size or DEFAULT_IMAGE_SIZE
        aspect_ratio = item.aspect_ratio if item.aspect_ratio is not None else manifest.aspect_ratio
        system_prompt = (
            item.system_prompt if item.system_prompt is not None else manifest.system_prompt
        )
        modalities = tuple(
            item.response_modalities or manifest.response_modalities or DEFAULT_MODALITIES
        )
        for field_name, message in check_generation(model, image_size, aspect_ratio):
            checker.add_item(raw, field_name, message)
        rule = price_rule(manifest.price_book, pricing, model, image_size)
        if rule is None:
            if rules_for(model) is None:
                checker.add_item(
                    raw,
                    "model",
                    f"unknown model {model!r}; HINT: add `pricing: {{{model}:"
                    " {per_request_usd: ...}}` to use it (its sizes are then not checked)",
                )
            else:
                checker.add_item(
                    raw,
                    "image_size",
                    f"the {manifest.price_book} price book has no price for {model}"
                    f" at {image_size}; add a `pricing` entry",
                )
        images, _ = _resolve_images(raw, base_dir, checker, manifest.inline_urls)
        if rule is None:
            continue
        if item.id is not None:
            base_id = item.id
        else:
            meaning: dict[str, Any] = {
                "prompt": item.prompt,
                "images": [
                    str(entry) if isinstance(entry, str) else entry.model_dump()
                    for entry in item.images
                ],
                "model": model,
                "image_size": image_size,
                "aspect_ratio": aspect_ratio,
                "system_prompt": system_prompt,
                "response_modalities": list(modalities),
            }
            if item.repeat != 1:
                # a repeated item differs from a single one, and its variations take -1..-N,
                # so its base id must not be one that a duplicate single item would get
                meaning["repeat"] = item.repeat
            base_id = derived_id(meaning)
            derived_count[base_id] = derived_count.get(base_id, 0) + 1
            if derived_count[base_id] > 1:
                base_id = f"{base_id}-{derived_count[base_id]}"
        ids = (
            [base_id] if item.repeat == 1 else [f"{base_id}-{n}" for n in range(1, item.repeat + 1)]
        )
        print_id = fingerprint(
            model, item.prompt, image_size, aspect_ratio, system_prompt, modalities, images
        )
        for item_id in ids:
            if item_id in ids_seen:
                first_source, first_line = ids_seen[item_id]
                at = f"{first_source}:{first_line}" if first_line else first_source
                checker.add_item(
                    raw,
                    "id",
                    f"duplicate id {item_id!r} (first used at {at}); ids must be unique",
                )
                continue
            ids_seen[item_id] = (raw.source, raw.line)
            work.append(
                WorkItem(
                    id=item_id,
                    prompt=item.prompt,
                    images=images,
                    model=model,
                    image_size=image_size,
                    aspect_ratio=aspect_ratio,
                    system_prompt=system_prompt,
                    response_modalities=modalities,
                    price=rule,
                    fingerprint=print_id,
                )
            )
    if not work and not checker.problems:
        checker.add(None, "", "items", "the job has no items")
    if checker.problems:
        ordered = sorted(
            checker.problems,
            key=lambda problem: (
                problem.source != loaded.source,
                problem.source,
                problem.line or 0,
            ),
        )
        raise UserError([problem.render() for problem in ordered])

    name = manifest.job or loaded.path.stem
    output_dir = (base_dir / (manifest.output_dir or f"out/{name}")).resolve()
    ledger_path = (
        (base_dir / manifest.ledger).resolve() if manifest.ledger else output_dir / "ledger.jsonl"
    )
    return Job(
        name=name,
        manifest_path=loaded.path.resolve(),
        manifest_sha256=loaded.sha256,
        endpoint=endpoint,
        auth=manifest.auth,
        api_key_env=manifest.api_key_env,
        concurrency=concurrency_override or manifest.concurrency,
        budget_usd=budget_override if budget_override is not None else manifest.budget_usd,
        output_dir=output_dir,
        ledger_path=ledger_path,
        timeouts=manifest.timeouts,
        retry=manifest.retry,
        adaptive=manifest.adaptive,
        rate_limit_rpm=manifest.rate_limit_rpm,
        price_book=manifest.price_book,
        pricing=pricing,
        items=tuple(work),
        allow_insecure_http=manifest.allow_insecure_http,
        optimize_inputs=manifest.optimize_inputs,
    )


def load_job(
    path: Path,
    endpoint_override: str | None = None,
    concurrency_override: int | None = None,
    budget_override: float | None = None,
) -> Job:
    """Read, validate and expand a manifest; raises UserError with every problem found."""
    loaded, problems = load_manifest(path)
    if loaded is None:
        problems.sort(key=lambda problem: problem.line or 0)
        raise UserError([problem.render() for problem in problems])
    return build_job(loaded, problems, endpoint_override, concurrency_override, budget_override)
