"""`batchbanana plan` in both modes: the sync (list) and the batch (half) cost of every job, the
mode the manifest is in, and batch mode shown as unavailable for `auth: bearer` jobs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from batchbanana.ledger.records import JobLine, SentLine
from batchbanana.plan.build import load_job
from tests.conftest import CliResult

Cli = Callable[..., CliResult]
Writer = Callable[..., Path]
GOOGLE = "https://generativelanguage.googleapis.com"
PRO = "gemini-3-pro-image-preview"
FLASH = "gemini-3.1-flash-image-preview"
COLUMNS = [
    "model", "size", "items", "price", "estimate", "sync price", "sync est.", "batch price",
    "batch est.",
]  # fmt: skip


def plan_of(cli: Cli, manifest: Path) -> tuple[dict[str, list[str]], list[str]]:
    """Run `plan`: its table rows by model and size (and "total") split into cells, and every
    line of stdout."""
    result = cli("plan", str(manifest))
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    header = next(index for index, line in enumerate(lines) if line.startswith("model "))
    assert lines[header].split() == [word for column in COLUMNS for word in column.split()]
    rows: dict[str, list[str]] = {}
    for line in lines[header + 1 :]:
        cells = line.split()
        if cells[0] == "total":
            rows["total"] = cells[1:]
            break
        rows[f"{cells[0]} {cells[1]}"] = cells[2:]
    return rows, lines


def google_manifest(write: Writer, mode: str, **settings: Any) -> Path:
    """Seven 4K pro images and one 1K flash image on Google's endpoint at its list prices."""
    items = [{"prompt": "a lighthouse", "repeat": 7}, {"prompt": "a fox", "model": FLASH}]
    return write(
        items,
        job="night",
        endpoint=GOOGLE,
        auth="google",
        price_book="google",
        image_size="4K",
        mode=mode,
        **settings,
    )


def test_a_batch_manifest_shows_batch_prices_as_its_own_and_the_sync_cost_beside(
    cli: Cli, write_manifest: Writer
) -> None:
    """mode: batch prices the job at half: $0.12 per 4K pro image, against $0.24 in sync mode;
    the first columns are what this job pays, the last four both modes."""
    manifest = google_manifest(write_manifest, "batch")
    rows, lines = plan_of(cli, manifest)
    assert rows[f"{PRO} 4K"] == [
        "7", "$0.1200", "$0.8400", "$0.2400", "$1.6800", "$0.1200", "$0.8400",
    ]  # fmt: skip
    assert rows[f"{FLASH} 4K"] == [
        "1", "$0.0755", "$0.0755", "$0.1510", "$0.1510", "$0.0755", "$0.0755",
    ]  # fmt: skip
    assert rows["total"] == ["8", "$0.9155", "$1.8310", "$0.9155"]
    assert lines[1].endswith(", mode batch")
    (mode,) = [line for line in lines if line.startswith("mode ")]
    assert mode.startswith("mode batch: price and estimate are batch prices")
    assert "mode sync would cost $1.8310, so batch saves $0.9155" in mode


def test_a_sync_google_manifest_shows_what_batch_mode_would_save(
    cli: Cli, write_manifest: Writer
) -> None:
    """mode: sync on Google's endpoint pays list prices, and plan says what batch would cost."""
    manifest = google_manifest(write_manifest, "sync")
    rows, lines = plan_of(cli, manifest)
    assert rows[f"{PRO} 4K"] == [
        "7", "$0.2400", "$1.6800", "$0.2400", "$1.6800", "$0.1200", "$0.8400",
    ]  # fmt: skip
    assert rows["total"] == ["8", "$1.8310", "$1.8310", "$0.9155"]
    assert lines[1].endswith(", mode sync")
    (mode,) = [line for line in lines if line.startswith("mode ")]
    assert mode.startswith("mode sync: mode: batch would cost $0.9155 (Google's Batch API")
    assert mode.endswith("saving $0.9155")


def test_a_bearer_job_shows_no_batch_price_and_says_batch_needs_google(
    cli: Cli, write_manifest: Writer
) -> None:
    """API易 (auth: bearer) serves synchronous calls only: the batch columns are "-", and the
    mode line says batch mode needs Google's endpoint, with Google's batch price for scale."""
    manifest = write_manifest(
        [{"prompt": "a lighthouse", "repeat": 7}], endpoint="https://api.apiyi.com", image_size="4K"
    )
    rows, lines = plan_of(cli, manifest)
    assert rows[f"{PRO} 4K"] == ["7", "$0.0900", "$0.6300", "$0.0900", "$0.6300", "-", "-"]
    assert rows["total"] == ["7", "$0.6300", "$0.6300", "-"]
    (mode,) = [line for line in lines if line.startswith("mode ")]
    assert mode.startswith("mode sync: batch mode needs auth: google and Google's endpoint")
    assert "at Google's batch prices (price_book: google) it would cost $0.8400" in mode


def test_a_custom_model_on_bearer_gives_no_google_figure(cli: Cli, write_manifest: Writer) -> None:
    """A model Google's price book does not know gets no made-up batch figure."""
    manifest = write_manifest(
        [{"prompt": "p"}], model="my-model", pricing={"my-model": {"per_request_usd": 0.05}}
    )
    rows, lines = plan_of(cli, manifest)
    assert rows["my-model 1K"][-2:] == ["-", "-"]
    (mode,) = [line for line in lines if line.startswith("mode ")]
    assert "would cost" not in mode


def test_plan_counts_items_waiting_in_a_remote_batch(cli: Cli, write_manifest: Writer) -> None:
    """Items whose `sent` line carries a batch key and has no result are waiting in the batch:
    plan says `run` re-attaches, and counts their price as possibly spent."""
    manifest = google_manifest(write_manifest, "batch")
    job = load_job(manifest)
    ledger = job.ledger_path
    ledger.parent.mkdir(parents=True)
    lines: list[JobLine | SentLine] = [
        JobLine(
            run_id="r-1",
            command="run",
            job="night",
            manifest=str(manifest),
            manifest_sha256=None,
            ledger=str(ledger),
            version=None,
        )
    ]
    for number, item in enumerate(job.items[:3], start=1):
        lines.append(
            SentLine(
                item=item.id,
                attempt=1,
                fingerprint=item.fingerprint,
                price_usd=0.12,
                model=item.model,
                image_size=item.image_size,
                spec=item.spec(),
                batch_key=f"bb-night-1-{number}",
            )
        )
    ledger.write_text("".join(json.dumps(line.to_json()) + "\n" for line in lines))
    _, out = plan_of(cli, manifest)
    (state,) = [line for line in out if line.startswith("ledger ")]
    assert "0 ok already, 5 to send ($0.5555), 0 left for `batchbanana retry`" in state
    assert "3 waiting in a remote batch (`run` re-attaches)" in state
    assert state.endswith("spent so far $0.0000, possibly $0.3600")
