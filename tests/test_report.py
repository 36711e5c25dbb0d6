"""`batchbanana report`: totals straight from ledger lines, merging, and every output format."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from batchbanana.report.loading import load_report
from batchbanana.report.render import render
from batchbanana.simulator import RunningSimulator
from tests.conftest import FAKE_KEY, CliResult, png_bytes, read_jsonl

Cli = Callable[..., CliResult]
Writer = Callable[..., Path]
START = datetime(2026, 11, 25, 22, 0, tzinfo=UTC)
PRO = "gemini-3-pro-image-preview"
FLASH = "gemini-3.1-flash-image-preview"
BILLING = {
    "ok": "yes", "refused": "yes", "no_image": "yes", "bad_response": "yes", "timeout": "yes",
    "write_error": "yes", "rate_limited": "no", "unavailable": "no", "connect_error": "no",
    "http_error": "no", "server_error": "unknown", "interrupted": "unknown", "over_budget": "no",
}  # fmt: skip


# -- hand-made ledgers --------------------------------------------------------------------------
def ts(seconds: float) -> str:
    """A ledger timestamp `seconds` after START."""
    moment = START + timedelta(seconds=seconds)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def job_line(name: str, at: float = 0) -> dict[str, Any]:
    """A `job` line as `run` writes it (settings trimmed)."""
    return {
        "event": "job",
        "ts": ts(at),
        "run_id": "r-1",
        "command": "run",
        "job": name,
        "manifest": f"/jobs/{name}.yaml",
        "settings": {
            "endpoint": "https://api.apiyi.com",
            "api_key_env": "BATCHBANANA_API_KEY",
            "price_book": "apiyi",
        },
    }


def sent_line(
    item: str, attempt: int, at: float, price: float = 0.09, model: str = PRO, size: str = "1K"
) -> dict[str, Any]:
    """A `sent` line."""
    spec = {"prompt": f"prompt of {item}", "model": model, "image_size": size}
    return {
        "event": "sent",
        "ts": ts(at),
        "item": item,
        "attempt": attempt,
        "fingerprint": f"sha256:{item}",
        "price_usd": price,
        "model": model,
        "image_size": size,
        "spec": spec,
    }


def result_line(
    item: str,
    attempt: int,
    outcome: str,
    at: float,
    price: float = 0.09,
    model: str = PRO,
    size: str = "1K",
    output: str | None = None,
    error: str | None = None,
    latency_s: float | None = 1.5,
) -> dict[str, Any]:
    """A `result` line, billed as the contract's table says."""
    return {
        "event": "result",
        "ts": ts(at),
        "item": item,
        "attempt": attempt,
        "fingerprint": f"sha256:{item}",
        "outcome": outcome,
        "billed": BILLING[outcome],
        "price_usd": price,
        "http_status": 200,
        "latency_s": latency_s,
        "output": output,
        "bytes": None,
        "finish_reason": None,
        "error": error if error is not None else (None if outcome == "ok" else outcome),
        "usage": None,
        "model": model,
        "image_size": size,
        "aspect_ratio": "1:1",
        "spec": {"prompt": f"prompt of {item}", "model": model, "image_size": size},
    }


def attempt(item: str, number: int, outcome: str, at: float, **fields: Any) -> list[dict[str, Any]]:
    """The `sent` and `result` lines of one request (an over_budget result has no `sent`)."""
    price = fields.get("price", 0.09)
    model, size = fields.get("model", PRO), fields.get("size", "1K")
    result = result_line(item, number, outcome, at + 1, **fields)
    if outcome == "over_budget":
        return [result]
    return [sent_line(item, number, at, price, model, size), result]


