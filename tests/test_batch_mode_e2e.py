"""Batch mode end to end: the real CLI in a subprocess against the real simulator's Batch and
Files endpoints (contract section 10). Inline and file batches at batch prices, the bill against
the ledger, kill -9 after the create, Ctrl-C while waiting, an expired batch's items owed again,
a batch stuck pending past max_wait_h, `cancel`, and batch mode refused with bearer auth."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from batchbanana.simulator import RunningSimulator
from tests.conftest import read_jsonl, results, run_subprocess

Writer = Callable[..., Path]
FAST = {"poll_s": 0.05, "max_poll_s": 0.2}
KEY_ENV = {"BATCHBANANA_API_KEY": "test-key-not-real"}
PRO_1K_BATCH = 0.067  # half of Google's $0.134 list price


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.load(answer)


def sim_batches(sim: RunningSimulator) -> list[dict[str, Any]]:
    """Every batch the simulator was asked to create."""
    found = _get(sim.url + "/_sim/batches")
    return list(found["batches"] if isinstance(found, dict) else found)


def bill(sim: RunningSimulator) -> dict[str, Any]:
    return dict(_get(sim.url + "/_sim/bill"))


def money(ledger: Path) -> tuple[float, float]:
    report = run_subprocess("report", str(ledger), "--format", "json")
    assert report.returncode == 0, report.stderr
    data = json.loads(report.stdout)
    return data["spent_usd"], data["possibly_spent_usd"]


def assert_bill_matches(ledger: Path, sim: RunningSimulator) -> None:
    spent, possibly = money(ledger)
    billed = bill(sim)["billed_usd"]
    assert spent - 1e-9 <= billed <= spent + possibly + 1e-9, (spent, billed, possibly)


def batch_manifest(write_manifest: Writer, sim: RunningSimulator, items: list[dict[str, Any]],
                   **settings: Any) -> Path:  # fmt: skip
    batch = {**FAST, **settings.pop("batch", {})}
    return write_manifest(
        items, endpoint=sim.url, auth="google", mode="batch", price_book="google",
        batch=batch, **settings,
    )  # fmt: skip


def start_run(manifest: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "batchbanana", "run", str(manifest), "--no-progress", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**__import__("os").environ, **KEY_ENV},
    )  # fmt: skip


def wait_for(ledger: Path, text: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ledger.exists() and text in ledger.read_text():
            return
        time.sleep(0.02)
    raise AssertionError(f"the ledger never held {text!r}")


def items(count: int, prefix: str = "p") -> list[dict[str, Any]]:
    return [{"id": f"{prefix}{n}", "prompt": f"a banana, take {n}"} for n in range(count)]


def test_fifty_items_in_one_inline_batch_all_ok_at_batch_prices(
    make_simulator: Callable[..., RunningSimulator], write_manifest: Writer, tmp_path: Path
) -> None:
    sim = make_simulator(price_book="google", batch_pending_s=0.1, batch_running_s=0.2)
    manifest = batch_manifest(write_manifest, sim, items(50))
    done = run_subprocess("run", str(manifest), "--no-progress", env=KEY_ENV)
    assert done.returncode == 0, done.stderr
    lines = results(tmp_path / "out" / "ledger.jsonl")
    assert len(lines) == 50
    assert {line["outcome"] for line in lines} == {"ok"}
    assert {line["mode"] for line in lines} == {"batch"}
    assert {line["price_usd"] for line in lines} == {PRO_1K_BATCH}
    assert all((tmp_path / "out" / f"p{n}.png").stat().st_size > 0 for n in range(50))
    created = sim_batches(sim)
    assert len(created) == 1 and created[0]["mode"] == "inline"
    assert {line["batch"] for line in lines} == {created[0]["name"]}
    assert_bill_matches(tmp_path / "out" / "ledger.jsonl", sim)
    assert bill(sim)["billed_usd"] == pytest.approx(50 * PRO_1K_BATCH)
    again = run_subprocess("run", str(manifest), "--no-progress", env=KEY_ENV)
    assert again.returncode == 0 and len(sim_batches(sim)) == 1  # nothing owed, nothing created


def test_a_job_forced_to_file_mode_uploads_its_requests_and_downloads_the_responses(
    make_simulator: Callable[..., RunningSimulator], write_manifest: Writer, tmp_path: Path
) -> None:
    sim = make_simulator(price_book="google", batch_pending_s=0.05, batch_running_s=0.1)
    manifest = batch_manifest(
        write_manifest, sim, items(12), batch={"input": "file"},
        items_file=None,
    )  # fmt: skip
    done = run_subprocess("run", str(manifest), "--no-progress", env=KEY_ENV)
    assert done.returncode == 0, done.stderr
    lines = results(tmp_path / "out" / "ledger.jsonl")
    assert [line["outcome"] for line in lines] == ["ok"] * 12
    created = sim_batches(sim)
    assert [batch["mode"] for batch in created] == ["file"]
    assert_bill_matches(tmp_path / "out" / "ledger.jsonl", sim)
    assert not list((tmp_path / "out").glob(".*.tmp"))  # the downloaded responses are gone


def test_models_and_sizes_go_in_separate_batches_and_per_line_errors_are_classified(
    make_simulator: Callable[..., RunningSimulator], write_manifest: Writer, tmp_path: Path
) -> None:
    sim = make_simulator(price_book="google", batch_pending_s=0.05, batch_running_s=0.1)
    job_items = [
        {"id": "a", "prompt": "fine"},
        {"id": "b", "prompt": "fine too", "image_size": "2K"},
        {"id": "c", "prompt": "refused [sim:refuse]"},
        {"id": "d", "prompt": "overloaded [sim:503x1]"},
    ]
    manifest = batch_manifest(write_manifest, sim, job_items)
    done = run_subprocess("run", str(manifest), "--no-progress", env=KEY_ENV)
    assert done.returncode == 1, done.stderr
    by_item = {line["item"]: line for line in results(tmp_path / "out" / "ledger.jsonl")}
    assert by_item["a"]["outcome"] == by_item["b"]["outcome"] == "ok"
    assert by_item["c"]["outcome"] == "refused" and by_item["c"]["billed"] == "yes"
    assert by_item["d"]["outcome"] == "unavailable" and by_item["d"]["billed"] == "no"
    assert len(sim_batches(sim)) == 2  # 1K and 2K
    assert_bill_matches(tmp_path / "out" / "ledger.jsonl", sim)
    # The 503 was not billed: the next run sends it (and only it) in a new batch.
    again = run_subprocess("run", str(manifest), "--no-progress", env=KEY_ENV)
    assert again.returncode == 1  # c stays refused (billed: `retry`'s to pay again)
    final = {line["item"]: line for line in results(tmp_path / "out" / "ledger.jsonl")}
    assert final["d"]["outcome"] == "ok"
    assert len(sim_batches(sim)) == 3


def test_kill_9_after_the_create_then_run_again_finds_the_batch_and_creates_no_second(
    make_simulator: Callable[..., RunningSimulator], write_manifest: Writer, tmp_path: Path
) -> None:
    sim = make_simulator(price_book="google", batch_pending_s=1.5, batch_running_s=0.2)
    manifest = batch_manifest(write_manifest, sim, items(6))
    ledger = tmp_path / "out" / "ledger.jsonl"
    process = start_run(manifest)
    wait_for(ledger, '"event": "batch"')
    process.kill()
    process.communicate(timeout=10)
    # The worst moment: the create went through but its answer was never recorded.
    kept = [line for line in ledger.read_text().splitlines() if '"event": "batch"' not in line]
    ledger.write_text("\n".join(kept) + "\n")
    assert len(sim_batches(sim)) == 1
    done = run_subprocess("run", str(manifest), "--no-progress", env=KEY_ENV)
    assert done.returncode == 0, done.stderr
    assert "found again by its display name" in ledger.read_text()
    assert len(sim_batches(sim)) == 1  # one batch on the simulator's side, not two
    lines = results(ledger)
    assert sorted(line["item"] for line in lines) == sorted(f"p{n}" for n in range(6))
    assert {line["outcome"] for line in lines} == {"ok"}
    assert_bill_matches(ledger, sim)


def test_ctrl_c_while_waiting_leaves_the_batch_running_and_run_re_attaches(
    make_simulator: Callable[..., RunningSimulator], write_manifest: Writer, tmp_path: Path
) -> None:
    sim = make_simulator(price_book="google", batch_pending_s=1.0, batch_running_s=0.2)
    manifest = batch_manifest(write_manifest, sim, items(5))
    ledger = tmp_path / "out" / "ledger.jsonl"
    process = start_run(manifest)
    wait_for(ledger, '"event": "batch"')
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == 130, stderr
    assert "re-attaches" in stderr
    assert results(ledger) == []  # nothing collected, nothing closed as interrupted
    done = run_subprocess("run", str(manifest), "--no-progress", env=KEY_ENV)
    assert done.returncode == 0, done.stderr
    assert "re-attached to 1" in done.stderr
    assert len(sim_batches(sim)) == 1
    assert [line["outcome"] for line in results(ledger)] == ["ok"] * 5
    assert_bill_matches(ledger, sim)


def test_an_expired_batch_leaves_its_items_owed_and_the_next_run_sends_them(
    make_simulator: Callable[..., RunningSimulator], write_manifest: Writer, tmp_path: Path
) -> None:
    expiring = make_simulator(price_book="google", batch_pending_s=0.05, batch_running_s=0.05,
                              batch_end="expired")  # fmt: skip
    manifest = batch_manifest(write_manifest, expiring, items(4))
    ledger = tmp_path / "out" / "ledger.jsonl"
    first = run_subprocess("run", str(manifest), "--no-progress", env=KEY_ENV)
    assert first.returncode == 1, first.stderr
    lines = results(ledger)
    assert {(line["outcome"], line["billed"]) for line in lines} == {("unavailable", "no")}
    assert bill(expiring)["billed_usd"] == 0
    healthy = make_simulator(price_book="google", batch_pending_s=0.05, batch_running_s=0.05)
    second = run_subprocess("run", str(manifest), "--no-progress", "--endpoint", healthy.url,
                            env=KEY_ENV)  # fmt: skip
    assert second.returncode == 0, second.stderr
    latest = {line["item"]: line for line in results(ledger)}
    assert {line["outcome"] for line in latest.values()} == {"ok"}
    assert {line["attempt"] for line in latest.values()} == {2}


def test_a_batch_stuck_pending_past_max_wait_is_cancelled_and_its_items_left_owed(
    make_simulator: Callable[..., RunningSimulator], write_manifest: Writer, tmp_path: Path
) -> None:
    sim = make_simulator(price_book="google")
    job_items = [{"id": "s", "prompt": "never starts [sim:batch_stuck]"}]
    manifest = batch_manifest(write_manifest, sim, job_items, batch={"max_wait_h": 0.0002})
    done = run_subprocess("run", str(manifest), "--no-progress", env=KEY_ENV)
    assert done.returncode == 1, done.stderr
    assert "max_wait_h" in done.stderr
    (line,) = results(tmp_path / "out" / "ledger.jsonl")
    assert (line["outcome"], line["billed"]) == ("unavailable", "no")
    assert sim_batches(sim)[0]["state"].endswith("CANCELLED")


def test_cancel_cancels_the_jobs_unfinished_batch_and_the_next_run_collects_it(
    make_simulator: Callable[..., RunningSimulator], write_manifest: Writer, tmp_path: Path
) -> None:
    sim = make_simulator(price_book="google", batch_pending_s=30, batch_running_s=0.1)
    manifest = batch_manifest(write_manifest, sim, items(3))
    ledger = tmp_path / "out" / "ledger.jsonl"
    process = start_run(manifest)
    wait_for(ledger, '"event": "batch"')
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=20)
    cancelled = run_subprocess("cancel", str(ledger), env=KEY_ENV)
    assert cancelled.returncode == 0, cancelled.stderr
    assert sim_batches(sim)[0]["state"].endswith("CANCELLED")
    assert "test-key-not-real" not in cancelled.stderr + ledger.read_text()
    # The next run collects the cancelled batch (nothing billed) and sends the items again.
    after = run_subprocess("run", str(manifest), "--no-progress", "--endpoint",
                           make_simulator(price_book="google", batch_pending_s=0.05,
                                          batch_running_s=0.05).url, env=KEY_ENV)  # fmt: skip
    assert after.returncode in (0, 1), after.stderr


def test_batch_mode_with_bearer_auth_exits_2_and_sends_nothing(
    simulator: RunningSimulator, write_manifest: Writer
) -> None:
    manifest = write_manifest(items(2), endpoint=simulator.url, auth="bearer", mode="batch")
    done = run_subprocess("run", str(manifest), "--no-progress", env=KEY_ENV)
    assert done.returncode == 2
    assert "auth: google" in done.stderr and "mode" in done.stderr
    assert bill(simulator)["billed_requests"] == 0
    plain = write_manifest(items(2), endpoint=simulator.url, auth="bearer", name="sync.yaml")
    flag = run_subprocess("run", str(plain), "--mode", "batch", env=KEY_ENV)
    assert flag.returncode == 2 and "--mode" in flag.stderr
    assert "Traceback" not in done.stderr + flag.stderr


def test_the_ledger_records_the_batch_and_its_state_changes(
    make_simulator: Callable[..., RunningSimulator], write_manifest: Writer, tmp_path: Path
) -> None:
    sim = make_simulator(price_book="google", batch_pending_s=0.2, batch_running_s=0.2)
    manifest = batch_manifest(write_manifest, sim, items(2))
    done = run_subprocess("run", str(manifest), "--no-progress", env=KEY_ENV)
    assert done.returncode == 0, done.stderr
    records = read_jsonl(tmp_path / "out" / "ledger.jsonl")
    sent = [r for r in records if r["event"] == "sent"]
    batches = [r for r in records if r["event"] == "batch"]
    assert {r["batch_key"] for r in sent} == {batches[0]["batch_key"]}
    assert batches[0]["name"].startswith("batches/")
    assert batches[-1]["state"] == "SUCCEEDED"
    first_batch = records.index(batches[0])
    assert all(records.index(r) < first_batch for r in sent)  # durable before the create
    job = next(r for r in records if r["event"] == "job")
    assert job["settings"]["mode"] == "batch"


def test_a_batch_gone_at_the_provider_leaves_its_requests_billed_unknown_for_retry(
    make_simulator: Callable[..., RunningSimulator], write_manifest: Writer, tmp_path: Path
) -> None:
    sim = make_simulator(price_book="google", batch_pending_s=30, batch_running_s=0.1)
    manifest = batch_manifest(write_manifest, sim, items(2))
    ledger = tmp_path / "out" / "ledger.jsonl"
    process = start_run(manifest)
    wait_for(ledger, '"event": "batch"')
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=20)
    (name,) = [batch["name"] for batch in sim_batches(sim)]
    request = urllib.request.Request(
        f"{sim.url}/v1beta/{name}", method="DELETE", headers={"x-goog-api-key": "k"}
    )
    urllib.request.urlopen(request, timeout=10).close()
    done = run_subprocess("run", str(manifest), "--no-progress", env=KEY_ENV)
    assert done.returncode == 1, done.stderr
    assert "gone at the provider" in done.stderr
    lines = results(ledger)
    assert {(line["outcome"], line["billed"]) for line in lines} == {("server_error", "unknown")}
    assert '"state": "NOT_FOUND"' in ledger.read_text()
    again = run_subprocess("run", str(manifest), "--no-progress", env=KEY_ENV)
    assert len(sim_batches(sim)) == 1  # never re-sent by `run`: it may have been paid for
    assert again.returncode == 1
