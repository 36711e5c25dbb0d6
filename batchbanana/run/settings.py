"""How a run sends (endpoint, key, limits, as the job and the command line set them) and how it
ended: what the runner is handed, and what it hands back."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from batchbanana.plan.job import Job
from batchbanana.run.totals import RunTotals


@dataclass(slots=True)
class RunSettings:
    """How to send: where, with which key, within which limits."""

    endpoint: str
    auth: str
    api_key: str
    concurrency: int
    budget_usd: float | None
    show_progress: bool = True
    command: str = "run"
    rng: random.Random = field(default_factory=random.Random)
    downloads: dict[str, tuple[Path, str]] = field(default_factory=dict)  # inline_urls
    # What the other ledgers of the folder commit and the budget counts too (an unsharded run's
    # ledger state already includes it; a shard counts its own ledger only).
    elsewhere_usd: float = 0.0

    @classmethod
    def for_job(
        cls, job: Job, api_key: str, show_progress: bool = True, command: str = "run"
    ) -> RunSettings:
        """The settings a job's own fields give (command-line overrides are already in the job)."""
        return cls(
            endpoint=job.endpoint,
            auth=job.auth,
            api_key=api_key,
            concurrency=job.concurrency,
            budget_usd=job.budget_usd,
            show_progress=show_progress,
            command=command,
        )


EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130


@dataclass(slots=True)
class RunResult:
    """How a run ended."""

    exit_code: int
    totals: RunTotals
    stop_reason: str | None = None

    @classmethod
    def ended(
        cls, totals: RunTotals, unsent: int, interrupted: bool, stop_reason: str | None
    ) -> RunResult:
        """A run's result, sync or batch: 130 when a signal stopped it, 1 when an item is not
        ok (or `unsent` were left) or a job-level stop came, else 0."""
        if unsent:
            totals.outcomes["not_sent"] = unsent
        failed = any(outcome != "ok" for outcome in totals.outcomes)
        if interrupted:
            code = EXIT_INTERRUPTED
        elif failed or stop_reason:
            code = EXIT_FAILED
        else:
            code = EXIT_OK
        return cls(code, totals, stop_reason)
