"""The click group and its commands: parse the options, call the pipeline, print the result; and
the console script that runs them and exits promptly."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

import click

from batchbanana import __version__
from batchbanana.cli.exits import user_errors
from batchbanana.cli.retry import retry
from batchbanana.cli.simulate import simulate
from batchbanana.errors import UserError
from batchbanana.plan.build import load_job
from batchbanana.plan.manifest import json_schema
from batchbanana.rules.shards import MAX_SHARDS, parse_shard
from batchbanana.run.endpoint import resolve_api_key
from batchbanana.run.runner import run_job
from batchbanana.run.settings import RunSettings
from batchbanana.run.shards import shard_job


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="batchbanana")
def main() -> None:
    """Generate images in bulk with Nano Banana (Gemini image) models, safely overnight.

    \b
    Start with:  batchbanana run jobs/demo.yaml     (built-in simulator, no key)
    Validate:    batchbanana plan my-job.yaml       (sends nothing)
    """


@main.command()
@click.argument("manifest", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--endpoint", help="Base URL to send to (overrides the manifest), or `simulate`.")
@click.option("--concurrency", type=click.IntRange(1, 1024), help="Requests in flight at once.")
@click.option(
    "--budget",
    type=click.FloatRange(min=0),
    help="Hard cap in USD for the job's ledgers (with --shard: this shard's own).",
)
@click.option(
    "--mode",
    type=click.Choice(["sync", "batch"]),
    help="sync: one request at a time per worker; batch: Google's Batch API at half price,"
    " answered within 24 h (needs auth: google). Overrides the manifest's mode.",
)
@click.option("--no-progress", is_flag=True, help="No progress bar (summaries still go to stderr).")
@click.option(
    "--shard",
    metavar="K/N|auto",
    help="Send only shard K of N (0 <= K < N): the items whose id hashes to K, into"
    " ledger.shard-K-of-N.jsonl beside the job's ledger; the job's budget_usd is shared out"
    " evenly (--budget: this shard's own). auto: from JOB_COMPLETION_INDEX + BATCHBANANA_SHARDS"
    " (Kubernetes Indexed Job) or SLURM_ARRAY_TASK_ID + SLURM_ARRAY_TASK_COUNT (Slurm array).",
)
@user_errors
def run(
    manifest: Path,
    endpoint: str | None,
    concurrency: int | None,
    budget: float | None,
    mode: str | None,
    no_progress: bool,
    shard: str | None,
) -> None:
    """Validate MANIFEST, then run the job (resuming from its ledger if it exists).

    Only what is still owed is sent: items never attempted and items whose last
    attempt was not billed. Exit 0 when every item is ok, 1 when some failed,
    2 for invalid input (nothing sent), 130 when stopped by Ctrl-C.

    \b
    Example:
      export BATCHBANANA_API_KEY=...
      batchbanana run jobs/product-shots.yaml --concurrency 8 --budget 25
      batchbanana run /jobs/job.yaml --shard auto --no-progress   # in a K8s/Slurm array
    """
    if shard is None:
        job = load_job(manifest, endpoint, concurrency, budget, mode)
        sharding = None
    else:
        chosen = parse_shard(shard, os.environ)
        job, sharding = shard_job(load_job(manifest, endpoint, concurrency, None, mode), chosen,
                                  budget)  # fmt: skip
    api_key = resolve_api_key(job.endpoint, job.api_key_env)
    settings = RunSettings.for_job(job, api_key, show_progress=not no_progress)
    sys.exit(run_job(job, settings, sharding=sharding))


@main.command()
@click.argument("manifest", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--shards",
    type=click.IntRange(1, MAX_SHARDS),
    help="Also print the items and estimated cost of each of N shards (run --shard K/N).",
)
@user_errors
def plan(manifest: Path, shards: int | None) -> None:
    """Validate and expand MANIFEST; print the item count and cost estimate. Sends nothing.

    \b
    Examples:
      batchbanana plan jobs/demo.yaml
      batchbanana plan jobs/demo.yaml --shards 4
    """
    from batchbanana.report.estimate import render_plan

    job = load_job(manifest)
    click.echo(render_plan(job, shards), nl=False)


@main.command()
def schema() -> None:
    """Print the manifest's JSON Schema (point your editor's YAML plugin at it).

    \b
    Example:
      batchbanana schema > batchbanana.schema.json
    """
    click.echo(json.dumps(json_schema(), indent=2))


main.add_command(simulate)  # in simulate.py: its options alone fill a module


@main.command()
@click.argument("ledgers", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json", "csv", "html"]),
    default="table",
    show_default=True,
    help="How to print the report.",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the report to this file instead of stdout.",
)
@click.option(
    "--claims",
    is_flag=True,
    help="List the attempts that qualify for API易's failed-generation refund, and their total"
    " (table, json or csv).",
)
@user_errors
def report(
    ledgers: tuple[Path, ...], output_format: str, output: Path | None, claims: bool
) -> None:
    """Cost and failure report of one or more ledgers (several nights or shards merge).

    A LEDGER may be a file, a folder (every ledger*.jsonl in it: a sharded job's
    ledgers) or a quoted glob pattern.

    \b
    Examples:
      batchbanana report out/demo/ledger.jsonl
      batchbanana report out/demo/ledger.jsonl --format json | jq .spent_usd
      batchbanana report out/demo/ --format json        # every shard's ledger, merged
      batchbanana report night1.jsonl night2.jsonl --format html --output report.html
      batchbanana report out/night/ledger.jsonl --claims --format csv --output claims.csv
    """
    from batchbanana.ledger.folder import expand_ledger_args
    from batchbanana.report.loading import load_report
    from batchbanana.report.render import render, render_claims

    if claims and output_format == "html":
        raise UserError(
            "--claims: the claim list is a table, JSON or CSV; HINT: use --format table, json"
            " or csv (the HTML report shows every failure)"
        )
    files = expand_ledger_args(ledgers)
    loaded = load_report(files, warn=lambda text: click.echo(text, err=True))
    text = render_claims(loaded, output_format) if claims else render(loaded, output_format, output)
    if output is None:
        click.echo(text, nl=not text.endswith("\n"))
    else:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UserError(f"{output}: cannot write the report ({exc.strerror})") from None
        click.echo(f"batchbanana: report written to {output}", err=True)


main.add_command(retry)  # in retry.py: paying again, for a ledger, a folder or a shard


@main.command()
@click.argument("ledger", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--endpoint", help="Cancel at this base URL instead of the one the ledger recorded.")
@user_errors
def cancel(ledger: Path, endpoint: str | None) -> None:
    """Cancel the job's unfinished batches (batch mode) at the provider.

    Reads the endpoint, auth and key variable from LEDGER's latest `job` line.
    What a batch answered before it was cancelled is billed; the next
    `batchbanana run` collects it and sends the rest again in a new batch.
    Exit 0 when every cancel was accepted, 1 if one failed, 2 for bad input.
    """
    from batchbanana.run.batch_job import cancel_batches

    sys.exit(cancel_batches(ledger, endpoint, sys.stderr))


def entry() -> None:
    """The console script: the CLI, then a prompt exit.

    Everything that matters is closed and fsynced before a command returns (the ledger, the
    images, the HTTP session); what remains at exit is the interpreter tearing down tens of
    thousands of objects one by one, a tenth of a second or more after a large job. Flush the
    standard streams and leave without it. An unexpected exception still takes the normal path.
    """
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            click.echo(str(exc.code), err=True)
        for stream in (sys.stdout, sys.stderr):
            # a reader that went away (`| head`) is not an error of ours
            with contextlib.suppress(BrokenPipeError, OSError):
                stream.flush()
        os._exit(code)
