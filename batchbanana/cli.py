"""The command line: parse options, call the pipeline, render results, map errors to exit codes.

No rules live here. User mistakes become one line each on stderr and exit 2, never a traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from batchbanana import __version__
from batchbanana.errors import UserError
from batchbanana.plan.build import load_job
from batchbanana.plan.manifest import json_schema
from batchbanana.rules.pricing import PRICE_BOOKS
from batchbanana.run.attempts import RunSettings
from batchbanana.run.runner import EXIT_INTERRUPTED, EXIT_USAGE, resolve_api_key, run_job

F = TypeVar("F", bound=Callable[..., Any])


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _user_errors(command: F) -> F:
    """Turn a UserError into its lines on stderr and exit 2."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # SIGTERM outside the run's own handling (validation, downloads) stops like Ctrl-C.
        previous = signal.signal(signal.SIGTERM, _terminate)
        try:
            return command(*args, **kwargs)
        except UserError as exc:
            for problem in exc.problems:
                click.echo(problem, err=True)
            if len(exc.problems) > 1:
                click.echo(f"batchbanana: {len(exc.problems)} problems; nothing was sent", err=True)
            sys.exit(EXIT_USAGE)
        except KeyboardInterrupt:
            click.echo("batchbanana: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        finally:
            signal.signal(signal.SIGTERM, previous)

    return wrapper  # type: ignore[return-value]


def _share(name: str, what: str) -> Callable[[F], F]:
    """A `simulate --rate-*` option: the share of answers the simulator turns into `what`."""
    return click.option(name, type=click.FloatRange(0, 1), default=0.0, help=f"Share of {what}.")


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
    "--budget", type=click.FloatRange(min=0), help="Hard cap in USD for the whole ledger."
)
@click.option("--no-progress", is_flag=True, help="No progress bar (summaries still go to stderr).")
@_user_errors
def run(
    manifest: Path,
    endpoint: str | None,
    concurrency: int | None,
    budget: float | None,
    no_progress: bool,
) -> None:
    """Validate MANIFEST, then run the job (resuming from its ledger if it exists).

    Only what is still owed is sent: items never attempted and items whose last
    attempt was not billed. Exit 0 when every item is ok, 1 when some failed,
    2 for invalid input (nothing sent), 130 when stopped by Ctrl-C.

    \b
    Example:
      export BATCHBANANA_API_KEY=...
      batchbanana run jobs/product-shots.yaml --concurrency 8 --budget 25
    """
    job = load_job(manifest, endpoint, concurrency, budget)
    api_key = resolve_api_key(job.endpoint, job.api_key_env)
    sys.exit(run_job(job, RunSettings.for_job(job, api_key, show_progress=not no_progress)))


@main.command()
@click.argument("manifest", type=click.Path(dir_okay=False, path_type=Path))
@_user_errors
def plan(manifest: Path) -> None:
    """Validate and expand MANIFEST; print the item count and cost estimate. Sends nothing.

    \b
    Example:
      batchbanana plan jobs/demo.yaml
    """
    from batchbanana.report.estimate import render_plan

    job = load_job(manifest)
    click.echo(render_plan(job), nl=False)


@main.command()
def schema() -> None:
    """Print the manifest's JSON Schema (point your editor's YAML plugin at it).

    \b
    Example:
      batchbanana schema > batchbanana.schema.json
    """
    click.echo(json.dumps(json_schema(), indent=2))


