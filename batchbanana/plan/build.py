"""Manifest -> job: check the job-level settings (endpoint, optimiser), gather the items (the
manifest's, then the items_file's rows, as they are read), expand them into work items, check the
edit chains between them, and raise every problem found in the whole manifest together; or build
the Job.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from batchbanana.errors import UserError
from batchbanana.plan.chains import check_chains
from batchbanana.plan.checker import Checker
from batchbanana.plan.expand import expand_items
from batchbanana.plan.inputs import pillow_available
from batchbanana.plan.items_file import read_items_file
from batchbanana.plan.job import SIMULATE, Job
from batchbanana.plan.load import LoadedManifest, load_manifest
from batchbanana.plan.manifest import Item, Manifest
from batchbanana.plan.matrix import check_top_level_matrix
from batchbanana.plan.plain_rows import PlainRow, RawItem, raw_item
from batchbanana.plan.problems import Problem, item_label
from batchbanana.plan.variants import check_top_level
from batchbanana.plan.workitems import WorkItems
from batchbanana.rules.pricing import PriceRule


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


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_job(
    loaded: LoadedManifest,
    problems: list[Problem],
    endpoint_override: str | None = None,
    concurrency_override: int | None = None,
    budget_override: float | None = None,
    mode_override: str | None = None,
) -> Job:
    """Expand and check a schema-valid manifest; raises UserError listing every problem."""
    checker = Checker(loaded.source, problems=list(problems))
    endpoint = _checked_endpoint(loaded, endpoint_override, checker)
    _check_optimizer(loaded, checker)
    mode = mode_override or loaded.manifest.mode
    _check_mode(loaded, mode, mode_override is not None, checker)
    pricing = _pricing(loaded.manifest)
    check_top_level(loaded.manifest, loaded.lines.line_of, checker)
    seen: list[Item] | None = [] if loaded.manifest.matrix is not None else None
    raw_items = _raw_items(loaded, checker, seen)
    expansion = expand_items(raw_items, loaded.manifest, pricing, loaded.base_dir, checker)
    check_top_level_matrix(loaded.manifest, seen or (), loaded.lines.line_of, checker)
    work = expansion.items
    check_chains(work, expansion.unexpanded, checker)
    if not work and not checker.problems:
        checker.add(None, "", "items", "the job has no items")
    _raise_problems(checker, loaded.source)
    if mode == "batch":
        work = work.with_prices(lambda rule: rule.for_batch())
    job = _job(loaded, endpoint, pricing, work, concurrency_override, budget_override)
    return dataclasses.replace(job, mode=mode)


def _check_mode(loaded: LoadedManifest, mode: str, overridden: bool, checker: Checker) -> None:
    """Batch mode is Google's Batch API: API易 (bearer auth) serves synchronous calls only."""
    if mode == "batch" and loaded.manifest.auth != "google":
        line = None if overridden else loaded.lines.line_of(("mode",))
        checker.add(
            line,
            "",
            "--mode" if overridden else "mode",
            "batch mode needs auth: google (Google's Batch API); API易 and other bearer"
            " endpoints serve synchronous calls only; HINT: set auth: google with Google's"
            " endpoint (https://generativelanguage.googleapis.com), or use mode: sync",
        )


def _checked_endpoint(
    loaded: LoadedManifest, endpoint_override: str | None, checker: Checker
) -> str:
    """The endpoint to send to (`--endpoint` over the manifest's), its problem added if any."""
    endpoint = (endpoint_override or loaded.manifest.endpoint).rstrip("/")
    problem = check_endpoint(endpoint, loaded.manifest.allow_insecure_http)
    if problem:
        line = None if endpoint_override else loaded.lines.line_of(("endpoint",))
        checker.add(line, "", "--endpoint" if endpoint_override else "endpoint", problem)
    return endpoint


def _check_optimizer(loaded: LoadedManifest, checker: Checker) -> None:
    if loaded.manifest.optimize_inputs == "lossless" and not pillow_available():
        checker.add(
            loaded.lines.line_of(("optimize_inputs",)),
            "",
            "optimize_inputs",
            "lossless needs Pillow; HINT: pip install 'batchbanana[optimize]', or remove the key",
        )


def _raw_items(
    loaded: LoadedManifest, checker: Checker, seen: list[Item] | None
) -> Iterator[RawItem | PlainRow]:
    """The manifest's items, then the items_file's rows, each with where it was written, as
    they are read; with `seen`, each item is also added to it (and comes as a RawItem)."""
    for index, item in loaded.items:
        raw = RawItem(
            item,
            loaded.source,
            loaded.lines.line_of(("items", index)),
            item_label({"id": item.id} if item.id else None, index),
        )
        if seen is not None:
            seen.append(item)
        yield raw
    for entry in read_items_file(loaded, checker.problems):
        if seen is not None:
            entry = raw_item(entry) if isinstance(entry, tuple) else entry
            seen.append(entry.item)
        yield entry


def _pricing(manifest: Manifest) -> dict[str, PriceRule]:
    return {
        model: PriceRule(entry.per_request_usd, entry.per_million_tokens_usd)
        for model, entry in manifest.pricing.items()
    }


def _raise_problems(checker: Checker, manifest_source: str) -> None:
    """Every problem, the manifest's first, then each other file's, in line order."""
    if not checker.problems:
        return
    ordered = sorted(
        checker.problems,
        key=lambda problem: (
            problem.source != manifest_source,
            problem.source,
            problem.line or 0,
        ),
    )
    raise UserError([problem.render() for problem in ordered])


def _job(
    loaded: LoadedManifest,
    endpoint: str,
    pricing: dict[str, PriceRule],
    work: WorkItems,
    concurrency_override: int | None,
    budget_override: float | None,
) -> Job:
    manifest = loaded.manifest
    base_dir = loaded.base_dir
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
        items=work,
        allow_insecure_http=manifest.allow_insecure_http,
        optimize_inputs=manifest.optimize_inputs,
        batch=manifest.batch,
        metadata=manifest.metadata,
    )


def load_job(
    path: Path,
    endpoint_override: str | None = None,
    concurrency_override: int | None = None,
    budget_override: float | None = None,
    mode_override: str | None = None,
) -> Job:
    """Read, validate and expand a manifest; raises UserError with every problem found."""
    loaded, problems = load_manifest(path)
    if loaded is None:
        problems.sort(key=lambda problem: problem.line or 0)
        raise UserError([problem.render() for problem in problems])
    return build_job(
        loaded, problems, endpoint_override, concurrency_override, budget_override, mode_override
    )
