"""Batch mode, found in a review: recovery by display name past a page of large inline results,
collection that stops at a write failure instead of losing the rest, a SUCCEEDED batch whose
output is not there yet, per-line errors with gRPC codes."""

from __future__ import annotations

import base64
import json
import re
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from batchbanana.cli.commands import main
from batchbanana.errors import ImageProblem
from batchbanana.ledger.writer import LedgerWriter
from batchbanana.rules.batch import BatchState, BatchStatus
from batchbanana.rules.pricing import PriceRule
from batchbanana.run import answers, batch_submit
from batchbanana.run.batch_attach import OUTPUT_GRACE_S, Waiting, output_pending
from batchbanana.run.batch_collect import COLLECT_OWNER, Collector, Member
from batchbanana.run.batch_stream import jsonl_responses
from batchbanana.simulator import RunningSimulator, batch_handlers, operations
from tests.conftest import results, run_subprocess
from tests.test_batch_mode_e2e import (
    KEY_ENV,
    Writer,
    assert_bill_matches,
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


def test_a_write_failure_while_collecting_leaves_the_rest_of_the_batch_to_collect_next_run(
    make_simulator: Callable[..., RunningSimulator], write_manifest: Writer, tmp_path: Path
) -> None:
    # Every image of the batch fails to be written (as on a full disk): sync mode would stop at
    # the first; the batch must not burn every other paid answer as a write_error.
    sim = make_simulator(price_book="google", batch_pending_s=1.5, batch_running_s=0.1)
    manifest = batch_manifest(write_manifest, sim, items(5))
    out = tmp_path / "out"
    ledger = out / "ledger.jsonl"
    process = start_run(manifest)
    wait_for(ledger, '"event": "batch"')
    for n in range(5):
        (out / f"p{n}.png").mkdir()  # the image's final name cannot be written
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 1, stderr
    assert "Traceback" not in stderr
    first = results(ledger)
    assert [line["outcome"] for line in first] == ["write_error"]
    for n in range(5):
        (out / f"p{n}.png").rmdir()
    again = run_subprocess("run", str(manifest), "--no-progress", env=KEY_ENV)
    assert again.returncode == 1, again.stderr  # the write_error stays for `retry`
    latest = {line["item"]: line["outcome"] for line in results(ledger)}
    assert sorted(latest.values()) == ["ok"] * 4 + ["write_error"]
    assert len(sim_batches(sim)) == 1  # collected from the same batch, nothing sent again
    assert_bill_matches(ledger, sim)


def _collector(tmp_path: Path, ids: list[str]) -> tuple[Collector, LedgerWriter]:
    writer = LedgerWriter(tmp_path / "ledger.jsonl")
    writer.open()
    rule = PriceRule(per_request_usd=0.067)
    members = {(i, 1): Member(i, 1, f"fp-{i}", rule, "1K", {"prompt": i}) for i in ids}
    return Collector("batches/b1", members, tmp_path, writer, lambda text: text), writer


def _answer(data: bytes) -> dict[str, Any]:
    part = {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(data).decode()}}
    return {"candidates": [{"content": {"parts": [part]}, "finishReason": "STOP"}]}


def test_an_image_that_cannot_be_spilled_stops_the_collection_and_leaves_its_requests_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 2000  # over SPILL_BYTES: goes to a file
    path = tmp_path / "responses.jsonl"
    path.write_text(
        "".join(json.dumps({"key": f"i{n}#1", "response": _answer(image)}) + "\n" for n in range(3))
    )
    missing = tmp_path / "gone"  # as on a full disk: the temporary file cannot be made
    monkeypatch.setattr(answers, "temp_path", lambda folder, owner, label: missing / label)
    collector, writer = _collector(tmp_path, ["i0", "i1", "i2"])
    collector.take(jsonl_responses(path, tmp_path, COLLECT_OWNER))  # no exception
    writer.close()
    assert collector.stopped
    assert "could not write" in (collector.collected.stop_reason or "")
    assert len(collector.members) == 3  # nothing recorded: the next `run` collects them
    assert results(tmp_path / "ledger.jsonl") == []


