"""`batchbanana report` over batch mode (contract section 10): each run's and attempt's mode, the
money per mode and what batch mode saved, the remote batches, and requests waiting in a batch
that is not finished counted as possibly spent, never as interrupted or failed. Ledgers are built
from the typed ledger lines, as `run` writes them."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from batchbanana.ledger.records import BatchLine, JobLine, LedgerLine, ResultLine, SentLine
from batchbanana.rules.outcomes import Outcome
from tests.conftest import CliResult
from tests.test_report import check_page

Cli = Callable[..., CliResult]
START = datetime(2026, 12, 1, 22, 0, tzinfo=UTC)
PRO = "gemini-3-pro-image-preview"
FLASH = "gemini-3.1-flash-image-preview"
ONE, TWO = "bb-night-2-aaaa-1", "bb-night-2-bbbb-2"  # batch keys
SETTINGS = {"endpoint": "https://generativelanguage.googleapis.com", "auth": "google",
            "api_key_env": "GEMINI_API_KEY", "price_book": "google"}  # fmt: skip


def ts(seconds: float) -> str:
    """A ledger timestamp `seconds` after START."""
    return (START + timedelta(seconds=seconds)).isoformat(timespec="milliseconds")[:-6] + "Z"


def job(run: str, at: float, mode: str = "sync") -> JobLine:
    """A `job` line; a batch run's settings carry `mode` and `batch`, a sync run's do not."""
    settings = dict(SETTINGS)
    if mode == "batch":
        settings.update(mode="batch", batch={"poll_s": 10, "max_poll_s": 60, "max_wait_h": 48})
    return JobLine(
        ts=ts(at), run_id=run, command="run", job="night", manifest="/jobs/night.yaml",
        manifest_sha256=None, ledger=None, version="test", settings=settings,
    )  # fmt: skip


def spec(item: str, model: str, size: str) -> dict[str, Any]:
    """What `spec` holds of a request."""
    return {"prompt": f"prompt of {item}", "model": model, "image_size": size}


def sent(item: str, at: float, price: float, model: str = PRO, size: str = "1K",
         key: str | None = None, attempt: int = 1) -> SentLine:  # fmt: skip
    """A `sent` line; `key`: the batch it went out in."""
    return SentLine(
        ts=ts(at), item=item, attempt=attempt, fingerprint=f"sha256:{item}", price_usd=price,
        model=model, image_size=size, spec=spec(item, model, size), batch_key=key,
    )  # fmt: skip


def result(item: str, at: float, outcome: Outcome, price: float, model: str = PRO,
           size: str = "1K", batch: str | None = None, attempt: int = 1) -> ResultLine:  # fmt: skip
    """A `result` line; `batch`: the name of the batch that answered it."""
    return ResultLine.for_attempt(
        item, attempt, f"sha256:{item}", outcome, price, spec(item, model, size),
        ts=ts(at), http_status=200 if batch is None else None, latency_s=1.0,
        mode="batch" if batch else None, batch=batch,
    )  # fmt: skip


def batch(key: str, at: float, state: str, name: str | None = None, **known: Any) -> BatchLine:
    """A `batch` line."""
    return BatchLine(ts=ts(at), batch_key=key, name=name, state=state, **known)


def write(path: Path, lines: list[LedgerLine]) -> Path:
    """The lines as a JSONL ledger."""
    path.write_text("".join(json.dumps(line.to_json()) + "\n" for line in lines))
    return path


def mixed(path: Path) -> Path:
    """A sync run (three results at Google's list price, one request left in flight), then a
    batch run: batch one (three 4K pro requests at $0.12) succeeded, batch two (two 1K flash
    requests at $0.0335) is still running."""
    lines: list[LedgerLine] = [job("r-1", 0)]
    for n, outcome in enumerate((Outcome.OK, Outcome.OK, Outcome.REFUSED), start=1):
        lines += [sent(f"s{n}", n, 0.134), result(f"s{n}", n + 0.5, outcome, 0.134)]
    lines += [sent("s4", 4, 0.134), job("r-2", 100, "batch")]
    lines += [sent(f"b{n}", 101, 0.12, size="4K", key=ONE) for n in (1, 2, 3)]
    lines.append(batch(ONE, 102, "BATCH_STATE_PENDING", "batches/one", model=PRO,
                       image_size="4K", requests=3, input="inline"))  # fmt: skip
    lines += [sent(f"b{n}", 103, 0.0335, model=FLASH, key=TWO) for n in (4, 5)]
    lines.append(batch(TWO, 104, "BATCH_STATE_PENDING", "batches/two", model=FLASH,
                       image_size="1K", requests=2, input="files/abc"))  # fmt: skip
    lines.append(batch(ONE, 200, "JOB_STATE_SUCCEEDED", "batches/one",
                       stats={"requestCount": 3, "successfulRequestCount": 3}))  # fmt: skip
    for n, outcome in ((1, Outcome.OK), (2, Outcome.OK), (3, Outcome.NO_IMAGE)):
        lines.append(result(f"b{n}", 201, outcome, 0.12, size="4K", batch="batches/one"))
    lines.append(batch(TWO, 202, "BATCH_STATE_RUNNING", "batches/two"))
    return write(path, lines)


def report(cli: Cli, *paths: Path, fmt: str = "table") -> str:
    """`report` in one format; stdout."""
    out = cli("report", *map(str, paths), "--format", fmt)
    assert out.exit_code == 0, out.stderr
    assert out.stderr == ""
    return out.stdout


def as_json(cli: Cli, *paths: Path) -> dict[str, Any]:
    """`report --format json`, parsed."""
    parsed: dict[str, Any] = json.loads(report(cli, *paths, fmt="json"))
    return parsed


def test_json_splits_money_by_mode_and_counts_what_batch_mode_saved(
    cli: Cli, tmp_path: Path
) -> None:
    """Spent and possibly spent keep their meaning over both modes; `by_mode` splits them, and
    batch mode saved the list price less the batch price of its billed results."""
    data = as_json(cli, mixed(tmp_path / "ledger.jsonl"))
    assert data["spent_usd"] == pytest.approx(3 * 0.134 + 3 * 0.12)
    # s4 was in flight when the sync run stopped; b4 and b5 wait in batch two.
    assert data["possibly_spent_usd"] == pytest.approx(0.134 + 2 * 0.0335)
    assert data["items"] == 9 and data["attempts"] == 6
    assert data["outcomes"] == {
        "ok": 4, "refused": 1, "no_image": 1, "interrupted": 1, "in_batch": 2,
    }  # fmt: skip
    keys = ("mode", "attempts", "items", "spent_usd", "possibly_spent_usd")
    assert [[row[key] for key in keys] for row in data["by_mode"]] == [
        ["sync", 3, 4, 0.402, 0.134],
        ["batch", 3, 5, 0.36, 0.067],
    ]
    assert all(set(row) == set(keys) for row in data["by_mode"])
    assert data["batch_saved_usd"] == 0.36  # $0.24 list - $0.12 batch, three times


def test_json_lists_the_batches_with_their_latest_state(cli: Cli, tmp_path: Path) -> None:
    """Each batch: key, name, latest state in one spelling, requests, input, and its results."""
    ledger = mixed(tmp_path / "ledger.jsonl")
    found = as_json(cli, ledger)["batches"]
    assert [
        {key: entry[key] for key in ("batch_key", "name", "state", "requests", "input")}
        for entry in found
    ] == [
        {"batch_key": ONE, "name": "batches/one", "state": "SUCCEEDED", "requests": 3,
         "input": "inline"},
        {"batch_key": TWO, "name": "batches/two", "state": "RUNNING", "requests": 2,
         "input": "files/abc"},
    ]  # fmt: skip
    one, two = found
    counts = ("results", "waiting", "spent_usd", "saved_usd")
    assert [one[key] for key in counts] == [3, 0, 0.36, 0.36]
    assert (two["results"], two["waiting"], two["spent_usd"]) == (0, 2, 0.0)
    assert (one["model"], one["image_size"], two["model"]) == (PRO, "4K", FLASH)
    assert one["stats"] == {"requestCount": 3, "successfulRequestCount": 3}
    assert one["ledger"] == str(ledger)


def test_json_runs_and_failures_carry_the_mode(cli: Cli, tmp_path: Path) -> None:
    """Runs say their mode; waiting requests are no failure and cost nothing to retry."""
    data = as_json(cli, mixed(tmp_path / "ledger.jsonl"))
    runs = [(r["run_id"], r["mode"], r["requests"], r["ok"]) for r in data["runs"]]
    assert runs == [("r-1", "sync", 4, 2), ("r-2", "batch", 5, 2)]
    failures = {f["id"]: f["mode"] for f in data["failures"]}
    assert failures == {"s3": "sync", "s4": "sync", "b3": "batch"}
    # `retry` sends synchronously: the failed batch attempt ($0.12) costs its list price, $0.24.
    assert data["retry_cost_usd"] == pytest.approx(0.134 * 2 + 0.24)


def test_table_shows_batch_mode_the_runs_mode_and_the_batches(cli: Cli, tmp_path: Path) -> None:
    """The table: a Batch mode line, a mode column in Runs, a Batches section, and the waiting
    items neither among failed items nor interrupted."""
    table = report(cli, mixed(tmp_path / "ledger.jsonl"))
    assert (
        "Batch mode:                5 requests in 2 batches, saved $0.36; 2 waiting in 1 batch"
        " (possibly spent until `batchbanana run` collects them)"
    ) in table
    assert re.search(r"^  in_batch +2$", table, re.MULTILINE)
    runs = table.split("Runs (")[1].split("\n\n")[0].splitlines()
    assert runs[1].split()[:3] == ["started", "command", "mode"]
    assert [line.split()[3:5] for line in runs[2:]] == [["run", "sync"], ["run", "batch"]]
    section = table.split("Batches (2):\n")[1].split("\n\n")[0].splitlines()
    assert section[0].split() == [
        "batch", "state", "model", "size", "input", "requests", "results", "waiting",
    ]  # fmt: skip
    assert section[1].split() == ["batches/one", "SUCCEEDED", PRO, "4K", "inline", "3", "3", "0"]
    assert section[2].split() == ["batches/two", "RUNNING", FLASH, "1K", "files/abc", "2", "0", "2"]
    failed = table.split("Failed items (3):\n")[1].split("\n\n")[0]
    assert {line.split()[0] for line in failed.splitlines()} == {"s3", "s4", "b3"}


def test_csv_rows_add_batch_columns_after_the_old_ones(cli: Cli, tmp_path: Path) -> None:
    """CSV keeps its columns and appends batch attempts, spent and saved per row and in TOTAL."""
    text = report(cli, mixed(tmp_path / "ledger.jsonl"), fmt="csv")
    header = text.splitlines()[0].split(",")
    assert header[-3:] == ["batch_attempts", "batch_spent_usd", "batch_saved_usd"]
    assert header[:3] == ["model", "image_size", "items"]
    rows = {(r["model"], r["image_size"]): r for r in csv.DictReader(io.StringIO(text))}
    cells = ("batch_attempts", "batch_spent_usd", "batch_saved_usd", "spent_usd")
    assert [rows[(PRO, "4K")][c] for c in cells] == ["3", "0.36", "0.36", "0.36"]
    assert [rows[(FLASH, "1K")][c] for c in cells] == ["0", "0.0", "0.0", "0.0"]
    assert [rows[(PRO, "1K")][c] for c in cells] == ["0", "0.0", "0.0", "0.402"]
    assert [rows[("TOTAL", "")][c] for c in cells] == ["3", "0.36", "0.36", "0.762"]


def test_page_shows_batch_mode_runs_mode_and_the_batches(cli: Cli, tmp_path: Path) -> None:
    """The page: a well-formed, offline page with the Batch mode figure, a mode column in its
    runs table and a Batches table."""
    output = tmp_path / "report.html"
    ledger = mixed(tmp_path / "ledger.jsonl")
    assert cli("report", str(ledger), "--format", "html", "--output", str(output)).exit_code == 0
    page = output.read_text(encoding="utf-8")
    check_page(page, tmp_path)
    assert "<dt>Batch mode</dt><dd>5 requests in 2 batches, saved $0.36; 2 waiting" in page

    def table(title: str) -> list[list[str]]:
        section = page.split(f"<h3>{title}</h3>")[1].split("</table>")[0]
        return [re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row) for row in section.split("<tr>")[1:]]

    runs = table("Runs")
    assert runs[0][:3] == ["started", "command", "mode"]
    assert [row[1:3] for row in runs[1:]] == [["run", "sync"], ["run", "batch"]]
    assert table("Batches")[1:] == [
        ["batches/one", "SUCCEEDED", PRO, "4K", "inline", "3", "3", "0", "$0.36"],
        ["batches/two", "RUNNING", FLASH, "1K", "files/abc", "2", "0", "2", "$0.00"],
    ]


def test_a_sync_ledger_reports_as_before(cli: Cli, tmp_path: Path) -> None:
    """With no batch, the table and page show no batch line, section or mode column, and the
    JSON has one sync row, nothing saved and no batches."""
    lines: list[LedgerLine] = [job("r-1", 0), sent("s1", 1, 0.134)]
    lines.append(result("s1", 2, Outcome.OK, 0.134))
    ledger = write(tmp_path / "ledger.jsonl", lines)
    data = as_json(cli, ledger)
    assert data["by_mode"] == [
        {"mode": "sync", "attempts": 1, "items": 1, "spent_usd": 0.134, "possibly_spent_usd": 0.0}
    ]
    assert (data["batch_saved_usd"], data["batches"], data["runs"][0]["mode"]) == (0.0, [], "sync")
    table = report(cli, ledger)
    assert "Batch mode" not in table and "Batches" not in table
    assert table.split("Runs (")[1].splitlines()[1].split()[:3] == ["started", "command", "wall"]
    page = report(cli, ledger, fmt="html")
    assert "Batch mode" not in page and "<h3>Batches</h3>" not in page


def test_a_batch_collected_by_a_later_run_counts_for_the_run_that_sent_it(
    cli: Cli, tmp_path: Path
) -> None:
    """Stopped while waiting, then `run` again re-attached and collected: the requests went out
    in the first run; the second sent none."""
    lines: list[LedgerLine] = [job("r-1", 0, "batch")]
    lines += [sent(f"b{n}", 1, 0.12, size="4K", key=ONE) for n in (1, 2)]
    lines += [batch(ONE, 2, "BATCH_STATE_RUNNING", "batches/one"), job("r-2", 3600, "batch")]
    lines.append(batch(ONE, 3700, "BATCH_STATE_SUCCEEDED", "batches/one"))
    lines += [result(f"b{n}", 3701, Outcome.OK, 0.12, size="4K", batch="batches/one")
              for n in (1, 2)]  # fmt: skip
    data = as_json(cli, write(tmp_path / "ledger.jsonl", lines))
    assert [(r["run_id"], r["requests"], r["ok"]) for r in data["runs"]] == [
        ("r-1", 2, 2), ("r-2", 0, 0),
    ]  # fmt: skip
    assert data["runs"][0]["wall_s"] == 2.0  # it sent its requests at 1 s, saw RUNNING at 2 s
    assert data["runs"][1]["wall_s"] == 101.0  # and the second collected them at 3701 s
    assert data["batches"][0]["requests"] == 2  # none recorded: its results and waiting ones


def test_requests_of_a_finished_or_unrecorded_batch_wait_for_run_to_collect_them(
    cli: Cli, tmp_path: Path
) -> None:
    """A batch that ended without its results recorded, or whose creation is not recorded yet:
    its requests are still no interruption (`run` collects or finds the batch), only possibly
    spent; the failures list leaves them out."""
    lines: list[LedgerLine] = [job("r-1", 0, "batch")]
    lines += [sent("b1", 1, 0.12, size="4K", key=ONE), sent("b2", 1, 0.12, size="4K", key=TWO)]
    lines.append(batch(ONE, 2, "EXPIRED", "batches/one"))
    data = as_json(cli, write(tmp_path / "ledger.jsonl", lines))
    assert data["outcomes"] == {"in_batch": 2} and data["failures"] == []
    assert data["possibly_spent_usd"] == 0.24 and data["spent_usd"] == 0.0
    assert [(b["batch_key"], b["name"], b["state"], b["waiting"]) for b in data["batches"]] == [
        (ONE, "batches/one", "EXPIRED", 1),
        (TWO, None, None, 1),
    ]
    table = report(cli, write(tmp_path / "ledger.jsonl", lines))
    assert "2 requests in 2 batches, saved $0.00; 2 waiting in 2 batches" in table


def test_a_copy_given_too_counts_no_batch_twice(cli: Cli, tmp_path: Path) -> None:
    """The same ledger twice (a copy) gives the same batches and money."""
    ledger = mixed(tmp_path / "ledger.jsonl")
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(ledger.read_bytes())
    out = cli("report", str(ledger), str(copy), "--format", "json")
    assert out.exit_code == 0 and "counted once" in out.stderr
    both, one = json.loads(out.stdout), as_json(cli, ledger)
    for key in ("spent_usd", "possibly_spent_usd", "by_mode", "batch_saved_usd"):
        assert both[key] == one[key], key
    assert [b["batch_key"] for b in both["batches"]] == [ONE, TWO]


def test_a_batch_never_created_is_listed_but_sent_nothing(cli: Cli, tmp_path: Path) -> None:
    """The provider refused the create call: the requests' results (not billed, naming no batch)
    are linked to the batch by their `sent` lines; it is listed, but counts no request in the
    Batch mode line, which a report with no other batch then leaves out."""
    lines: list[LedgerLine] = [job("r-1", 0, "batch")]
    lines += [sent(f"b{n}", 1, 0.12, size="4K", key=ONE) for n in (1, 2)]
    for n in (1, 2):  # as `run` writes them: batch mode, no batch name
        refused = result(f"b{n}", 2, Outcome.HTTP_ERROR, 0.12, size="4K")
        lines.append(dataclasses.replace(refused, http_status=400, mode="batch"))
    lines.append(batch(ONE, 2, "NOT_CREATED", note="400 INVALID_ARGUMENT"))
    ledger = write(tmp_path / "ledger.jsonl", lines)
    data = as_json(cli, ledger)
    assert [(b["batch_key"], b["name"], b["state"], b["results"]) for b in data["batches"]] == [
        (ONE, None, "NOT_CREATED", 2)
    ]
    assert data["by_mode"][0]["mode"] == "batch" and data["runs"][0]["mode"] == "batch"
    assert "Batch mode" not in report(cli, ledger)
