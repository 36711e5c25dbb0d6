"""Shards end to end (contract section 12): the real CLI in child processes, several shards of one
job at once against one simulator, a shard killed with -9 and run again, then the unsharded job,
`retry` over the folder, and the merged report against the per-shard ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from batchbanana.ledger.writer import LedgerWriter
from batchbanana.plan.build import load_job
from batchbanana.rules.shards import Shard, shard_of, shard_of_ledger
from batchbanana.run.shards import shard_job
from batchbanana.simulator import RunningSimulator
from tests.conftest import CliResult, read_jsonl, results, run_subprocess
from tests.test_resume_crash import wait_for_lines

Writer = Callable[..., Path]
Cli = Callable[..., CliResult]


def start_shard(manifest: Path, shard: str, *extra: str) -> subprocess.Popen[str]:
    """`batchbanana run MANIFEST --shard K/N` in a child process."""
    return subprocess.Popen(
        [sys.executable, "-m", "batchbanana", "run", str(manifest), "--shard", shard,
         "--no-progress", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def report_json(*targets: Path) -> dict[str, Any]:
    """`batchbanana report TARGET... --format json`, parsed."""
    done = run_subprocess("report", *map(str, targets), "--format", "json")
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def items_for(counts: dict[int, int], shards: int, prompt: str = "") -> list[dict[str, str]]:
    """Items with ids chosen so that shard K of `shards` gets counts[K] of them."""
    chosen: list[dict[str, str]] = []
    wanted = dict(counts)
    number = 0
    while any(wanted.values()):
        item_id = f"it{number}"
        shard = shard_of(item_id, shards)
        if wanted.get(shard):
            wanted[shard] -= 1
            chosen.append({"id": item_id, "prompt": f"picture {number} {prompt}".strip()})
        number += 1
    return chosen


def sent_keys(folder: Path) -> list[tuple[str, int]]:
    """(item, attempt) of every `sent` line in every ledger of the folder."""
    return [
        (record["item"], record["attempt"])
        for path in folder.glob("ledger*.jsonl")
        for record in read_jsonl(path)
        if record["event"] == "sent"
    ]


def assert_bill_within(folder: Path, sim: RunningSimulator) -> dict[str, Any]:
    """ledger spent <= bill <= spent + possibly spent, over the folder's merged ledgers."""
    merged = report_json(folder)
    billed = sim.bill()["billed_usd"]
    spent, possibly = merged["spent_usd"], merged["possibly_spent_usd"]
    assert spent - 1e-9 <= billed <= spent + possibly + 1e-9, (spent, billed, possibly)
    return merged


