"""The short account printed on stderr at the end of a run or a retry."""

from __future__ import annotations

from typing import TextIO

from batchbanana.ledger.fold import ELSEWHERE
from batchbanana.ledger.owed import Decision
from batchbanana.plan.job import Job
from batchbanana.rules.outcomes import Billed, Outcome, billed
from batchbanana.run.settings import RunResult

# Failed outcomes that were, or may have been, billed: only `retry` pays for them again.
PAID_FAILURES = frozenset(
    outcome.value
    for outcome in Outcome
    if outcome is not Outcome.OK and billed(outcome) is not Billed.NO
)


def print_summary(
    job: Job, decision: Decision, result: RunResult, elapsed_s: float, stderr: TextIO
) -> None:
    """The short account at the end of a run, on stderr."""
    totals = result.totals
    counts = ", ".join(f"{count} {name}" for name, count in sorted(totals.outcomes.items()))
    sent = sum(totals.outcomes.values())
    lines = [
        f"batchbanana: job {job.name}: {sent} item(s) this run"
        + (f" ({counts})" if counts else "")
        + f" in {elapsed_s:.1f} s",
        f"  spent ${totals.run_spent_usd:.4f} this run; ledger total ${totals.spent_usd:.4f}"
        f" spent, ${totals.possibly_spent_usd:.4f} possibly spent",
    ]
    if job.mode == "batch" and totals.run_spent_usd:
        # Batch prices are half the list price: what was paid is also what was saved.
        lines.append(
            f"  batch mode saved ${totals.run_spent_usd:.4f} against the list price this run"
        )
    if totals.free_retries:
        lines.append(
            f"  {totals.free_retries} request(s) retried at no charge (429/503/no connection)"
        )
    if totals.limit_found or totals.refused:
        found = f"provider limit: {totals.limit_found}; " if totals.limit_found else ""
        lines.append(f"  {found}{totals.refused} request(s) refused for load (429/503)")
    for item_id, outcome, error in totals.failures[:10]:
        lines.append(f"  item '{item_id}': {outcome}: {error}")
    if len(totals.failures) > 10:
        lines.append(f"  ... and {len(totals.failures) - 10} more (see `batchbanana report`)")
    if totals.over_budget_usd:
        lines.append(
            f"  budget: items worth ${totals.over_budget_usd:.4f} were not sent; raise budget_usd"
            " (or --budget) and run again"
        )
    # Items whose final outcome this run was billed or may have been are `retry`'s to pay again.
    elsewhere = sum(1 for _, outcome in decision.left_for_retry if outcome == ELSEWHERE)
    left = (
        len(decision.left_for_retry)
        - elsewhere
        + sum(count for name, count in totals.outcomes.items() if name in PAID_FAILURES)
    )
    if left:
        lines.append(
            f"  {left} item(s) need `batchbanana retry {job.ledger_path}` (their last attempt was"
            " billed or may have been)"
        )
    if elsewhere:
        lines.append(
            f"  {elsewhere} item(s) have a request in flight in another ledger of"
            f" {job.ledger_path.parent} (not sent here): the process holding that ledger records"
            " how it ended when it runs again; `batchbanana retry FOLDER` (which holds them all)"
            " pays for them again"
        )
    if totals.outcomes.get(Outcome.BLOCKED.value):
        lines.append(
            f"  {totals.outcomes[Outcome.BLOCKED.value]} item(s) blocked (not sent, not billed):"
            " an item whose output they use is not ok; `run` sends them once it is"
        )
    if decision.in_batch and job.mode != "batch":
        lines.append(
            f"  {len(decision.in_batch)} item(s) wait in a remote batch of this job: run with"
            " --mode batch to collect them (or `batchbanana cancel` the batch)"
        )
    if totals.outcomes.get("not_sent"):
        lines.append(
            f"  {totals.outcomes['not_sent']} item(s) were not sent; running again sends them"
        )
    if result.stop_reason:
        lines.append(f"  stopped: {result.stop_reason}")
    if totals.inline_images_sent:
        saved = (
            f"; lossless optimisation saved {totals.bytes_saved / 1e6:.2f} MB"
            if totals.bytes_saved
            else ""
        )
        lines.append(
            f"  input images: {totals.images_encoded} read and encoded once each for"
            f" {totals.inline_images_sent} inline use(s){saved}"
        )
    lines.append(f"  images: {job.output_dir}  ledger: {job.ledger_path}")
    stderr.write("\n".join(lines) + "\n")
    stderr.flush()
