"""Runs a job or a retry: validate what must be, lock and replay the ledger, send, summarise.

The per-request money sequence lives in attempts.py; what is owed, in ledger/owed.py.
"""

from __future__ import annotations

import dataclasses
import secrets
import signal
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import anyio
import anyio.to_thread

from batchbanana import __version__
from batchbanana.errors import UserError, make_scrubber
from batchbanana.ledger.owed import Decision, decide
from batchbanana.ledger.records import JobLine
from batchbanana.ledger.replay import LedgerState
from batchbanana.ledger.writer import LedgerWriter
from batchbanana.plan.job import Job, WorkItem
from batchbanana.plan.workitems import WorkItems
from batchbanana.rules.pricing import money
from batchbanana.rules.shards import Shard
from batchbanana.run.attempts import JobRunner
from batchbanana.run.batch_collect import collect_owner
from batchbanana.run.chains import count_held, hold_for_batch
from batchbanana.run.client import ProviderClient
from batchbanana.run.downloads import inline_downloads, remove_stale_downloads
from batchbanana.run.endpoint import endpoint_for, resolve_api_key
from batchbanana.run.outputs import (
    prepare_output_dir,
    remove_stale_temps,
)
from batchbanana.run.resume import check_foreign_files, record_dangling
from batchbanana.run.retry_ledgers import retry_ledgers
from batchbanana.run.settings import (
    EXIT_FAILED,
    EXIT_OK,
    RunResult,
    RunSettings,
)
from batchbanana.run.shards import Sharding, open_job_ledgers
from batchbanana.run.summary import print_summary

EXIT_USAGE = 2


def job_record(
    job: Job, settings: RunSettings, run_id: str, sharding: Sharding | None = None
) -> JobLine:
    """The `job` line written at each start of run/retry."""
    recorded = job.settings()
    recorded.update(
        {
            "endpoint": settings.endpoint,
            "auth": settings.auth,
            "concurrency": settings.concurrency,
            "budget_usd": settings.budget_usd,
        }
    )
    if sharding is not None:
        recorded.update(sharding.recorded())
    return JobLine(
        run_id=run_id,
        command=settings.command,
        job=job.name,
        manifest=str(job.manifest_path),
        manifest_sha256=job.manifest_sha256,
        ledger=str(job.ledger_path),
        version=__version__,
        settings=recorded,
    )


def new_run_id(sharding: Sharding | None = None) -> str:
    """A run id that sorts by time: r-YYYYMMDD-HHMMSS-xxxx, and a shard's `-KofN` after it
    (shards start in the same second: their batch keys, made from the run id, must differ)."""
    run_id = datetime.now(UTC).strftime("r-%Y%m%d-%H%M%S-") + secrets.token_hex(2)
    return run_id if sharding is None else f"{run_id}-{sharding.shard.tag}"


async def execute(
    job: Job,
    items: Sequence[WorkItem],
    writer: LedgerWriter,
    state: LedgerState,
    settings: RunSettings,
    stderr: TextIO,
    scrub: Callable[[str], str],
) -> RunResult:
    """Send `items` and return how the run ended (the ledger is written as it goes)."""
    runner = JobRunner(job, writer, state, settings, stderr, scrub)
    endpoint_cm: AbstractAsyncContextManager[str] = endpoint_for(job, settings.endpoint)
    async with (
        endpoint_cm as base_url,
        ProviderClient(base_url, settings.auth, settings.api_key, job.timeouts.connect) as client,
    ):
        await runner.run(items, client)
    totals = runner.totals
    totals.images_encoded = runner.images.encodes
    totals.bytes_saved = runner.images.bytes_saved
    return RunResult.ended(totals, len(runner.unsent), runner.interrupted, runner.stop_reason)


def run_restoring_signals(function: Callable[..., Any], *args: Any) -> RunResult:
    """anyio.run, then the SIGINT/SIGTERM handlers as they were (anyio leaves the defaults)."""
    handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        result: RunResult = anyio.run(function, *args)
    finally:
        for number, handler in handlers.items():
            if handler is not None:
                signal.signal(number, handler)
    return result


def _close_dangling(writer: LedgerWriter, state: LedgerState, stderr: TextIO) -> int:
    """Record the requests a stopped run left in flight as interrupted, and say so; how many."""
    recovered = record_dangling(writer, state)
    if recovered:
        stderr.write(
            f"batchbanana: {recovered} request(s) were in flight when the last run stopped;"
            " recorded as interrupted (billed unknown)\n"
        )
    return recovered


def _ids(items: Sequence[WorkItem]) -> Sequence[str]:
    """The items' ids (read from the columns of a WorkItems)."""
    return items.ids if isinstance(items, WorkItems) else [item.id for item in items]


