"""What one run has spent and how its items ended, kept up to date as results arrive (the progress
bar and the summary read it)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class RunTotals:
    """Money and outcomes of one run, kept up to date as results arrive."""

    spent_usd: float = 0.0  # whole ledger, this run included
    possibly_spent_usd: float = 0.0
    run_spent_usd: float = 0.0
    outcomes: dict[str, int] = field(default_factory=dict)  # final outcome per item this run
    free_retries: int = 0
    refused: int = 0  # requests the provider refused for load (429, 503)
    limit_found: str | None = None  # the provider's limit as found, in words
    over_budget_usd: float = 0.0  # what the items refused by the budget would have cost
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (item, outcome, error)
    inline_images_sent: int = 0  # input images sent inline, counting every request
    images_encoded: int = 0  # distinct input images read and encoded (once each per run)
    bytes_saved: int = 0  # by optimize_inputs: lossless
