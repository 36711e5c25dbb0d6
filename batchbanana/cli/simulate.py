"""`batchbanana simulate`: the simulator's many options (latency, fault rates, prices, batch
timing and endings), turned into a SimulatorConfig and served in the foreground."""

from __future__ import annotations

from collections.abc import Callable

import click

from batchbanana.cli.exits import F, user_errors
from batchbanana.errors import UserError
from batchbanana.rules.pricing import PRICE_BOOKS


def _share(name: str, what: str) -> Callable[[F], F]:
    """A `simulate --rate-*` option: the share of answers the simulator turns into `what`."""
    return click.option(name, type=click.FloatRange(0, 1), default=0.0, help=f"Share of {what}.")


def _seconds(name: str, default: float | None, text: str) -> Callable[[F], F]:
    """A `simulate` option in seconds, handed on with the unit in its name (--slow -> slow_s)."""
    return click.option(
        name,
        name.removeprefix("--").replace("-", "_") + "_s",
        type=click.FloatRange(min=0),
        default=default,
        show_default=default is not None,
        help=text,
    )


@click.command()
@user_errors
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
@_seconds("--latency", 0.0, "Seconds before each answer (the mean, with --latency-spread).")
@click.option(
    "--latency-spread",
    type=click.FloatRange(min=0),
    default=0.0,
    help="Spread answer times lognormally around --latency (sigma, e.g. 0.3).",
)
@click.option(
    "--capacity",
    type=click.IntRange(min=1),
    default=None,
    help="Answer 503 overloaded while this many are being generated.",
)
@click.option(
    "--rpm",
    type=click.IntRange(min=1),
    default=None,
    help="Answer 429 (per-minute QuotaFailure, RetryInfo) past this many per window.",
)
@_seconds("--rpm-window", 60.0, "The --rpm window (shorter to compress time).")
@_seconds("--limits-double-at", None, "Double --capacity and --rpm this long after start.")
@_share("--rate-429", "429 answers")
@_share("--rate-503", "503 answers")
@_share("--rate-500", "500 answers")
@_share("--rate-refuse", "billed safety refusals")
@_share("--rate-no-image", "billed answers without an image")
@_share("--rate-drop", "connections dropped after the request (billed)")
@_share("--rate-slow", "slow answers (see --slow)")
@_seconds("--slow", 30.0, "Seconds a slow answer takes.")
@_seconds("--retry-after", None, "Retry-After seconds on random 429/503.")
@click.option(
    "--image-bytes",
    type=click.IntRange(min=0),
    default=None,
    help="Pad answer PNGs to about this size (memory benchmarks).",
)
@click.option("--seed", type=int, default=None, help="Seed for the fault dice.")
@_seconds("--batch-pending", 0.5, "Seconds a batch stays PENDING.")
@_seconds("--batch-running", 1.0, "Seconds a batch stays RUNNING while its requests are answered.")
@click.option(
    "--batch-end",
    type=click.Choice(["succeeded", "failed", "expired", "cancelled"]),
    default="succeeded",
    show_default=True,
    help="How every batch ends (cancelled: with the first half of its responses).",
)
@click.option(
    "--download-503",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="The first N downloads of each batch responses file answer 503.",
)
def simulate(
    host: str,
    port: int,
    price_book: str,
    latency_s: float,
    latency_spread: float,
    capacity: int | None,
    rpm: int | None,
    rpm_window_s: float,
    limits_double_at_s: float | None,
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
    batch_pending_s: float,
    batch_running_s: float,
    batch_end: str,
    download_503: int,
) -> None:
    """Run the built-in provider simulator in the foreground (no key, no network).

    It speaks the Gemini-native API (generateContent, and the Batch and Files
    APIs), bills like the provider (GET /_sim/bill; batch responses at half
    price) and injects faults by rate or by `[sim:...]` directives in prompts,
    for example `[sim:429x2]` (two 429s, then an image), `[sim:refuse]` or, in
    a batch, `[sim:batch_failed]` and `[sim:download503x2]`.

    \b
    Examples:
      batchbanana simulate --port 8765 --rate-429 0.05 &
      batchbanana run job.yaml --endpoint http://127.0.0.1:8765
      batchbanana simulate --latency 1 --latency-spread 0.3 --capacity 16
      batchbanana simulate --rpm 40 --rpm-window 6
      batchbanana simulate --batch-pending 5 --batch-running 30 --download-503 1
    """
    from batchbanana.simulator import SimulatorConfig, serve

    try:
        config = SimulatorConfig(
            latency_s=latency_s,
            latency_spread=latency_spread,
            capacity=capacity,
            rpm=rpm,
            rpm_window_s=rpm_window_s,
            limits_double_at_s=limits_double_at_s,
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
            batch_pending_s=batch_pending_s,
            batch_running_s=batch_running_s,
            batch_end=batch_end,
            download_503=download_503,
        )
    except ValueError as exc:
        raise UserError(f"simulate: {exc}") from None
    try:
        serve(config, host=host, port=port)
    except OSError as exc:
        raise UserError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}); HINT: pick another --port,"
            " or --port 0 for a free one"
        ) from None
