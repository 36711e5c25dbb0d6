"""What a job will cost before it runs: requests and dollars per model and size (`plan`), in
the job's own mode and in both modes, sync (list prices) and batch (Google's Batch API, half);
and per combination of each item's matrix."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from batchbanana.ledger.folder import folder_ledgers, read_folder
from batchbanana.ledger.owed import decide
from batchbanana.plan.chains import uses
from batchbanana.plan.inputs import ImageInput, optimize_lossless
from batchbanana.plan.job import Job
from batchbanana.plan.shape import Shape
from batchbanana.plan.workitems import prompts_and_shapes, shapes_of
from batchbanana.report.matrices import describe_matrices
from batchbanana.report.shards import describe_shards
from batchbanana.rules.media import request_body_bytes
from batchbanana.rules.models import NO_GROUNDING
from batchbanana.rules.pricing import BATCH_DISCOUNT, book_rule, money, price_rule

BATCH_NOTE = "Google's Batch API: half the list price, results within 24 hours"


@dataclass(frozen=True, slots=True)
class EstimateRow:
    """Items of one model and size, and what they cost: `price_usd` and `estimate_usd` in the
    job's own mode, then in each mode (batch None where batch mode is not available)."""

    model: str
    image_size: str
    items: int
    price_usd: float
    estimate_usd: float
    sync_price_usd: float
    sync_estimate_usd: float
    batch_price_usd: float | None
    batch_estimate_usd: float | None


def batch_available(job: Job) -> bool:
    """Batch mode is Google's Batch API: only a job with `auth: google` can use it."""
    return job.auth == "google"


def _mode_prices(job: Job, item: Shape) -> tuple[float, float]:
    """(sync, batch) price of one request: a batch job's items carry batch prices already, so
    its list price is the manifest's rule before the discount."""
    if job.mode != "batch":
        return item.price.estimate_usd(item.image_size), item.price.for_batch().estimate_usd(
            item.image_size
        )
    batch = item.price.estimate_usd(item.image_size)
    rule = price_rule(job.price_book, job.pricing, item.model, item.image_size)
    sync = rule.estimate_usd(item.image_size) if rule is not None else batch / BATCH_DISCOUNT
    return sync, batch


def estimate_rows(job: Job) -> list[EstimateRow]:
    """Requests and estimated cost per model x size, in the order they first appear."""
    counts: dict[tuple[str, str], int] = defaultdict(int)
    prices: dict[tuple[str, str], tuple[float, float, float]] = {}
    for shape, count in shapes_of(job.items):
        key = (shape.model, shape.image_size)
        counts[key] += count
        prices[key] = (shape.price.estimate_usd(shape.image_size), *_mode_prices(job, shape))
    rows = []
    batch = batch_available(job)
    for (model, size), count in counts.items():
        own, sync, half = prices[(model, size)]
        rows.append(
            EstimateRow(
                model,
                size,
                count,
                own,
                money(count * own),
                sync,
                money(count * sync),
                half if batch else None,
                money(count * half) if batch else None,
            )
        )
    return rows


def _usd(amount: float) -> str:
    return f"${amount:.4f}"


def describe_inputs(job: Job) -> list[str]:
    """Input images: how many, how big, the largest request body, and any lossless saving."""
    files: dict[str, ImageInput] = {}
    urls: set[str] = set()
    for shape, _ in shapes_of(job.items):
        for image in shape.images:
            if image.kind == "file":
                files[image.reference] = image
            elif image.kind == "url":
                urls.add(image.reference)
    if not files and not urls:
        return []
    largest = 0
    for prompt, shape in prompts_and_shapes(job.items):
        body = request_body_bytes(prompt, (image.encoded_size() for image in shape.images))
        largest = max(largest, body)
    total_mb = sum(image.size_bytes or 0 for image in files.values()) / 1e6
    lines = [
        f"inputs: {len(files)} distinct local image(s), {total_mb:.2f} MB (each read and encoded"
        f" once per run); {len(urls)} URL(s); largest request about {largest / 1e6:.2f} MB"
    ]
    if job.optimize_inputs == "lossless" and files:
        saved = 0
        for image in files.values():
            data = Path(image.reference).read_bytes()
            saved += len(data) - len(optimize_lossless(data, image.mime_type))
        lines.append(f"optimize_inputs: lossless saves {saved / 1e6:.2f} MB of local inputs")
    return lines


def describe_chains(job: Job) -> list[str]:
    """How many items use another item's output (`item:<id>`) and so wait for it."""
    users = 0
    used: set[str] = set()
    for shape, count in shapes_of(job.items):
        found = uses(shape.images)
        if found:
            users += count
            used.update(found)
    if not users:
        return []
    return [
        f"chains: {users} item(s) use the output of {len(used)} other item(s) (item:<id>);"
        " each is sent once the items it uses are ok, and is blocked if one is not"
    ]


