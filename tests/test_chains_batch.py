"""Edit chains in batch mode: a batch is sent whole, so an item cannot wait in it for another's
output. Each `run` sends the items whose inputs are known; an edit of an item sent in this run's
batch waits for the next `run` (not sent, no line); an edit of an item that is not ok is
`blocked`, as in sync mode."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from batchbanana.simulator import RunningSimulator
from tests.conftest import CliResult, read_jsonl, results

Cli = Callable[..., CliResult]
Writer = Callable[..., Path]
StartSimulator = Callable[..., RunningSimulator]

ITEMS: list[dict[str, Any]] = [
    {"id": "base", "prompt": "a red bicycle"},
    {"id": "edit", "prompt": "make it blue", "images": ["item:base"]},
    {"id": "edit2", "prompt": "add a basket", "images": ["item:edit"]},
    {"id": "lone", "prompt": "a cat"},
]


def _batch_manifest(write_manifest: Writer, sim: RunningSimulator, items: list[Any]) -> Path:
    return write_manifest(
        items, endpoint=sim.url, auth="google", mode="batch",
        batch={"poll_s": 0.05, "max_poll_s": 0.2},
    )  # fmt: skip


def test_each_batch_run_sends_the_next_link_of_a_chain(
    cli: Cli, write_manifest: Writer, make_simulator: StartSimulator, tmp_path: Path
) -> None:
    """Run 1 sends base and lone; run 2 the edit, with base's saved output; run 3 the edit of the
    edit; run 4 nothing. Items that wait have no line at all meanwhile."""
    sim = make_simulator(seed=1, batch_pending_s=0, batch_running_s=0)
    manifest = _batch_manifest(write_manifest, sim, ITEMS)
    ledger = tmp_path / "out" / "ledger.jsonl"
    sent_per_run, stderr = [], []
    for expected_exit in (1, 1, 0, 0):
        before = len(read_jsonl(ledger)) if ledger.exists() else 0
        result = cli("run", str(manifest), "--no-progress")
        assert result.exit_code == expected_exit, result.stderr
        lines = read_jsonl(ledger)[before:]
        sent_per_run.append(sorted(line["item"] for line in lines if line["event"] == "sent"))
        stderr.append(result.stderr)
    assert sent_per_run == [["base", "lone"], ["edit"], ["edit2"], []]
    assert "2 item(s) were not sent; running again sends them" in stderr[0]
    assert {line["item"]: line["outcome"] for line in results(ledger)} == dict.fromkeys(
        ("base", "edit", "edit2", "lone"), "ok"
    )
    edit_sent = next(line for line in read_jsonl(ledger) if line.get("item") == "edit")
    assert edit_sent["spec"]["images"][0]["item"] == "base"


def test_a_refused_base_blocks_its_edits_in_batch_mode_too(
    cli: Cli, write_manifest: Writer, make_simulator: StartSimulator, tmp_path: Path
) -> None:
    """The base refused in run 1; run 2 blocks the edit and the edit of the edit (billed no, no
    `sent` line, exit 1) and creates no batch for them."""
    sim = make_simulator(seed=1, batch_pending_s=0, batch_running_s=0)
    items = [dict(item) for item in ITEMS[:3]]
    items[0]["prompt"] = "a red bicycle [sim:refuse]"
    manifest = _batch_manifest(write_manifest, sim, items)
    assert cli("run", str(manifest), "--no-progress").exit_code == 1
    second = cli("run", str(manifest), "--no-progress")
    assert second.exit_code == 1
    assert "2 item(s) blocked" in second.stderr
    ledger = tmp_path / "out" / "ledger.jsonl"
    assert [line["item"] for line in read_jsonl(ledger) if line["event"] == "sent"] == ["base"]
    blocked = {line["item"]: line for line in results(ledger) if line["outcome"] == "blocked"}
    assert set(blocked) == {"edit", "edit2"}
    assert all(line["billed"] == "no" and line["attempt"] == 1 for line in blocked.values())
    assert "whose latest outcome is refused" in blocked["edit"]["error"]
