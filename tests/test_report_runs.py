"""`batchbanana report` per run: requests sent and refused for load, after real simulator runs."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from batchbanana.simulator import RunningSimulator
from tests.conftest import CliResult, read_jsonl
from tests.test_report import check_page, mixed_ledger

Cli = Callable[..., CliResult]
Writer = Callable[..., Path]


@pytest.fixture
def two_runs(cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path) -> Path:
    """A ledger of two runs on one simulator: `run` meets two 429s and a 503 and leaves 'glitch'
    (a 500) for `retry`, which meets two 503s before 'glitch' comes back ok."""
    items = [
        {"id": "quota", "prompt": "a lake [sim:429x2]"},
        {"id": "busy", "prompt": "a dune [sim:503x1]"},
        {"id": "glitch", "prompt": "a glitch [sim:500,503x2]"},
        {"id": "calm", "prompt": "a calm field"},
    ]
    manifest = write_manifest(items, job="runs", endpoint=simulator.url)
    assert cli("run", str(manifest), "--no-progress").exit_code == 1
    ledger = tmp_path / "out" / "ledger.jsonl"
    assert cli("retry", str(ledger), "--yes").exit_code == 0
    return ledger


def report_runs(cli: Cli, *ledgers: Path) -> list[dict[str, Any]]:
    """The `runs` list of `report --format json`."""
    result = cli("report", *map(str, ledgers), "--format", "json")
    assert result.exit_code == 0, result.stderr
    runs: list[dict[str, Any]] = json.loads(result.stdout)["runs"]
    return runs


def test_json_counts_each_runs_requests_and_refusals_for_load(cli: Cli, two_runs: Path) -> None:
    """Each run's requests, 429s, 503s and ok results are counted from its own lines only."""
    jobs = [r for r in read_jsonl(two_runs) if r["event"] == "job"]
    runs = report_runs(cli, two_runs)
    assert [(r["run_id"], r["command"], r["started"]) for r in runs] == [
        (job["run_id"], job["command"], job["ts"]) for job in jobs
    ]
    counts = [
        {
            key: run[key]
            for key in ("requests", "refused_for_load", "refused_429", "refused_503", "ok")
        }
        for run in runs
    ]
    assert counts == [
        {"requests": 7, "refused_for_load": 3, "refused_429": 2, "refused_503": 1, "ok": 3},
        {"requests": 3, "refused_for_load": 2, "refused_429": 0, "refused_503": 2, "ok": 1},
    ]
    assert all(run["wall_s"] >= 0 and run["ledger"] == str(two_runs) for run in runs)


def test_table_shows_a_line_per_run_with_its_refusals(cli: Cli, two_runs: Path) -> None:
    """The table's Runs section has a header and one line per run: command, requests, refusals."""
    table = cli("report", str(two_runs)).stdout
    section = table.split("Runs (")[1].split("\n\n")[0].splitlines()
    assert "refused (429/503)" in section[1]
    # date, time, UTC, command, then the wall time (which varies), then the counts.
    assert [[line.split()[3], *line.split()[-4:]] for line in section[2:]] == [
        ["run", "7", "3", "(2/1)", "1.00"],
        ["retry", "3", "2", "(0/2)", "2.00"],
    ]


def test_page_has_a_runs_table_with_the_same_cells(
    cli: Cli, two_runs: Path, tmp_path: Path
) -> None:
    """The HTML page's runs table, in a well-formed page, holds the table's cells for each run."""
    output = tmp_path / "report.html"
    assert cli("report", str(two_runs), "--format", "html", "--output", str(output)).exit_code == 0
    page = output.read_text(encoding="utf-8")
    check_page(page, tmp_path)
    section = page.split("<h3>Runs</h3>")[1].split("</table>")[0]
    rows = [re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row) for row in section.split("<tr>")[1:]]
    assert rows[0] == ["started", "command", "wall", "requests", "refused (429/503)", "per ok"]
    assert [[row[1], *row[3:]] for row in rows[1:]] == [
        ["run", "7", "3 (2/1)", "1.00"],
        ["retry", "3", "2 (0/2)", "2.00"],
    ]


def test_a_request_the_budget_stopped_is_not_counted_as_sent(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, two_runs: Path
) -> None:
    """A third run whose one new item is over budget shows up with nothing sent."""
    items = [{"id": "calm", "prompt": "a calm field"}, {"id": "extra", "prompt": "one more"}]
    manifest = write_manifest(items, job="runs", endpoint=simulator.url)
    assert cli("run", str(manifest), "--no-progress", "--budget", "0.01").exit_code == 1
    outcomes = [r["outcome"] for r in read_jsonl(two_runs) if r["event"] == "result"]
    assert outcomes[-1] == "over_budget"
    third = report_runs(cli, two_runs)[2]
    assert (third["command"], third["requests"], third["refused_for_load"], third["ok"]) == (
        "run",
        0,
        0,
        0,
    )


def test_a_copy_of_the_ledger_given_too_adds_no_run(
    cli: Cli, two_runs: Path, tmp_path: Path
) -> None:
    """Runs read again from a copy of their ledger are the same runs, counted once."""
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(two_runs.read_bytes())
    assert report_runs(cli, two_runs, copy) == report_runs(cli, two_runs)


def test_ledgers_of_two_jobs_keep_their_runs_apart(cli: Cli, tmp_path: Path) -> None:
    """Two jobs' runs stay apart, in the order their ledgers were given, even with one run id."""
    first = mixed_ledger(tmp_path / "one" / "ledger.jsonl", name="one")
    second = mixed_ledger(tmp_path / "two" / "ledger.jsonl", name="two")
    both = report_runs(cli, second, first)
    assert both == [*report_runs(cli, second), *report_runs(cli, first)]
    assert [run["ledger"] for run in both] == [str(second), str(first)]
    # Sent: a, b twice, c, d, e, and g left in flight; f was over budget; b was rate limited once.
    assert (both[0]["requests"], both[0]["refused_for_load"], both[0]["ok"]) == (7, 1, 2)