@pytest.mark.parametrize(
    ("error", "outcome", "billed"),
    [
        ({"code": 8, "message": "Resource exhausted", "status": "RESOURCE_EXHAUSTED"},
         "rate_limited", "no"),
        ({"code": 14, "message": "The service is currently unavailable."}, "unavailable", "no"),
        ({"code": 3, "message": "Request contains an invalid argument."}, "http_error", "no"),
        ({"code": 13, "message": "An internal error has occurred."}, "server_error", "unknown"),
        ({"code": 503, "message": "Overloaded", "status": "UNAVAILABLE"}, "unavailable", "no"),
        ({"message": "no code", "status": "RESOURCE_EXHAUSTED"}, "rate_limited", "no"),
    ],
)  # fmt: skip
def test_a_response_lines_error_is_classified_by_its_code_grpc_or_http(
    tmp_path: Path, error: dict[str, Any], outcome: str, billed: str
) -> None:
    # Google's batch lines carry a google.rpc.Status: its code is the gRPC one (13 INTERNAL...).
    path = tmp_path / "responses.jsonl"
    path.write_text(json.dumps({"key": "i0#1", "error": error}) + "\n")
    collector, writer = _collector(tmp_path, ["i0"])
    collector.take(jsonl_responses(path, tmp_path, COLLECT_OWNER))
    collector.finish(BatchState.SUCCEEDED)
    writer.close()
    (line,) = results(tmp_path / "ledger.jsonl")
    assert (line["outcome"], line["billed"]) == (outcome, billed)


def test_a_batch_that_succeeded_before_its_results_are_there_is_waited_for_not_lost(
    make_simulator: Callable[..., RunningSimulator],
    write_manifest: Writer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Google may say SUCCEEDED a while before the operation names its output: those answers
    # are paid for; recording them server_error (billed unknown) leaves them for `retry`.
    late = {"gets": 3}

    def operation_pieces(batch: Any) -> list[Any]:
        if batch.done and late["gets"] > 0:
            late["gets"] -= 1
            document = {"name": batch.name, "metadata": operations._metadata(batch), "done": True}
            return [json.dumps(document).encode()]
        return operations.operation_pieces(batch)

    monkeypatch.setattr(batch_handlers, "operation_pieces", operation_pieces)
    sim = make_simulator(price_book="google", batch_pending_s=0.05, batch_running_s=0.1)
    manifest = batch_manifest(write_manifest, sim, items(3))
    done = run_subprocess("run", str(manifest), "--no-progress", env=KEY_ENV)
    assert late["gets"] == 0
    assert done.returncode == 0, done.stderr
    ledger = tmp_path / "out" / "ledger.jsonl"
    assert [line["outcome"] for line in results(ledger)] == ["ok"] * 3
    assert_bill_matches(ledger, sim)


def test_items_of_a_batch_found_never_created_are_sent_again_within_the_budget(
    make_simulator: Callable[..., RunningSimulator], write_manifest: Writer, tmp_path: Path
) -> None:
    # The budget covers the job once. The first run died between the `sent` lines and the
    # create: the batch never existed, so its requests cost nothing and fit the budget again.
    first = make_simulator(price_book="google", batch_pending_s=5, batch_running_s=0.1)
    manifest = batch_manifest(write_manifest, first, items(3), budget_usd=0.25)
    ledger = tmp_path / "out" / "ledger.jsonl"
    process = start_run(manifest)
    wait_for(ledger, '"event": "batch"')
    process.kill()
    process.communicate(timeout=10)
    kept = [line for line in ledger.read_text().splitlines() if '"event": "batch"' not in line]
    ledger.write_text("\n".join(kept) + "\n")
    fresh = make_simulator(price_book="google", batch_pending_s=0.05, batch_running_s=0.05)
    # Moments later the provider may just not list it yet: nothing is closed, nothing re-sent.
    early = run_subprocess("run", str(manifest), "--no-progress", "--endpoint", fresh.url,
                           env=KEY_ENV)  # fmt: skip
    assert early.returncode == 1 and "not listed at the provider yet" in early.stderr
    assert results(ledger) == [] and sim_batches(fresh) == []
    # Minutes later (the `sent` lines aged), it counts as never created.
    aged = [
        re.sub(r'"ts": "[^"]*"', '"ts": "2026-01-01T00:00:00.000Z"', line)
        if '"event": "sent"' in line else line
        for line in ledger.read_text().splitlines()
    ]  # fmt: skip
    ledger.write_text("\n".join(aged) + "\n")
    again = run_subprocess("run", str(manifest), "--no-progress", "--endpoint", fresh.url,
                           env=KEY_ENV)  # fmt: skip
    assert "never created" in ledger.read_text()
    latest = {line["item"]: line["outcome"] for line in results(ledger)}
    assert latest == {"p0": "ok", "p1": "ok", "p2": "ok"}, again.stderr
    assert again.returncode == 0, again.stderr


def test_a_sync_run_while_items_wait_in_a_remote_batch_does_not_exit_0(
    make_simulator: Callable[..., RunningSimulator], write_manifest: Writer, tmp_path: Path
) -> None:
    sim = make_simulator(price_book="google", batch_pending_s=30, batch_running_s=0.1)
    manifest = batch_manifest(write_manifest, sim, items(2))
    ledger = tmp_path / "out" / "ledger.jsonl"
    process = start_run(manifest)
    wait_for(ledger, '"event": "batch"')
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=20)
    sync = run_subprocess("run", str(manifest), "--no-progress", "--mode", "sync", env=KEY_ENV)
    assert "wait in a remote batch" in sync.stderr
    assert sync.returncode == 1, sync.stderr  # 0 is "every item ok": none is yet
    assert results(ledger) == [] and bill(sim)["billed_requests"] == 0


