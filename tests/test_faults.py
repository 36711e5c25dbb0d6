"""Every fault the simulator can play, end to end through the CLI: each attempt is classified and
billed as the contract's table says, only unbilled failures are retried, and the ledger's money
brackets the provider's bill (spent <= bill <= spent + possibly spent)."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from batchbanana.simulator import RunningSimulator
from tests.conftest import CliResult, read_jsonl, results

Cli = Callable[..., CliResult]
Writer = Callable[..., Path]
Starter = Callable[..., RunningSimulator]


def ledger_of(tmp_path: Path) -> Path:
    """The default ledger of a manifest written by the `write_manifest` fixture."""
    return tmp_path / "out" / "ledger.jsonl"


def attempts(ledger: Path, item: str) -> list[tuple[str, str, int | None]]:
    """(outcome, billed, http_status) of every result line of one item, in ledger order."""
    return [
        (line["outcome"], line["billed"], line["http_status"])
        for line in results(ledger)
        if line["item"] == item
    ]


def assert_bill_brackets(ledger: Path, sim: RunningSimulator) -> None:
    """Ledger spent <= the provider's bill <= ledger spent + possibly spent."""
    lines = results(ledger)
    spent = sum(line["price_usd"] for line in lines if line["billed"] == "yes")
    possibly = sum(line["price_usd"] for line in lines if line["billed"] == "unknown")
    bill = sim.bill()["billed_usd"]
    assert spent - 1e-9 <= bill <= spent + possibly + 1e-9, (spent, bill, possibly)


def at(record: dict[str, Any]) -> float:
    """A ledger line's `ts` as a POSIX timestamp."""
    return datetime.fromisoformat(record["ts"].replace("Z", "+00:00")).timestamp()


def wait_before_second_attempt(ledger: Path, item: str) -> tuple[dict[str, Any], float]:
    """The item's first result line, and the seconds from it to the item's second `sent` line."""
    records = [r for r in read_jsonl(ledger) if r.get("item") == item]
    first_result = next(r for r in records if r["event"] == "result")
    second_sent = [r for r in records if r["event"] == "sent"][1]
    return first_result, at(second_sent) - at(first_result)


def no_temporaries(folder: Path) -> bool:
    """True when no `*.tmp` file (hidden ones included) is left in the folder."""
    return not list(folder.glob("*.tmp"))


# -- one attempt, one classification ------------------------------------------------------------

OK = ("ok", "yes", 200)
BAD = ("bad_response", "yes", 200)