def describe_grounding(job: Job) -> list[str]:
    """How many items search Google and think high, and what the estimate leaves out for them."""
    lines = []
    grounded: Counter[str] = Counter()
    high = 0
    for shape, count in shapes_of(job.items):
        if shape.grounding != NO_GROUNDING:
            grounded[shape.grounding] += count
        high += count if shape.thinking_level == "high" else 0
    if grounded:
        kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(grounded.items()))
        lines.append(
            f"grounding: {sum(grounded.values())} item(s) search Google ({kinds}); search charges"
            " are not in the estimate: no price book here knows a price per search query"
            " (Google bills grounded queries apart from the image)"
        )
    if high:
        lines.append(
            f"thinking_level: {high} item(s) think high (slower answers; priced per request as"
            " any other, or by the answer's tokens when priced per token)"
        )
    return lines


def _cell(amount: float | None, width: int) -> str:
    return f"{'-' if amount is None else _usd(amount):>{width}}"


def mode_lines(job: Job, rows: list[EstimateRow]) -> list[str]:
    """One line on the job's mode and what the other mode would cost (or why batch mode is
    not available: it needs Google's endpoint)."""
    sync = money(sum(row.sync_estimate_usd for row in rows))
    if not batch_available(job):
        line = (
            f"mode {job.mode}: batch mode needs auth: google and Google's endpoint (auth:"
            f" {job.auth}: API易 and other bearer endpoints serve synchronous calls only)"
        )
        google = [book_rule("google", row.model, row.image_size) for row in rows]
        if all(rule is not None for rule in google):
            there = money(
                sum(
                    row.items * rule.for_batch().estimate_usd(row.image_size)
                    for row, rule in zip(rows, google, strict=True)
                    if rule is not None
                )
            )
            line += f"; at Google's batch prices (price_book: google) it would cost {_usd(there)}"
        return [line]
    batch = money(sum(row.batch_estimate_usd or 0.0 for row in rows))
    saved = _usd(money(sync - batch))
    if job.mode == "batch":
        return [
            f"mode batch: price and estimate are batch prices ({BATCH_NOTE});"
            f" mode sync would cost {_usd(sync)}, so batch saves {saved}"
        ]
    return [f"mode sync: mode: batch would cost {_usd(batch)} ({BATCH_NOTE}), saving {saved}"]


def render_plan(job: Job, shards: int | None = None) -> str:
    """The text `batchbanana plan` prints (with `shards`, each of that many shards too)."""
    rows = estimate_rows(job)
    total = money(sum(row.estimate_usd for row in rows))
    sync_total = money(sum(row.sync_estimate_usd for row in rows))
    batch_total = (
        money(sum(row.batch_estimate_usd or 0.0 for row in rows)) if batch_available(job) else None
    )
    lines = [
        f"job {job.name}: {len(job.items)} item(s), {len(job.items)} request(s) if every one"
        f" succeeds first time",
        f"endpoint {job.endpoint}, price book {job.price_book}, concurrency {job.concurrency},"
        f" mode {job.mode}",
        "",
        f"{'model':<32} {'size':>4} {'items':>7} {'price':>9} {'estimate':>11}"
        f" {'sync price':>11} {'sync est.':>11} {'batch price':>11} {'batch est.':>11}",
    ]
    for row in rows:
        lines.append(
            f"{row.model:<32} {row.image_size:>4} {row.items:>7} {_usd(row.price_usd):>9}"
            f" {_usd(row.estimate_usd):>11} {_usd(row.sync_price_usd):>11}"
            f" {_usd(row.sync_estimate_usd):>11} {_cell(row.batch_price_usd, 11)}"
            f" {_cell(row.batch_estimate_usd, 11)}"
        )
    lines.append(
        f"{'total':<32} {'':>4} {len(job.items):>7} {'':>9} {_usd(total):>11}"
        f" {'':>11} {_usd(sync_total):>11} {'':>11} {_cell(batch_total, 11)}"
    )
    lines.extend(mode_lines(job, rows))
    lines.append(
        "worst case: the same; `run` never re-sends a billed or possibly billed attempt"
        " (429/503/no-connection retries are free)"
    )
    lines.extend(describe_matrices(job))
    lines.extend(describe_inputs(job))
    lines.extend(describe_chains(job))
    lines.extend(describe_grounding(job))
    if job.budget_usd is not None:
        verdict = "fits" if total <= job.budget_usd else "does NOT fit"
        lines.append(f"budget ${job.budget_usd:.4f}: the estimate {verdict}")
    decision = None
    if job.ledger_path.exists() or folder_ledgers(job.ledger_path.parent):
        state = read_folder(job.ledger_path, [])  # every ledger of the folder: shards too
        decision = decide(job.items, state)  # exactly what `run` would decide
        done, owed, left = len(decision.done), len(decision.to_send), len(decision.left_for_retry)
        owed_usd = sum(
            shape.price.estimate_usd(shape.image_size) * count
            for shape, count in shapes_of(decision.to_send)
        )
        waiting = (
            f", {len(decision.in_batch)} waiting in a remote batch (`run` re-attaches)"
            if decision.in_batch
            else ""
        )
        lines.append(
            f"ledger {job.ledger_path}: {done} ok already, {owed} to send"
            f" (${money(owed_usd):.4f}), {left} left for `batchbanana retry`{waiting};"
            f" spent so far ${state.spent_usd:.4f}, possibly ${state.possibly_spent_usd:.4f}"
        )
    if shards is not None:
        lines.extend(describe_shards(job, shards, decision))
    return "\n".join(lines) + "\n"