def run_job(
    job: Job,
    settings: RunSettings,
    stderr: TextIO | None = None,
    sharding: Sharding | None = None,
) -> int:
    """`batchbanana run`: everything after validation. Returns the exit code."""
    stderr = stderr or sys.stderr
    scrub = make_scrubber([settings.api_key])
    prepare_output_dir(job.output_dir)
    writer, state = open_job_ledgers(job, sharding, settings, scrub, stderr)
    try:
        decision = decide(job.items, state)
        check_foreign_files(job, decision.to_send, state)
        owners = (collect_owner(job.ledger_path),)
        remove_stale_temps(job.output_dir, lambda: {*_ids(job.items), *owners})
        remove_stale_downloads(job.output_dir, job.ledger_path)
        # URL images to inline are fetched and checked before the run is recorded or paid for.
        with inline_downloads(
            job.output_dir, job.ledger_path, decision.to_send
        ) as settings.downloads:
            run_id = new_run_id(sharding)
            writer.append_sync(job_record(job, settings, run_id, sharding))
            if _close_dangling(writer, state, stderr):
                decision = decide(job.items, state)  # those items are judged anew
            if decision.done:
                stderr.write(
                    f"batchbanana: {len(decision.done)} item(s) already ok in the ledger; not"
                    " sent again\n"
                )
            started = time.monotonic()
            if job.mode == "batch":
                from batchbanana.run.batch_job import execute_batch

                sendable, held = hold_for_batch(decision.to_send, state, writer)  # edit chains
                result = run_restoring_signals(
                    execute_batch, job, sendable, writer, state, settings, stderr, scrub, run_id,
                )  # fmt: skip
                count_held(result, held)
            else:
                result = run_restoring_signals(
                    execute, job, decision.to_send, writer, state, settings, stderr, scrub
                )
            elapsed = time.monotonic() - started
    finally:
        writer.close()
    print_summary(job, decision, result, elapsed, stderr)
    if result.exit_code == EXIT_OK and decision.left_for_retry:
        return EXIT_FAILED
    if result.exit_code == EXIT_OK and decision.in_batch and job.mode != "batch":
        return EXIT_FAILED  # items wait in a remote batch that only batch mode collects
    return result.exit_code


def retry_ledger(
    target: Path,
    *,
    only: set[str] | None,
    concurrency: int | None,
    budget_usd: float | None,
    endpoint: str | None,
    confirm: Callable[[str], bool],
    show_progress: bool = True,
    stderr: TextIO | None = None,
    shard: Shard | None = None,
) -> int:
    """`batchbanana retry`: pay again, explicitly, for the items whose latest outcome failed (of
    a ledger, a folder of ledgers, or one shard of a folder: run/retry_ledgers.py)."""
    from batchbanana.ledger.rebuild import failed_items, job_from_ledger, ledger_pricing
    from batchbanana.plan.build import check_endpoint

    stderr = stderr or sys.stderr
    with retry_ledgers(target, shard, budget_usd, stderr) as opened:
        writer, state, ledger_path = opened.writer, opened.state, opened.path
        pricing, book = ledger_pricing(state, ledger_path)
        chosen = failed_items(state, only, pricing, book, opened.include)
        if not chosen:
            stderr.write("batchbanana: nothing to retry: no item's latest outcome is a failure\n")
            return EXIT_OK
        job = job_from_ledger(state, ledger_path, [item for item, _ in chosen], concurrency,
                              None, endpoint)  # fmt: skip
        job = dataclasses.replace(job, budget_usd=opened.budget_usd)
        problem = check_endpoint(job.endpoint, job.allow_insecure_http)
        if problem:
            raise UserError(f"endpoint: {problem}")
        check_foreign_files(job, job.items, state)
        api_key = resolve_api_key(job.endpoint, job.api_key_env)
        scrub = make_scrubber([api_key])
        writer.set_scrubber(scrub)
        counts: dict[str, int] = {}
        for _, outcome in chosen:
            counts[outcome] = counts.get(outcome, 0) + 1
        estimate = money(sum(item.price.estimate_usd(item.image_size) for item, _ in chosen))
        described = ", ".join(f"{count} {name}" for name, count in sorted(counts.items()))
        question = f"retry {len(chosen)} item(s) ({described}) at up to ${estimate:.4f}?"
        if not confirm(question):
            stderr.write("batchbanana: retry cancelled; nothing was sent\n")
            return EXIT_FAILED
        prepare_output_dir(job.output_dir)
        remove_stale_temps(job.output_dir, lambda: set(_ids(job.items)))
        remove_stale_downloads(job.output_dir, job.ledger_path)
        settings = RunSettings.for_job(job, api_key, show_progress, command="retry")
        with inline_downloads(job.output_dir, job.ledger_path, job.items) as settings.downloads:
            sharding = opened.sharding
            writer.append_sync(job_record(job, settings, new_run_id(sharding), sharding))
            _close_dangling(writer, state, stderr)
            started = time.monotonic()
            result = run_restoring_signals(
                execute, job, job.items, writer, state, settings, stderr, scrub
            )
            elapsed = time.monotonic() - started
    print_summary(job, Decision(), result, elapsed, stderr)
    return result.exit_code