@pytest.mark.parametrize(
    ("directive", "expected", "images"),
    [
        pytest.param("drop", [("server_error", "unknown", None)], 0, id="drop-before-answer"),
        pytest.param("cut", [BAD], 0, id="body-cut-midway"),
        pytest.param("bad_json", [BAD], 0, id="200-invalid-json"),
        pytest.param("bad_b64", [BAD], 0, id="200-invalid-base64"),
        pytest.param("escaped_slashes", [OK], 1, id="escaped-slashes"),
        pytest.param("gzip", [OK], 1, id="gzip"),
        pytest.param("snake", [OK], 1, id="snake-case"),
        pytest.param("urlsafe", [OK], 1, id="urlsafe-base64"),
        pytest.param("nopad", [OK], 1, id="unpadded-base64"),
        pytest.param("urlsafe,nopad", [OK], 1, id="urlsafe-unpadded-base64"),
        pytest.param("thought", [OK], 1, id="thought-draft-not-saved"),
        pytest.param("two_images", [OK], 2, id="two-images"),
        pytest.param("no_image", [("no_image", "yes", 200)], 0, id="text-only"),
        pytest.param("block", [("refused", "yes", 200)], 0, id="prompt-feedback-block"),
        pytest.param("502", [("server_error", "unknown", 502)], 0, id="502-html-from-proxy"),
        pytest.param("504", [("server_error", "unknown", 504)], 0, id="504-deadline"),
    ],
)
def test_each_answer_shape_is_classified_billed_and_sent_once(
    cli: Cli,
    write_manifest: Writer,
    simulator: RunningSimulator,
    tmp_path: Path,
    directive: str,
    expected: list[tuple[str, str, int | None]],
    images: int,
) -> None:
    """An answer shape is recorded and billed as the contract says, and sent exactly once."""
    prompt = f"a lighthouse [sim:{directive}]"
    manifest = write_manifest([{"id": "x", "prompt": prompt}], endpoint=simulator.url)
    result = cli("run", str(manifest), "--no-progress")
    assert result.exit_code == (0 if expected[-1][0] == "ok" else 1), result.stderr
    ledger = ledger_of(tmp_path)
    assert attempts(ledger, "x") == expected
    assert simulator.stats()["by_prompt"] == {prompt: 1}
    saved = sorted(p.name for p in (tmp_path / "out").iterdir() if p.name != "ledger.jsonl")
    names = ["x.png", "x+2.png"][:images]  # each with its sidecar (metadata: sidecar, the default)
    assert saved == sorted(names + [name.replace(".png", ".json") for name in names])
    if images:
        assert (tmp_path / "out" / "x.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert_bill_brackets(ledger, simulator)


def test_thought_draft_is_never_the_saved_image(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """With a `thought` draft before the final image, the saved file is the final image."""
    manifest = write_manifest(
        [
            {"id": "plain", "prompt": "a kite"},
            {"id": "drafted", "prompt": "a kite [sim:thought]"},
        ],
        endpoint=simulator.url,
    )
    assert cli("run", str(manifest), "--no-progress").exit_code == 0
    out = tmp_path / "out"
    assert (out / "drafted.png").read_bytes() == (out / "plain.png").read_bytes()


def test_body_trickling_past_the_timeout_is_a_billed_timeout_sent_once(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """A 200 whose body trickles for 3 s against a 1 s timeout is `timeout`, billed, not retried,
    and leaves no partial image or temporary file."""
    prompt = "a mill [sim:trickle:3]"
    manifest = write_manifest(
        [{"id": "t", "prompt": prompt}], endpoint=simulator.url, timeouts={"1K": 1}
    )
    started = time.monotonic()
    assert cli("run", str(manifest), "--no-progress").exit_code == 1
    assert time.monotonic() - started < 2.9
    ledger = ledger_of(tmp_path)
    assert attempts(ledger, "t") == [("timeout", "yes", 200)]
    assert simulator.stats()["by_prompt"] == {prompt: 1}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ledger.jsonl"]
    assert_bill_brackets(ledger, simulator)


def test_html_503_is_retried_unbilled_then_ok(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """A 503 with an nginx HTML body is `unavailable` (not billed), retried, and then ok."""
    prompt = "a pier [sim:html503]"
    manifest = write_manifest([{"id": "h", "prompt": prompt}], endpoint=simulator.url)
    result = cli("run", str(manifest), "--no-progress")
    assert result.exit_code == 0, result.stderr
    ledger = ledger_of(tmp_path)
    assert attempts(ledger, "h") == [("unavailable", "no", 503), OK]
    assert simulator.stats()["by_prompt"] == {prompt: 2}
    assert simulator.bill()["billed_requests"] == 1
    assert_bill_brackets(ledger, simulator)


def test_slow_answer_within_total_but_over_connect_timeout_is_ok(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """An answer 1.5 s away passes with a 0.5 s connect timeout: connect time is not answer time."""
    prompt = "a barn [sim:slow:1.5]"
    manifest = write_manifest(
        [{"id": "s", "prompt": prompt}],
        endpoint=simulator.url,
        timeouts={"connect": 0.5, "1K": 5},
    )
    result = cli("run", str(manifest), "--no-progress")
    assert result.exit_code == 0, result.stderr
    ledger = ledger_of(tmp_path)
    assert attempts(ledger, "s") == [OK]
    assert results(ledger)[0]["latency_s"] >= 1.4
    assert simulator.stats()["by_prompt"] == {prompt: 1}
    assert_bill_brackets(ledger, simulator)


# -- waits the server demands ---------------------------------------------------------------------


def test_429_with_retry_info_only_waits_the_demanded_delay(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """A 429 whose only hint is google.rpc.RetryInfo retryDelay "1s" waits >= 1 s, unbilled."""
    prompt = "a bridge [sim:retry_info:1]"
    manifest = write_manifest([{"id": "r", "prompt": prompt}], endpoint=simulator.url)
    assert cli("run", str(manifest), "--no-progress").exit_code == 0
    ledger = ledger_of(tmp_path)
    assert attempts(ledger, "r") == [("rate_limited", "no", 429), OK]
    first_result, gap_s = wait_before_second_attempt(ledger, "r")
    assert first_result["retry_in_s"] >= 1.0
    assert gap_s >= 0.95
    assert simulator.stats()["by_prompt"] == {prompt: 2}
    assert_bill_brackets(ledger, simulator)


def test_429_with_retry_after_http_date_waits_about_that_long(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """`Retry-After` as an HTTP date 2 s ahead (whole seconds, so 1-2 s away) is honoured."""
    prompt = "a tower [sim:retry_date:2]"
    manifest = write_manifest([{"id": "d", "prompt": prompt}], endpoint=simulator.url)
    assert cli("run", str(manifest), "--no-progress").exit_code == 0
    ledger = ledger_of(tmp_path)
    assert attempts(ledger, "d") == [("rate_limited", "no", 429), OK]
    first_result, gap_s = wait_before_second_attempt(ledger, "d")
    assert 0.9 <= first_result["retry_in_s"] <= 2.1
    assert 0.9 <= gap_s <= 3.0
    assert simulator.stats()["by_prompt"] == {prompt: 2}


# -- job-level stops ------------------------------------------------------------------------------


def stop_lines(stderr: str) -> list[str]:
    """The stderr lines that announce a job-level stop."""
    return [line for line in stderr.splitlines() if line.startswith("batchbanana: stopping:")]


def four_items(first_directive: str) -> list[dict[str, Any]]:
    """A faulty first item, then three plain ones (sent only after it, at concurrency 1)."""
    return [{"id": "a", "prompt": f"first [sim:{first_directive}]"}] + [
        {"id": name, "prompt": f"later {name}"} for name in ("b", "c", "d")
    ]


@pytest.mark.parametrize(
    ("directive", "reason"),
    [
        pytest.param("quota_day", "per-day quota", id="quota-per-day"),
        pytest.param("quota_zero", "limit of zero", id="quota-limit-zero"),
        pytest.param("spend_cap", "spending cap", id="spending-cap-reached"),
        pytest.param("prepaid", "prepaid credit", id="prepaid-credit-used-up"),
    ],
)
def test_exhausted_quota_stops_the_job_after_the_first_429(
    cli: Cli,
    write_manifest: Writer,
    simulator: RunningSimulator,
    tmp_path: Path,
    directive: str,
    reason: str,
) -> None:
    """A 429 whose QuotaFailure is per day or zero stops sending: later items wait, exit 1."""
    manifest = write_manifest(four_items(directive), endpoint=simulator.url, concurrency=1)
    result = cli("run", str(manifest), "--no-progress")
    assert result.exit_code == 1
    ledger = ledger_of(tmp_path)
    assert attempts(ledger, "a") == [("rate_limited", "no", 429)]
    assert {line["item"] for line in results(ledger)} == {"a"}
    assert simulator.stats()["by_prompt"] == {f"first [sim:{directive}]": 1}
    lines = stop_lines(result.stderr)
    assert len(lines) == 1 and reason in lines[0], result.stderr


@pytest.mark.parametrize(
    ("directive", "status"),
    [pytest.param("401", 401, id="401-bad-key"), pytest.param("402", 402, id="402-no-balance")],
)
def test_refused_key_or_balance_stops_at_once_and_next_run_sends_what_is_owed(
    cli: Cli,
    write_manifest: Writer,
    simulator: RunningSimulator,
    tmp_path: Path,
    directive: str,
    status: int,
) -> None:
    """A 401/402 stops the job before any later item is sent (exit 1); the next run sends the
    unsent items and the refused one again, since its attempt was not billed."""
    manifest = write_manifest(four_items(directive), endpoint=simulator.url, concurrency=1)
    first = cli("run", str(manifest), "--no-progress")
    assert first.exit_code == 1
    ledger = ledger_of(tmp_path)
    assert attempts(ledger, "a") == [("http_error", "no", status)]
    assert simulator.stats()["by_prompt"] == {f"first [sim:{directive}]": 1}
    assert len(stop_lines(first.stderr)) == 1, first.stderr
    assert "not sent" in first.stderr
    # The simulator's fault was one-shot for that prompt: it is gone now, as a fixed key would be.
    second = cli("run", str(manifest), "--no-progress", "--endpoint", simulator.url)
    assert second.exit_code == 0, second.stderr
    assert attempts(ledger, "a") == [("http_error", "no", status), OK]
    for name in ("b", "c", "d"):
        assert attempts(ledger, name) == [OK]
    assert simulator.stats()["by_prompt"] == {
        f"first [sim:{directive}]": 2,
        "later b": 1,
        "later c": 1,
        "later d": 1,
    }
    assert_bill_brackets(ledger, simulator)


def test_a_fresh_endpoint_receives_the_items_a_stopped_run_left(
    cli: Cli,
    write_manifest: Writer,
    simulator: RunningSimulator,
    make_simulator: Starter,
    tmp_path: Path,
) -> None:
    """After a 402 stop, `run --endpoint` on another provider sends the never-sent items there."""
    items = [{"id": "a", "prompt": "first [sim:402]"}] + [
        {"id": name, "prompt": f"later {name}"} for name in ("b", "c")
    ]
    manifest = write_manifest(items, endpoint=simulator.url, concurrency=1)
    assert cli("run", str(manifest), "--no-progress").exit_code == 1
    fresh = make_simulator(seed=2)
    second = cli("run", str(manifest), "--no-progress", "--endpoint", fresh.url)
    # The fresh provider plays the prompt's 402 again: the job stops again before b and c.
    assert second.exit_code == 1
    assert fresh.stats()["by_prompt"] == {"first [sim:402]": 1}
    # Once that provider's fault is spent, the next run sends everything still owed.
    third = cli("run", str(manifest), "--no-progress", "--endpoint", fresh.url)
    assert third.exit_code == 0, third.stderr
    assert fresh.stats()["by_prompt"] == {"first [sim:402]": 2, "later b": 1, "later c": 1}
    assert simulator.stats()["by_prompt"] == {"first [sim:402]": 1}
    ledger = ledger_of(tmp_path)
    assert attempts(ledger, "a") == [("http_error", "no", 402)] * 2 + [OK]


def test_demanded_wait_over_max_wait_stops_the_job_without_waiting(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """`Retry-After: 5` with retry.max_wait_s 2 is a job-level stop (exit 1), not a 5 s sleep."""
    manifest = write_manifest(
        four_items("retry_after:5"),
        endpoint=simulator.url,
        concurrency=1,
        retry={"base_delay_s": 0.05, "max_delay_s": 0.2, "max_wait_s": 2},
    )
    started = time.monotonic()
    result = cli("run", str(manifest), "--no-progress")
    assert time.monotonic() - started < 4.5
    assert result.exit_code == 1
    ledger = ledger_of(tmp_path)
    assert attempts(ledger, "a") == [("rate_limited", "no", 429)]
    assert simulator.stats()["by_prompt"] == {"first [sim:retry_after:5]": 1}
    lines = stop_lines(result.stderr)
    assert len(lines) == 1 and "max_wait_s" in lines[0], result.stderr


# -- random faults at volume ----------------------------------------------------------------------


def test_random_faults_at_volume_never_resend_a_billed_attempt(
    cli: Cli, write_manifest: Writer, make_simulator: Starter, tmp_path: Path
) -> None:
    """60 items at concurrency 8 under random 429s, 503s and drops: every item ends with a final
    result, no billed or possibly billed attempt is followed by another, and the bill brackets."""
    sim = make_simulator(rate_429=0.3, rate_503=0.2, rate_drop=0.05, seed=7)
    items = [{"id": f"i{n:02d}", "prompt": f"scene {n}"} for n in range(60)]
    manifest = write_manifest(items, endpoint=sim.url, concurrency=8)
    cli("run", str(manifest), "--no-progress")
    ledger = ledger_of(tmp_path)
    records = [r for r in read_jsonl(ledger) if r["event"] in ("sent", "result")]
    by_item: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_item.setdefault(record["item"], []).append(record)
    assert set(by_item) == {item["id"] for item in items}
    for item_id, lines in by_item.items():
        events = [line["event"] for line in lines]
        assert events == ["sent", "result"] * (len(lines) // 2), item_id  # every sent answered
        final = lines[-1]
        assert "retry_in_s" not in final, item_id  # a promised retry was never abandoned
        for line in lines[:-1]:
            if line["event"] == "result":
                assert line["billed"] == "no", (item_id, line["outcome"])
        sent_attempts = [line["attempt"] for line in lines if line["event"] == "sent"]
        assert sent_attempts == list(range(1, len(sent_attempts) + 1)), item_id
    total_requests = sum(1 for r in records if r["event"] == "sent")
    assert sim.stats()["requests"] == total_requests
    outcomes = {lines[-1]["outcome"] for lines in by_item.values()}
    assert "ok" in outcomes and outcomes <= {"ok", "server_error", "rate_limited", "unavailable"}
    assert_bill_brackets(ledger, sim)


# -- the disk -------------------------------------------------------------------------------------


def test_unwritable_output_folder_is_exit_2_before_anything_is_sent(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """An output_dir under a regular file cannot be created: exit 2, one line, zero requests."""
    (tmp_path / "blocker").write_text("a file, not a folder")
    manifest = write_manifest(
        [{"id": "a", "prompt": "p"}], endpoint=simulator.url, output_dir="blocker/out"
    )
    result = cli("run", str(manifest), "--no-progress")
    assert result.exit_code == 2
    assert "blocker" in result.stderr and "Traceback" not in result.stderr
    assert simulator.stats()["requests"] == 0
    assert (tmp_path / "blocker").read_text() == "a file, not a folder"


FILE_SIZE_LIMIT = 200_000  # bytes any one file of the child may reach: the ledger needs ~10 kB


def _limit_file_size() -> None:
    """In the child before exec: files stop growing at FILE_SIZE_LIMIT, with EFBIG, not a kill."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))


def run_child(*args: str, limited: bool) -> subprocess.CompletedProcess[str]:
    """`python -m batchbanana ARGS` in a child process, optionally with the file-size limit."""
    return subprocess.run(
        [sys.executable, "-m", "batchbanana", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
        preexec_fn=_limit_file_size if limited else None,
        check=False,
    )


def test_paid_image_that_cannot_be_written_is_a_billed_write_error_then_retry_delivers_it(
    write_manifest: Writer, make_simulator: Starter, tmp_path: Path
) -> None:
    """A 2 MB image against a 200 kB file-size limit is `write_error` (billed), leaves no partial
    image or temporary, stops the job (exit 1); `retry --yes` without the limit delivers it."""
    sim = make_simulator(image_bytes=2_000_000, seed=3)
    items = [{"id": "big", "prompt": "a 4K harbour", "image_size": "4K"}] + [
        {"id": f"after{n}", "prompt": f"later {n}"} for n in range(3)
    ]
    manifest = write_manifest(items, endpoint=sim.url, concurrency=1)
    first = run_child("run", str(manifest), "--no-progress", limited=True)
    assert first.returncode == 1, first.stderr
    out = tmp_path / "out"
    ledger = out / "ledger.jsonl"
    assert attempts(ledger, "big") == [("write_error", "yes", 200)]
    assert sim.stats()["by_prompt"] == {"a 4K harbour": 1}  # the job stopped sending
    assert sorted(p.name for p in out.iterdir()) == ["ledger.jsonl"]
    assert no_temporaries(out)
    assert len(stop_lines(first.stderr)) == 1, first.stderr
    assert_bill_brackets(ledger, sim)

    again = run_child("retry", str(ledger), "--yes", "--no-progress", limited=False)
    assert again.returncode == 0, again.stderr
    assert attempts(ledger, "big") == [("write_error", "yes", 200), OK]
    saved = (out / "big.png").read_bytes()
    assert saved[:8] == b"\x89PNG\r\n\x1a\n" and len(saved) >= 1_900_000
    assert results(ledger)[-1]["bytes"] == len(saved)
    assert sim.stats()["by_prompt"] == {"a 4K harbour": 2}
    assert no_temporaries(out)
    assert_bill_brackets(ledger, sim)
