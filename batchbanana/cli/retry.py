"""`batchbanana retry`: pay again, explicitly, for failed items of a ledger, of a sharded job's
folder, or of one shard of it (run/retry_ledgers.py says which ledger each appends to)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from batchbanana.cli.exits import user_errors
from batchbanana.errors import UserError
from batchbanana.rules.shards import parse_shard


@click.command()
@click.argument("ledger", type=click.Path(path_type=Path))
@click.option(
    "--only",
    metavar="OUTCOME[,OUTCOME...]",
    help="Re-run only items whose latest outcome is one of these (e.g. timeout,refused).",
)
@click.option("--concurrency", type=click.IntRange(1, 1024), help="Requests in flight at once.")
@click.option(
    "--budget",
    type=click.FloatRange(min=0),
    help="Hard cap in USD for the job's ledgers (with --shard: this shard's own).",
)
@click.option("--endpoint", help="Send to this base URL instead of the one the ledger recorded.")
@click.option("--yes", is_flag=True, help="Do not ask to confirm the cost (for scripts).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option(
    "--shard",
    metavar="K/N|auto",
    help="With a folder: retry only shard K of N's items, appending to its ledger (shards of one"
    " count retry side by side); --budget is then this shard's.",
)
@user_errors
def retry(
    ledger: Path,
    only: str | None,
    concurrency: int | None,
    budget: float | None,
    endpoint: str | None,
    yes: bool,
    no_progress: bool,
    shard: str | None,
) -> None:
    """Pay again for failed items: re-run those whose latest outcome is a failure.

    Items are rebuilt from the LEDGER alone (the manifest may be gone) and the
    new attempts are appended to it. LEDGER may be a sharded job's folder: every
    ledger*.jsonl in it is held and merged, and new attempts go to its
    ledger.jsonl; with --shard K/N, only that shard's. The folder's other
    ledgers are always read, so nothing ok elsewhere is paid for again. On a
    terminal it asks to confirm the cost; `--yes` skips that; with no terminal
    and no `--yes` it exits 2.

    \b
    Examples:
      batchbanana retry out/night/ledger.jsonl --only timeout,server_error
      batchbanana retry out/night/ledger.jsonl --yes --budget 10
      batchbanana retry out/night/ --shard auto --yes        # in a K8s/Slurm array
    """
    from batchbanana.ledger.rebuild import parse_only
    from batchbanana.run.runner import retry_ledger

    outcomes = parse_only(only)

    def confirm(question: str) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            raise UserError(
                f"{question} There is no terminal to ask on: add --yes to confirm the cost"
            )
        return click.confirm(question, default=False, err=True)

    chosen = parse_shard(shard, os.environ) if shard is not None else None
    sys.exit(
        retry_ledger(
            ledger,
            shard=chosen,
            only=outcomes,
            concurrency=concurrency,
            budget_usd=budget,
            endpoint=endpoint,
            confirm=confirm,
            show_progress=not no_progress,
        )
    )