def write_ledger(path: Path, records: list[dict[str, Any]], tail: str = "") -> Path:
    """Write records as JSONL (plus raw trailing text, e.g. a torn line)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(record) + "\n" for record in records)
    path.write_text(text + tail, encoding="utf-8")
    return path


def mixed_ledger(path: Path, name: str = "shots") -> Path:
    """A job with an ok item, a free retry, billed failures, a server error and a dangling send."""
    records = [job_line(name)]
    records += attempt("a", 1, "ok", 1, output=str(path.parent / "a.png"), latency_s=2.0)
    records += attempt("b", 1, "rate_limited", 2)
    records += attempt(
        "b", 2, "ok", 5, model=FLASH, price=0.055, latency_s=4.0, output=str(path.parent / "b.png")
    )
    records += attempt("c", 1, "refused", 3, error="no image: finishReason IMAGE_SAFETY")
    records += attempt("d", 1, "server_error", 4, size="2K")
    records += attempt("e", 1, "no_image", 6, price=0.055, model=FLASH, size="512")
    records += attempt("f", 1, "over_budget", 7)
    records.append(sent_line("g", 1, 8, price=0.09, size="4K"))
    return write_ledger(path, records)


def independent_totals(*paths: Path) -> dict[str, Any]:
    """Totals computed here from raw lines, without the report module."""
    spent = possibly = 0.0
    attempts = free = 0
    for path in paths:
        records = read_jsonl(path)
        answered = {(r["item"], r["attempt"]) for r in records if r["event"] == "result"}
        for record in records:
            if record["event"] == "result":
                attempts += 1
                if record["billed"] == "yes":
                    spent += record["price_usd"]
                elif record["billed"] == "unknown":
                    possibly += record["price_usd"]
                elif record["outcome"] in ("rate_limited", "unavailable", "connect_error"):
                    free += 1
            elif record["event"] == "sent" and (record["item"], record["attempt"]) not in answered:
                possibly += record.get("price_usd", 0.0)
    return {"spent": spent, "possibly": possibly, "attempts": attempts, "free": free}


def report_json(cli: Cli, *paths: Path) -> dict[str, Any]:
    """Run `report --format json` and parse stdout."""
    result = cli("report", *map(str, paths), "--format", "json")
    assert result.exit_code == 0, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def cents(value: float) -> int:
    """Money compared to the cent."""
    return round(value * 100)


# -- JSON ---------------------------------------------------------------------------------------
def test_json_has_contract_keys_and_totals_equal_line_sums(cli: Cli, tmp_path: Path) -> None:
    """JSON totals equal independent sums over the ledger's lines, with every promised key."""
    ledger = mixed_ledger(tmp_path / "ledger.jsonl")
    data = report_json(cli, ledger)
    for key in (
        "spent_usd", "possibly_spent_usd", "items", "outcomes", "attempts", "by_model_size",
        "free_retries", "cost_per_image_usd", "latency_s", "failures", "retry_cost_usd",
        "ledgers", "warnings",
    ):  # fmt: skip
        assert key in data, key
    sums = independent_totals(ledger)
    assert data["spent_usd"] == pytest.approx(sums["spent"], abs=1e-6)
    assert data["possibly_spent_usd"] == pytest.approx(sums["possibly"], abs=1e-6)
    assert data["attempts"] == sums["attempts"] == 7
    assert data["free_retries"] == sums["free"] == 1
    assert data["items"] == 7
    assert data["outcomes"] == {
        "ok": 2, "refused": 1, "no_image": 1, "server_error": 1, "interrupted": 1,
        "over_budget": 1,
    }  # fmt: skip
    assert data["cost_per_image_usd"] == pytest.approx(sums["spent"] / 2, abs=1e-6)
    assert data["latency_s"]["p50"] == 2.0 and data["latency_s"]["p99"] == 4.0
    failures = {f["id"]: f for f in data["failures"]}
    assert set(failures) == {"c", "d", "e", "f", "g"}
    assert failures["c"]["error"] == "no image: finishReason IMAGE_SAFETY"
    assert data["retry_cost_usd"] == pytest.approx(0.09 * 4 + 0.055, abs=1e-6)
    rows = data["by_model_size"]
    assert sum(row["items"] for row in rows) == data["items"]
    assert cents(sum(row["spent_usd"] for row in rows)) == cents(data["spent_usd"])
    assert {(row["model"], row["image_size"]) for row in rows} >= {(PRO, "1K"), (FLASH, "512")}
    assert data["ledgers"] == [str(ledger)] and data["warnings"] == 0


def test_dangling_sent_counts_as_possibly_spent_and_interrupted(cli: Cli, tmp_path: Path) -> None:
    """A `sent` line with no result adds to possibly spent and ends its item interrupted."""
    records = [job_line("j"), *attempt("x", 1, "ok", 1), sent_line("y", 1, 3, price=0.24)]
    records.append(sent_line("x", 2, 5))  # a later send of x that never got its answer
    data = report_json(cli, write_ledger(tmp_path / "l.jsonl", records))
    assert data["spent_usd"] == 0.09
    assert data["possibly_spent_usd"] == pytest.approx(0.33, abs=1e-9)
    assert data["outcomes"] == {"interrupted": 2}
    assert data["attempts"] == 1
    assert data["retry_cost_usd"] == pytest.approx(0.33, abs=1e-9)


