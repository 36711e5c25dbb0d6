"""Batch mode's entry points: a job's run in batch mode (re-attach, submit, wait, collect, as
run/batch_mode.py does it) with its exit code, and `cancel`, which cancels a job's unfinished
batches at the provider.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TextIO

import anyio

from batchbanana.errors import BatchCallError, UserError, make_scrubber
from batchbanana.ledger.records import BatchLine
from batchbanana.ledger.replay import LedgerState, scan_ledger
from batchbanana.ledger.writer import LedgerWriter
from batchbanana.plan.job import SIMULATE, Job, WorkItem
from batchbanana.run.batch_api import BatchApi
from batchbanana.run.batch_mode import BatchRun
from batchbanana.run.endpoint import endpoint_for, resolve_api_key
from batchbanana.run.http import HttpSession
from batchbanana.run.resume import open_ledger
from batchbanana.run.settings import EXIT_FAILED, EXIT_OK, RunResult, RunSettings


async def execute_batch(
    job: Job,
    items: Sequence[WorkItem],
    writer: LedgerWriter,
    state: LedgerState,
    settings: RunSettings,
    stderr: TextIO,
    scrub: Callable[[str], str],
    run_id: str,
) -> RunResult:
    """Batch mode: re-attach, submit `items` as batches, wait, collect (run/batch_mode.py)."""
    batch_run = BatchRun(job, writer, state, settings, run_id, stderr, scrub)
    endpoint_cm: AbstractAsyncContextManager[str] = endpoint_for(job, settings.endpoint)
    async with endpoint_cm as base_url, HttpSession() as http:
        api = BatchApi(http, base_url, settings.auth, settings.api_key)
        await batch_run.run(api, list(items))
    totals = batch_run.totals
    after, _ = scan_ledger(job.ledger_path)  # the money as the ledger now says
    totals.spent_usd, totals.possibly_spent_usd = after.spent_usd, after.possibly_spent_usd
    return RunResult.ended(
        totals, len(batch_run.unsent), batch_run.interrupted, batch_run.stop_reason
    )


def cancel_batches(ledger_path: Path, endpoint: str | None, stderr: TextIO) -> int:
    """`batchbanana cancel LEDGER`: ask the provider to cancel every batch of the job that the
    ledger leaves unfinished. Their requests stay in the ledger until a `run` collects the
    cancelled batches (what they answered before the cancel is saved and billed; the rest is
    owed, not billed). Returns the exit code."""
    if not ledger_path.is_file():
        raise UserError(f"{ledger_path}: no such ledger file")
    writer, state = open_ledger(ledger_path, make_scrubber([]), stderr)
    try:
        keys = list(state.open_batches())
        if not keys:
            stderr.write("batchbanana: no unfinished batch in this ledger; nothing to cancel\n")
            return EXIT_OK
        settings = state.jobs[-1].settings if state.jobs else {}
        base = endpoint or str(settings.get("endpoint") or "")
        if base == SIMULATE or not base:
            raise UserError(
                "the job ran on the built-in simulator, which stopped with it: nothing to cancel;"
                " HINT: give --endpoint URL for a simulator you started with `batchbanana simulate`"
            )
        api_key = resolve_api_key(base, str(settings.get("api_key_env") or "BATCHBANANA_API_KEY"))
        writer.set_scrubber(make_scrubber([api_key]))
        auth = str(settings.get("auth") or "google")
        return anyio.run(_cancel_all, state, writer, keys, base, auth, api_key, stderr)
    finally:
        writer.close()


async def _cancel_all(
    state: LedgerState,
    writer: LedgerWriter,
    keys: list[str],
    base: str,
    auth: str,
    api_key: str,
    stderr: TextIO,
) -> int:
    scrub = make_scrubber([api_key])
    code = EXIT_OK
    async with HttpSession() as http:
        api = BatchApi(http, base, auth, api_key)
        for key in keys:
            record = state.batches.get(key)
            try:
                name = record.name if record is not None and record.name else None
                if name is None:
                    found = await api.find(key)
                    name = found.name if found is not None else None
                if name is None:
                    stderr.write(f"batchbanana: {key}: never created; nothing to cancel\n")
                    continue
                await api.cancel(name)
            except BatchCallError as exc:
                stderr.write(f"batchbanana: {key}: could not cancel: {scrub(str(exc))}\n")
                code = EXIT_FAILED
                continue
            writer.append_sync(
                BatchLine(batch_key=key, name=name, state="CANCEL_REQUESTED",
                          note="batchbanana cancel")
            )  # fmt: skip
            stderr.write(
                f"batchbanana: asked to cancel {name}; `batchbanana run` collects what it"
                " answered and leaves the rest owed (not billed)\n"
            )
    return code
