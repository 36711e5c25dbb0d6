"""Finding the provider's limit, end to end: `batchbanana run` against a simulator that refuses by
capacity or by a per-minute quota it does not announce, in real time (kept short)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from batchbanana.simulator import RunningSimulator
from tests.conftest import CliResult, results, run_subprocess

Cli = Callable[..., CliResult]
Writer = Callable[..., Path]
StartSimulator = Callable[..., RunningSimulator]


def _items(count: int) -> list[dict[str, Any]]:
    return [{"id": f"i{n}", "prompt": f"a lighthouse, view {n}"} for n in range(count)]


def _refused(ledger: Path) -> int:
    return sum(1 for line in results(ledger) if line["outcome"] in ("rate_limited", "unavailable"))


def test_a_capacity_the_client_is_not_told_is_found_and_every_item_ends_ok(
    cli: Cli, write_manifest: Writer, make_simulator: StartSimulator, tmp_path: Path
) -> None:
    """Concurrency 32 against a provider that takes 4 at once: all 48 items ok, the summary
    names the limit, and few requests are refused (none of them billed)."""
    sim = make_simulator(capacity=4, latency_s=0.15, latency_spread=0.3, seed=3)
    manifest = write_manifest(_items(48), endpoint=sim.url, concurrency=32)
    result = cli("run", str(manifest), "--no-progress")
    assert result.exit_code == 0, result.stderr
    ledger = tmp_path / "out" / "ledger.jsonl"
    lines = results(ledger)
    assert {line["item"] for line in lines if line["outcome"] == "ok"} == {
        f"i{n}" for n in range(48)
    }
    assert all(line["billed"] == "no" for line in lines if line["outcome"] != "ok")
    assert _refused(ledger) <= 10
    assert "provider limit: about 4 in flight" in result.stderr
    assert "request(s) refused for load (429/503)" in result.stderr


def test_a_per_minute_quota_paces_the_job_instead_of_each_item_hitting_it(
    cli: Cli, write_manifest: Writer, make_simulator: StartSimulator, tmp_path: Path
) -> None:
    """8 requests per 1-second window, 32 items at concurrency 32: the job waits for the window
    as a whole, learns the quota, and refuses far fewer than an item-by-item retry would."""
    sim = make_simulator(rpm=8, rpm_window_s=1.0, latency_s=0.05, seed=3)
    manifest = write_manifest(_items(32), endpoint=sim.url, concurrency=32)
    result = cli("run", str(manifest), "--no-progress")
    assert result.exit_code == 0, result.stderr
    ledger = tmp_path / "out" / "ledger.jsonl"
    assert sum(1 for line in results(ledger) if line["outcome"] == "ok") == 32
    assert _refused(ledger) <= 8
    assert "about 8 requests per " in result.stderr, result.stderr


def test_adaptive_false_keeps_the_fixed_pool_and_learns_nothing(
    cli: Cli, write_manifest: Writer, make_simulator: StartSimulator, tmp_path: Path
) -> None:
    """`adaptive: false` sends `concurrency` at once whatever the provider says: more refusals,
    and no limit is reported as found."""
    sim = make_simulator(capacity=4, latency_s=0.1, seed=3)
    manifest = write_manifest(
        _items(16),
        endpoint=sim.url,
        concurrency=16,
        adaptive=False,
        retry={"base_delay_s": 0.02, "max_delay_s": 0.1, "max_attempts": 30},
    )
    result = cli("run", str(manifest), "--no-progress")
    assert result.exit_code == 0, result.stderr
    assert _refused(tmp_path / "out" / "ledger.jsonl") >= 12  # the first round alone
    assert "provider limit" not in result.stderr


def test_a_quota_wait_over_max_wait_stops_the_job_even_on_an_items_last_attempt(
    write_manifest: Writer, make_simulator: StartSimulator, tmp_path: Path
) -> None:
    """Two per hour-long window and one attempt per item: the 429's hour-long RetryInfo is over
    retry.max_wait_s, so the job stops at once (exit 1) instead of holding every item at the
    gate for an hour (found in review)."""
    sim = make_simulator(rpm=2, rpm_window_s=3600, latency_s=0.05)
    manifest = write_manifest(_items(5), endpoint=sim.url, concurrency=4, retry={"max_attempts": 1})
    done = run_subprocess("run", str(manifest), "--no-progress", timeout=30)
    assert done.returncode == 1, done.stderr
    assert "over retry.max_wait_s" in done.stderr
    assert sum(1 for line in results(tmp_path / "out" / "ledger.jsonl")
               if line["outcome"] == "ok") == 2  # fmt: skip