def test_an_input_image_changed_after_validation_stops_batch_mode_without_a_traceback(
    make_simulator: Callable[..., RunningSimulator],
    write_manifest: Writer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def changed(item: Any, images: Any) -> bytes:
        raise ImageProblem("ref.png: changed on disk since the job was validated")

    monkeypatch.setattr(batch_submit, "request_body", changed)
    monkeypatch.setenv("BATCHBANANA_API_KEY", "test-key-not-real")
    sim = make_simulator(price_book="google", batch_pending_s=0.05, batch_running_s=0.05)
    manifest = batch_manifest(write_manifest, sim, items(2))
    result = CliRunner().invoke(main, ["run", str(manifest), "--no-progress"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 1, result.stderr
    assert "changed on disk" in result.stderr
    assert results(tmp_path / "out" / "ledger.jsonl") == [] and sim_batches(sim) == []


def test_an_unreadable_response_leaves_no_temporary_image_behind(tmp_path: Path) -> None:
    good = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 2000).decode()
    parts = [
        {"inlineData": {"mimeType": "image/png", "data": good}},  # spilled to a temporary file
        {"inlineData": {"mimeType": "image/png", "data": "not*base64"}},
    ]
    line = {"key": "i0#1", "response": {"candidates": [{"content": {"parts": parts}}]}}
    path = tmp_path / "responses.jsonl"
    path.write_text(json.dumps(line) + "\n")
    (response,) = jsonl_responses(path, tmp_path, COLLECT_OWNER)
    assert response.answer is None and response.problem
    assert sorted(p.name for p in tmp_path.iterdir()) == ["responses.jsonl"]


@pytest.mark.parametrize(
    ("state", "stats", "pending"),
    [
        (BatchState.SUCCEEDED, {"failed": 2}, True),
        (BatchState.CANCELLED, {"succeeded": 1, "failed": 0}, True),
        (BatchState.FAILED, {"succeeded": 0, "failed": 3}, False),  # nothing paid: close now
        (BatchState.EXPIRED, {}, False),
    ],
)
def test_a_finished_batch_without_output_is_waited_for_only_when_answers_were_paid(
    state: BatchState, stats: dict[str, int], pending: bool
) -> None:
    status = BatchStatus("batches/b", "k", state, stats, None, False)
    batch = Waiting("k", "batches/b", state, {}, 0.0, stats)
    assert output_pending(batch, status, 100.0) is pending
    assert output_pending(batch, status, 100.0 + OUTPUT_GRACE_S) is False