@main.command()
@_user_errors
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8765,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port (0 picks a free one).",
)
@click.option(
    "--price-book",
    type=click.Choice(PRICE_BOOKS),
    default="apiyi",
    show_default=True,
    help="Prices the simulator bills at.",
)
@click.option(
    "--latency",
    "latency_s",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Seconds before each answer.",
)
@_share("--rate-429", "429 answers")
@_share("--rate-503", "503 answers")
@_share("--rate-500", "500 answers")
@_share("--rate-refuse", "billed safety refusals")
@_share("--rate-no-image", "billed answers without an image")
@_share("--rate-drop", "connections dropped after the request (billed)")
@_share("--rate-slow", "slow answers (see --slow)")
@click.option(
    "--slow",
    "slow_s",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds a slow answer takes.",
)
@click.option(
    "--retry-after",
    "retry_after_s",
    type=click.FloatRange(min=0),
    default=None,
    help="Retry-After seconds on random 429/503.",
)
@click.option(
    "--image-bytes",
    type=click.IntRange(min=0),
    default=None,
    help="Pad answer PNGs to about this size (memory benchmarks).",
)
@click.option("--seed", type=int, default=None, help="Seed for the fault dice.")
def simulate(
    host: str,
    port: int,
    price_book: str,
    latency_s: float,
    rate_429: float,
    rate_503: float,
    rate_500: float,
    rate_refuse: float,
    rate_no_image: float,
    rate_drop: float,
    rate_slow: float,
    slow_s: float,
    retry_after_s: float | None,
    image_bytes: int | None,
    seed: int | None,
) -> None:
    """Run the built-in provider simulator in the foreground (no key, no network).

    It speaks the Gemini-native API, bills like the provider (GET /_sim/bill)
    and injects faults by rate or by `[sim:...]` directives in prompts, for
    example `[sim:429x2]` (two 429s, then an image) or `[sim:refuse]`.

    \b
    Example:
      batchbanana simulate --port 8765 --rate-429 0.05 &
      batchbanana run job.yaml --endpoint http://127.0.0.1:8765
    """
    from batchbanana.simulator import SimulatorConfig, serve

    config = SimulatorConfig(
        latency_s=latency_s,
        rate_429=rate_429,
        rate_503=rate_503,
        rate_500=rate_500,
        rate_refuse=rate_refuse,
        rate_no_image=rate_no_image,
        rate_drop=rate_drop,
        rate_slow=rate_slow,
        slow_s=slow_s,
        retry_after_s=retry_after_s,
        image_bytes=image_bytes,
        seed=seed,
        price_book=price_book,
    )
    try:
        serve(config, host=host, port=port)
    except OSError as exc:
        raise UserError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}); HINT: pick another --port,"
            " or --port 0 for a free one"
        ) from None


@main.command()
@click.argument("ledgers", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
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
@_user_errors
def report(ledgers: tuple[Path, ...], output_format: str, output: Path | None) -> None:
    """Cost and failure report of one or more ledgers (several nights or shards merge).

    \b
    Examples:
      batchbanana report out/demo/ledger.jsonl
      batchbanana report out/demo/ledger.jsonl --format json | jq .spent_usd
      batchbanana report night1.jsonl night2.jsonl --format html --output report.html
    """
    from batchbanana.report.loading import load_report
    from batchbanana.report.render import render

    for path in ledgers:
        if not path.is_file():
            raise UserError(f"{path}: no such ledger file")
    loaded = load_report(list(ledgers), warn=lambda text: click.echo(text, err=True))
    text = render(loaded, output_format, output)
    if output is None:
        click.echo(text, nl=not text.endswith("\n"))
    else:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UserError(f"{output}: cannot write the report ({exc.strerror})") from None
        click.echo(f"batchbanana: report written to {output}", err=True)


@main.command()
@click.argument("ledger", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--only",
    metavar="OUTCOME[,OUTCOME...]",
    help="Re-run only items whose latest outcome is one of these (e.g. timeout,refused).",
)
@click.option("--concurrency", type=click.IntRange(1, 1024), help="Requests in flight at once.")
@click.option(
    "--budget", type=click.FloatRange(min=0), help="Hard cap in USD for the whole ledger."
)
@click.option("--endpoint", help="Send to this base URL instead of the one the ledger recorded.")
@click.option("--yes", is_flag=True, help="Do not ask to confirm the cost (for scripts).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@_user_errors
def retry(
    ledger: Path,
    only: str | None,
    concurrency: int | None,
    budget: float | None,
    endpoint: str | None,
    yes: bool,
    no_progress: bool,
) -> None:
    """Pay again for failed items: re-run those whose latest outcome is a failure.

    Items are rebuilt from the LEDGER alone (the manifest may be gone) and the
    new attempts are appended to it. On a terminal it asks to confirm the cost;
    `--yes` skips that; with no terminal and no `--yes` it exits 2.

    \b
    Examples:
      batchbanana retry out/night/ledger.jsonl --only timeout,server_error
      batchbanana retry out/night/ledger.jsonl --yes --budget 10
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

    sys.exit(
        retry_ledger(
            ledger,
            only=outcomes,
            concurrency=concurrency,
            budget_usd=budget,
            endpoint=endpoint,
            confirm=confirm,
            show_progress=not no_progress,
        )
    )


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
