"""Batch mode, found in a review: recovery by display name past a page of large inline results,
collection that stops at a write failure instead of losing the rest, a SUCCEEDED batch whose
output is not there yet, per-line errors with gRPC codes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from batchbanana.simulator import RunningSimulator
from tests.conftest import results, run_subprocess
from tests.test_batch_mode_e2e import (
    KEY_ENV,
    Writer,
    batch_manifest,
    bill,
    items,
    money,
    sim_batches,
    start_run,
    wait_for,
)


def test_a_batch_is_found_by_display_name_past_a_page_holding_large_inline_results(
    make_simulator: Callable[..., RunningSimulator], write_manifest: Writer, tmp_path: Path
) -> None:
    # A finished inline batch whose images (~13 MB of base64, twice) sit in the list's first page.
    sim = make_simulator(price_book="google", batch_pending_s=1.0, batch_running_s=0.1,
                         image_bytes=1_000_000)  # fmt: skip
    big = batch_manifest(write_manifest, sim, items(5, "big"), name="big.yaml", output_dir="big")
    done = run_subprocess("run", str(big), "--no-progress", env=KEY_ENV)
    assert done.returncode == 0, done.stderr
    manifest = batch_manifest(write_manifest, sim, items(2))
    ledger = tmp_path / "out" / "ledger.jsonl"
    process = start_run(manifest)
    wait_for(ledger, '"event": "batch"')
    process.kill()
    process.communicate(timeout=10)
    kept = [line for line in ledger.read_text().splitlines() if '"event": "batch"' not in line]
    ledger.write_text("\n".join(kept) + "\n")
    again = run_subprocess("run", str(manifest), "--no-progress", env=KEY_ENV)
    assert again.returncode == 0, again.stderr
    assert "found again by its display name" in ledger.read_text()
    assert len(sim_batches(sim)) == 2
    assert [line["outcome"] for line in results(ledger)] == ["ok", "ok"]
    spent = sum(money(path)[0] for path in (ledger, tmp_path / "big" / "ledger.jsonl"))
    assert bill(sim)["billed_usd"] == pytest.approx(spent)