def test_three_shards_at_once_make_the_whole_job_once(
    write_manifest: Writer, make_simulator: Callable[..., RunningSimulator], tmp_path: Path
) -> None:
    """Three shard processes at once against one provider: together they make every image,
    no prompt is sent twice, the bill sits between the merged ledgers' spent and spent +
    possibly spent, and the merged report's totals are the sums of the shards'. Run unsharded
    afterwards, the job sends nothing."""
    sim = make_simulator(latency_s=0.5, seed=3)
    items = items_for({0: 8, 1: 7, 2: 6}, 3)
    manifest = write_manifest(items, endpoint=sim.url, concurrency=3, budget_usd=100)
    processes = [start_shard(manifest, f"{k}/3") for k in range(3)]
    outputs = [process.communicate(timeout=120) for process in processes]
    for process, (_, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr
    folder = tmp_path / "out"
    assert {path.stem for path in folder.glob("*.png")} == {item["id"] for item in items}
    assert set(sim.stats()["by_prompt"].values()) == {1}
    assert len(sim.stats()["by_prompt"]) == len(items)
    keys = sent_keys(folder)
    assert len(keys) == len(set(keys)) == len(items)
    for k in range(3):  # each shard sent its own items only
        shard_items = {r["item"] for r in results(folder / f"ledger.shard-{k}-of-3.jsonl")}
        assert shard_items == {item["id"] for item in items if shard_of(item["id"], 3) == k}

    merged = assert_bill_within(folder, sim)
    shards = [report_json(folder / f"ledger.shard-{k}-of-3.jsonl") for k in range(3)]
    assert merged["items"] == sum(one["items"] for one in shards) == len(items)
    assert merged["attempts"] == sum(one["attempts"] for one in shards)
    assert abs(merged["spent_usd"] - sum(one["spent_usd"] for one in shards)) < 1e-9
    assert merged["spent_usd"] > 0 and merged["outcomes"] == {"ok": len(items)}
    assert report_json(folder / "ledger.shard-*-of-3.jsonl")["spent_usd"] == merged["spent_usd"]

    before = sim.stats()["requests"]
    again = run_subprocess("run", str(manifest), "--no-progress")
    assert again.returncode == 0, again.stderr
    assert f"{len(items)} item(s) already ok" in again.stderr
    assert sim.stats()["requests"] == before


def test_a_shard_killed_mid_run_completes_its_part_only(
    write_manifest: Writer, make_simulator: Callable[..., RunningSimulator], tmp_path: Path
) -> None:
    """kill -9 of one shard while the other runs beside it: run again, it records its requests
    in flight as interrupted and sends the rest of its own items, nothing of the other shard's;
    the unsharded run then sends nothing, and `retry` of the folder pays for the interrupted."""
    sim = make_simulator(seed=5)
    items = items_for({0: 6, 1: 4}, 2, prompt="[sim:slow:1.0]")
    manifest = write_manifest(items, endpoint=sim.url, concurrency=2, adaptive=False)
    folder = tmp_path / "out"
    victim_ledger = folder / "ledger.shard-0-of-2.jsonl"
    victim = start_shard(manifest, "0/2")
    other = start_shard(manifest, "1/2")
    wait_for_lines(victim_ledger, "result", 2, timeout_s=60)
    wait_for_lines(victim_ledger, "sent", 4, timeout_s=60)
    victim.kill()
    victim.communicate(timeout=10)
    _, other_err = other.communicate(timeout=120)
    assert other.returncode == 0, other_err
    other_ledger = (folder / "ledger.shard-1-of-2.jsonl").read_bytes()
    ok_before = {r["item"] for r in results(victim_ledger) if r["outcome"] == "ok"}
    sent_before = sim.stats()["requests"]

    again = run_subprocess("run", str(manifest), "--shard", "0/2", "--no-progress", timeout=120)
    assert again.returncode == 1, again.stderr  # its interrupted requests are left for retry
    assert "recorded as interrupted" in again.stderr
    mine = {item["id"] for item in items if shard_of(item["id"], 2) == 0}
    final = {r["item"]: r["outcome"] for r in results(victim_ledger)}
    assert set(final) == mine
    interrupted = {item for item, outcome in final.items() if outcome == "interrupted"}
    assert interrupted and not interrupted & ok_before
    resent = [key for key in sent_keys(folder) if key[0] in ok_before | interrupted]
    assert len(resent) == len(ok_before | interrupted)  # one request each, none sent again
    assert sim.stats()["requests"] == sent_before + len(mine - ok_before - interrupted)
    assert (folder / "ledger.shard-1-of-2.jsonl").read_bytes() == other_ledger
    assert {path.stem for path in folder.glob("*.png")} == {
        item["id"] for item in items
    } - interrupted

    before = sim.stats()["requests"]
    unsharded = run_subprocess("run", str(manifest), "--no-progress", timeout=60)
    assert unsharded.returncode == 1  # the interrupted items are retry's to pay for
    assert f"{len(interrupted)} item(s) need `batchbanana retry" in unsharded.stderr
    assert sim.stats()["requests"] == before

    retried = run_subprocess("retry", str(folder), "--yes", "--no-progress", timeout=120)
    assert retried.returncode == 0, retried.stderr
    assert sim.stats()["requests"] == before + len(interrupted)
    merged = assert_bill_within(folder, sim)
    assert merged["outcomes"] == {"ok": len(items)}
    keys = sent_keys(folder)
    assert len(keys) == len(set(keys))  # (item, attempt) unique across the job's ledgers
    assert {r["item"] for r in results(folder / "ledger.jsonl")} == interrupted


def test_an_edit_whose_base_is_in_another_shard(
    write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path, cli: Cli
) -> None:
    """An edit in one shard of an item in another is blocked (not billed) until that item is ok
    in some ledger of the folder; the shard's next run sends it with the base's image."""
    base, edit = "base-0", None
    for number in range(100):
        if shard_of(f"edit-{number}", 2) != shard_of(base, 2):
            edit = f"edit-{number}"
            break
    assert edit is not None
    manifest = write_manifest(
        [{"id": base, "prompt": "a shoe"},
         {"id": edit, "prompt": "make it red", "images": [f"item:{base}"]}],
        endpoint=simulator.url,
    )  # fmt: skip
    mine, theirs = f"{shard_of(edit, 2)}/2", f"{shard_of(base, 2)}/2"
    early = cli("run", str(manifest), "--shard", mine, "--no-progress")
    assert early.exit_code == 1
    assert "no ledger of the job has made yet" in early.stderr
    assert cli("run", str(manifest), "--shard", theirs, "--no-progress").exit_code == 0
    later = cli("run", str(manifest), "--shard", mine, "--no-progress")
    assert later.exit_code == 0, later.stderr
    assert (tmp_path / "out" / f"{edit}.png").is_file()
    assert cli("plan", str(manifest), "--shards", "2").stdout.count("another shard") == 1


def test_retry_of_one_shard_appends_to_its_ledger(
    write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path, cli: Cli
) -> None:
    """`retry FOLDER --shard K/N` pays again for that shard's failures only, in its ledger;
    `retry` of the shard's ledger file means the same."""
    items = items_for({0: 2, 1: 2}, 2, prompt="[sim:refuse]")
    manifest = write_manifest(items, endpoint=simulator.url)
    folder = tmp_path / "out"
    for k in range(2):
        assert cli("run", str(manifest), "--shard", f"{k}/2", "--no-progress").exit_code == 1
    first = cli("retry", str(folder), "--shard", "0/2", "--yes", "--no-progress")
    assert first.exit_code == 1  # refused again: billed, and paid for once more on purpose
    assert len(results(folder / "ledger.shard-0-of-2.jsonl")) == 4
    assert len(results(folder / "ledger.shard-1-of-2.jsonl")) == 2
    second = cli("retry", str(folder / "ledger.shard-1-of-2.jsonl"), "--yes", "--no-progress")
    assert second.exit_code == 1
    assert len(results(folder / "ledger.shard-1-of-2.jsonl")) == 4
    attempts = {(r["item"], r["attempt"]) for r in results(folder / "ledger.shard-1-of-2.jsonl")}
    assert {attempt for _, attempt in attempts} == {1, 2}
    wrong = cli("retry", str(folder / "ledger.shard-1-of-2.jsonl"), "--shard", "1/2", "--yes")
    assert wrong.exit_code == 2 and "give the ledgers' folder" in wrong.stderr


def test_batch_mode_per_shard(
    write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """Two shards in batch mode at once create their own batches (their keys differ), collect
    them into their own ledgers, and leave the unsharded run nothing to send."""
    items = items_for({0: 3, 1: 3}, 2)
    manifest = write_manifest(
        items, endpoint=simulator.url, auth="google", mode="batch", price_book="google",
        batch={"poll_s": 0.05, "max_poll_s": 0.2},
    )  # fmt: skip
    processes = [start_shard(manifest, f"{k}/2") for k in range(2)]
    for process in processes:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
    batches = simulator.batches()
    names = {batch["displayName"] for batch in batches}
    assert len(batches) == len(names) == 2
    assert {name.split("-")[-3] for name in names} == {"0of2", "1of2"}  # from the run ids
    folder = tmp_path / "out"
    for k in range(2):
        lines = results(folder / f"ledger.shard-{k}-of-2.jsonl")
        assert {r["mode"] for r in lines} == {"batch"} and len(lines) == 3
    requests = simulator.bill()["batch_requests"]
    again = run_subprocess("run", str(manifest), "--no-progress", env=dict(os.environ))
    assert again.returncode == 0, again.stderr
    assert simulator.bill()["batch_requests"] == requests


def test_auto_through_the_cli_without_a_scheduler_exits_2(
    cli: Cli, write_manifest: Writer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run --shard auto` outside a scheduler: exit 2, one line, nothing sent, no ledger."""
    for name in ("JOB_COMPLETION_INDEX", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(name, raising=False)
    manifest = write_manifest([{"prompt": "x"}], endpoint="simulate")
    result = cli("run", str(manifest), "--shard", "auto", "--no-progress")
    assert result.exit_code == 2
    assert "neither JOB_COMPLETION_INDEX" in result.stderr and "Traceback" not in result.stderr
    assert not (manifest.parent / "out").exists()


def test_shards_of_one_count_run_beside_each_other_but_not_beside_others(
    cli: Cli, write_manifest: Writer, tmp_path: Path
) -> None:
    """While shard 0/2 runs, 1/2 may start; 0/3 and the unsharded run exit 2 with a hint."""
    manifest = write_manifest(
        [{"id": f"i{n}", "prompt": f"p{n}"} for n in range(6)], endpoint="simulate"
    )
    writer = LedgerWriter(tmp_path / "out" / "ledger.shard-0-of-2.jsonl")
    writer.open()  # a live shard 0 of 2
    try:
        beside = cli("run", str(manifest), "--shard", "1/2", "--no-progress")
        assert beside.exit_code == 0, beside.stderr
        for other in (["--shard", "0/3"], []):
            refused = cli("run", str(manifest), *other, "--no-progress")
            assert refused.exit_code == 2
            assert "ledger.shard-0-of-2.jsonl: in use by another batchbanana process" in (
                refused.stderr
            )
            assert "HINT:" in refused.stderr
    finally:
        writer.close()
    sent_by = {
        path.name: path.read_text().count('"sent"') for path in (tmp_path / "out").glob("*.jsonl")
    }
    assert sent_by["ledger.shard-1-of-2.jsonl"] == sum(
        1 for n in range(6) if shard_of(f"i{n}", 2) == 1
    )
    assert set(sent_by) == {"ledger.shard-0-of-2.jsonl", "ledger.shard-1-of-2.jsonl"}  # the
    # refused runs left no ledger of their own behind


def test_retry_of_the_whole_folder_waits_for_running_shards(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """`retry FOLDER` holds every ledger of the folder: while a shard runs it exits 2 and sends
    nothing; `retry FOLDER --shard` of another shard of that count goes ahead beside it."""
    items = items_for({0: 1, 1: 1}, 2, prompt="[sim:refuse]")
    manifest = write_manifest(items, endpoint=simulator.url)
    for k in range(2):
        assert cli("run", str(manifest), "--shard", f"{k}/2", "--no-progress").exit_code == 1
    folder = tmp_path / "out"
    writer = LedgerWriter(folder / "ledger.shard-0-of-2.jsonl")
    writer.open()  # shard 0 running again
    try:
        before = simulator.stats()["requests"]
        whole = cli("retry", str(folder), "--yes", "--no-progress")
        assert whole.exit_code == 2 and "in use by another batchbanana process" in whole.stderr
        assert simulator.stats()["requests"] == before
        beside = cli("retry", str(folder), "--shard", "1/2", "--yes", "--no-progress")
        assert beside.exit_code == 1 and simulator.stats()["requests"] == before + 1
    finally:
        writer.close()


def test_a_shard_job_writes_its_own_ledger_beside_the_jobs(write_manifest: Writer) -> None:
    """Shard K of N's ledger is ledger.shard-K-of-N.jsonl in the folder of the job's ledger."""
    job = load_job(write_manifest([{"prompt": "x"}], endpoint="simulate"))
    sharded, sharding = shard_job(job, Shard(2, 5))
    assert sharded.ledger_path == job.ledger_path.parent / "ledger.shard-2-of-5.jsonl"
    assert sharding.job_ledger == job.ledger_path
    assert shard_of_ledger("ledger.shard-2-of-5.jsonl") == Shard(2, 5)
    assert shard_of_ledger("ledger.shard-5-of-5.jsonl") is None
    assert shard_of_ledger("ledger.jsonl") is None