def test_money_keeps_tenths_of_a_cent_and_no_float_noise(cli: Cli, tmp_path: Path) -> None:
    """Three $0.055 requests total exactly 0.165 in JSON and $0.165 in the table."""
    records = [job_line("j")]
    for index in range(3):
        records += attempt(f"i{index}", 1, "ok", index, price=0.055, model=FLASH)
    ledger = write_ledger(tmp_path / "l.jsonl", records)
    assert report_json(cli, ledger)["spent_usd"] == 0.165
    table = cli("report", str(ledger)).stdout
    assert "$0.165" in table and "$0.055" in table


def test_torn_last_line_and_garbage_line_are_skipped_with_their_line_numbers(
    cli: Cli, tmp_path: Path
) -> None:
    """A garbage middle line and a torn last line are named by line number; the rest is reported."""
    records = [job_line("j"), *attempt("a", 1, "ok", 1)]
    text = "".join(json.dumps(r) + "\n" for r in records)
    garbage = "this is not json\n"
    torn = json.dumps(result_line("b", 1, "ok", 9))[:40]
    ledger = tmp_path / "l.jsonl"
    ledger.write_text(text + garbage + json.dumps(sent_line("b", 1, 8)) + "\n" + torn)
    result = cli("report", str(ledger), "--format", "json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert f"{ledger}:4:" in result.stderr and f"{ledger}:6:" in result.stderr
    assert data["warnings"] == 2
    assert data["spent_usd"] == 0.09
    assert data["outcomes"] == {"ok": 1, "interrupted": 1}  # b's result was torn away


def test_missing_ledger_exits_2(cli: Cli, tmp_path: Path) -> None:
    """A ledger path that does not exist is bad input: one line on stderr, exit 2."""
    result = cli("report", str(tmp_path / "nope.jsonl"))
    assert result.exit_code == 2
    assert "nope.jsonl" in result.stderr and result.stdout == ""


# -- merging ------------------------------------------------------------------------------------
def test_two_ledgers_of_different_jobs_merge_as_their_sum(cli: Cli, tmp_path: Path) -> None:
    """Merging ledgers of two jobs gives the sum of each one's figures, even with equal item ids."""
    first = mixed_ledger(tmp_path / "one" / "ledger.jsonl", name="one")
    second = mixed_ledger(tmp_path / "two" / "ledger.jsonl", name="two")
    alone = [report_json(cli, first), report_json(cli, second)]
    both = report_json(cli, first, second)
    for key in ("items", "attempts", "free_retries"):
        assert both[key] == alone[0][key] + alone[1][key], key
    for key in ("spent_usd", "possibly_spent_usd", "retry_cost_usd"):
        assert cents(both[key]) == cents(alone[0][key] + alone[1][key]), key
    for outcome, count in alone[0]["outcomes"].items():
        assert both["outcomes"][outcome] == count + alone[1]["outcomes"][outcome]
    assert len(both["failures"]) == len(alone[0]["failures"]) * 2
    assert both["ledgers"] == [str(first), str(second)]


def test_nights_of_one_job_merge_items_by_latest_result(cli: Cli, tmp_path: Path) -> None:
    """Two ledgers of the same job name merge by id; an item's latest result by time is final."""
    night1 = write_ledger(
        tmp_path / "n1.jsonl",
        [job_line("night"), *attempt("a", 1, "refused", 1), *attempt("b", 1, "ok", 2)],
    )
    night2 = write_ledger(
        tmp_path / "n2.jsonl", [job_line("night", 100), *attempt("a", 1, "ok", 101)]
    )
    data = report_json(cli, night2, night1)  # argument order does not decide "latest"
    assert data["items"] == 2
    assert data["outcomes"] == {"ok": 2}
    assert data["attempts"] == 3
    assert data["spent_usd"] == pytest.approx(0.27, abs=1e-9)
    assert data["failures"] == []


def test_the_same_ledger_twice_or_a_copy_is_counted_once(cli: Cli, tmp_path: Path) -> None:
    """Passing a ledger twice, or a byte-for-byte copy of it, never counts its money twice."""
    ledger = mixed_ledger(tmp_path / "l.jsonl")
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(ledger.read_bytes())
    once = report_json(cli, ledger)
    result = cli("report", str(ledger), str(ledger), str(copy), "--format", "json")
    assert result.exit_code == 0
    again = json.loads(result.stdout)
    assert again["spent_usd"] == once["spent_usd"]
    assert again["possibly_spent_usd"] == once["possibly_spent_usd"]
    assert again["items"] == once["items"] and again["attempts"] == once["attempts"]
    assert "given twice" in result.stderr and "counted once" in result.stderr


# -- table and CSV ------------------------------------------------------------------------------
def test_table_shows_figures_and_cuts_the_failure_list_at_twenty(cli: Cli, tmp_path: Path) -> None:
    """The table shows outcomes, money and retry cost, and 20 failures then "... and N more"."""
    records = [job_line("j")]
    for index in range(25):
        records += attempt(f"bad-{index:02d}", 1, "refused", index)
    ledger = write_ledger(tmp_path / "l.jsonl", records)
    result = cli("report", str(ledger))
    assert result.exit_code == 0
    out = result.stdout
    assert "refused" in out and "Spent:" in out and "Possibly spent:" in out
    assert "bad-19" in out and "bad-20" not in out
    assert "... and 5 more" in out
    assert "$2.25" in out  # retry cost of 25 x $0.09
    assert f"batchbanana retry {ledger}" in out


def test_csv_parses_and_its_total_row_equals_json(cli: Cli, tmp_path: Path) -> None:
    """CSV has a header, one row per model and size, and a TOTAL row equal to the JSON totals."""
    ledger = mixed_ledger(tmp_path / "l.jsonl")
    data = report_json(cli, ledger)
    result = cli("report", str(ledger), "--format", "csv")
    assert result.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    total = rows[-1]
    assert total["model"] == "TOTAL"
    assert len(rows) == len(data["by_model_size"]) + 1
    assert float(total["spent_usd"]) == data["spent_usd"]
    assert float(total["possibly_spent_usd"]) == data["possibly_spent_usd"]
    assert float(total["retry_cost_usd"]) == data["retry_cost_usd"]
    assert int(total["items"]) == data["items"] and int(total["attempts"]) == data["attempts"]
    assert cents(sum(float(r["spent_usd"]) for r in rows[:-1])) == cents(data["spent_usd"])


# -- HTML ---------------------------------------------------------------------------------------
VOID = {"meta", "img", "br", "line", "polyline", "rect", "hr", "input", "link"}


class PageChecker(HTMLParser):
    """Collects <img> sources and checks that every opened element is closed in order."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.images: list[dict[str, str | None]] = []
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(dict(attrs))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if not self.stack or self.stack.pop() != tag:
            self.problems.append(f"unexpected </{tag}>")


def check_page(page: str, folder: Path) -> PageChecker:
    """Parse a report page; assert it is well nested, offline, key-free and its images exist."""
    checker = PageChecker()
    checker.feed(page)
    checker.close()
    assert checker.problems == [] and checker.stack == []
    assert "<svg" in page
    assert re.findall(r"https?://[^\s\"'<>]+", page) in (
        [],
        ["http://www.w3.org/2000/svg"] * page.count("<svg"),
    )
    assert not re.search(r"(?<![A-Za-z0-9])sk-[A-Za-z0-9]", page)
    for image in checker.images:
        src = image["src"] or ""
        assert not src.startswith(("/", "file:", "data:")), src
        assert (folder / unquote(src)).is_file(), src
        assert image["loading"] == "lazy" and image["width"] and image["height"]
    return checker


def test_html_is_one_offline_page_whose_images_resolve(cli: Cli, tmp_path: Path) -> None:
    """The HTML page parses, links existing images relative to its folder and skips missing ones."""
    ledger = mixed_ledger(tmp_path / "run" / "ledger.jsonl")
    (tmp_path / "run" / "a.png").write_bytes(png_bytes(16, 8))  # b's ok image is left missing
    output = tmp_path / "reports" / "deep" / "report.html"
    output.parent.mkdir(parents=True)
    result = cli("report", str(ledger), "--format", "html", "--output", str(output))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    page = output.read_text(encoding="utf-8")
    checker = check_page(page, output.parent)
    assert [image["alt"] for image in checker.images] == ["a"]
    assert checker.images[0]["src"] == "../../run/a.png"
    assert "not found" in page  # b's image was missing and is said to be
    assert "IMAGE_SAFETY" in page and "Failures (5)" in page
    assert "api.apiyi.com" in page and "BATCHBANANA_API_KEY" not in page


def test_user_text_is_escaped_and_key_like_text_is_redacted(cli: Cli, tmp_path: Path) -> None:
    """Prompts and errors are HTML-escaped, and anything shaped like a key is blanked everywhere."""
    records = [job_line("j")]
    records += attempt("a", 1, "http_error", 1, error=f"403 bad key {FAKE_KEY} <script>x</script>")
    ledger = write_ledger(tmp_path / "l.jsonl", records)
    for fmt in ("table", "json", "csv", "html"):
        result = cli("report", str(ledger), "--format", fmt)
        assert result.exit_code == 0
        assert FAKE_KEY not in result.stdout and "FAKE-test-key" not in result.stdout, fmt
    page = cli("report", str(ledger), "--format", "html").stdout
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_html_for_ten_thousand_items_stays_small(tmp_path: Path) -> None:
    """10,000 delivered images render as lazy thumbnails in pages of 500, in well under 5 MB."""
    out = tmp_path / "out"
    out.mkdir()
    image = png_bytes(4, 4)
    records = [job_line("big")]
    for index in range(10_000):
        item = f"item-{index:05d}"
        path = out / f"{item}.png"
        path.write_bytes(image)
        records.append(sent_line(item, 1, index * 0.5, model=FLASH, size="2K", price=0.055))
        records.append(
            result_line(
                item, 1, "ok", index * 0.5 + 2, model=FLASH, size="2K", price=0.055,
                output=str(path), latency_s=10 + index % 7,
            )
        )  # fmt: skip
    records += attempt("late", 1, "timeout", 6000)
    ledger = write_ledger(out / "ledger.jsonl", records)
    loaded = load_report([ledger], warn=lambda text: None)
    output = tmp_path / "report.html"
    page = render(loaded, "html", output)
    output.write_text(page, encoding="utf-8")
    assert output.stat().st_size < 5_000_000
    assert page.count("<img ") == 10_000
    # 10,001 cards (the timed-out item has one too, for the outcome filter) in pages of 500.
    assert page.count("<details") == 21 and page.count("<details open") == 1
    checker = check_page(page, output.parent)
    assert len(checker.images) == 10_000
    data = json.loads(render(loaded, "json", None))
    assert data["spent_usd"] == pytest.approx(10_000 * 0.055 + 0.09, abs=1e-6)


# -- end to end ---------------------------------------------------------------------------------
def test_report_after_a_real_run_matches_the_ledger(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """After a real run with faults, every format agrees with sums over the ledger and the bill."""
    items = [
        {"id": "calm", "prompt": "a calm lake"},
        {"id": "flaky", "prompt": "a busy street [sim:429x1]"},
        {"id": "refused", "prompt": "a forbidden scene [sim:refuse]"},
        {"id": "broken", "prompt": "a glitch [sim:500]"},
        {"id": "empty", "prompt": "an empty frame [sim:no_image]"},
        {"id": "wide", "prompt": "a wide dune", "image_size": "2K", "aspect_ratio": "16:9"},
    ]
    manifest = write_manifest(items, job="e2e", endpoint=simulator.url)
    run = cli("run", str(manifest), "--no-progress")
    assert run.exit_code == 1, run.stderr
    ledger = tmp_path / "out" / "ledger.jsonl"
    records = read_jsonl(ledger)
    results = [r for r in records if r["event"] == "result"]
    latest: dict[str, str] = {}
    for record in results:
        latest[record["item"]] = record["outcome"]
    sums = independent_totals(ledger)

    data = report_json(cli, ledger)
    assert data["spent_usd"] == pytest.approx(sums["spent"], abs=1e-6)
    assert data["possibly_spent_usd"] == pytest.approx(sums["possibly"], abs=1e-6)
    assert data["attempts"] == len(results) == sums["attempts"]
    assert data["items"] == len(items)
    expected: dict[str, int] = {}
    for outcome in latest.values():
        expected[outcome] = expected.get(outcome, 0) + 1
    assert data["outcomes"] == expected
    assert expected == {"ok": 3, "refused": 1, "server_error": 1, "no_image": 1}
    assert data["free_retries"] == 1
    bill = simulator.bill()
    assert data["spent_usd"] - 1e-9 <= bill["billed_usd"]
    assert bill["billed_usd"] <= data["spent_usd"] + data["possibly_spent_usd"] + 1e-9
    failed = [r for r in results if latest[r["item"]] != "ok"]
    assert data["retry_cost_usd"] == pytest.approx(math.fsum(r["price_usd"] for r in failed))
    assert {f["id"] for f in data["failures"]} == {"refused", "broken", "empty"}

    table = cli("report", str(ledger))
    assert table.exit_code == 0 and "Failed items (3)" in table.stdout
    rows = list(csv.DictReader(io.StringIO(cli("report", str(ledger), "--format", "csv").stdout)))
    assert float(rows[-1]["spent_usd"]) == data["spent_usd"]

    output = tmp_path / "html" / "report.html"
    output.parent.mkdir()
    html_run = cli("report", str(ledger), "--format", "html", "--output", str(output))
    assert html_run.exit_code == 0
    checker = check_page(output.read_text(encoding="utf-8"), output.parent)
    assert sorted(str(image["alt"]) for image in checker.images) == ["calm", "flaky", "wide"]
    wide = next(image for image in checker.images if image["alt"] == "wide")
    assert (wide["width"], wide["height"]) == ("160", "90")
