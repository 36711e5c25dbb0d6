"""Stops, crashes and restarts: the real CLI in a subprocess against the real simulator."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from batchbanana.simulator import RunningSimulator
from tests.conftest import CliResult, read_jsonl, results, run_subprocess

Writer = Callable[..., Path]
Cli = Callable[..., CliResult]


def start_run(manifest: Path, *extra: str) -> subprocess.Popen[str]:
    """Start `batchbanana run` in a child process."""
    return subprocess.Popen(
        [sys.executable, "-m", "batchbanana", "run", str(manifest), "--no-progress", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_lines(ledger: Path, event: str, count: int, timeout_s: float = 20) -> None:
    """Wait until the ledger holds at least `count` lines of this event."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ledger.exists():
            text = ledger.read_text()
            if text.count(f'"event": "{event}"') >= count:
                return
        time.sleep(0.02)
    raise AssertionError(f"ledger never reached {count} {event} lines")


def assert_consistent(ledger: Path) -> None:
    """Every `sent` line has exactly one result with the same item and attempt."""
    records = read_jsonl(ledger)
    sent = [(r["item"], r["attempt"]) for r in records if r["event"] == "sent"]
    done = [(r["item"], r["attempt"]) for r in records if r["event"] == "result"]
    assert sorted(sent) == sorted(key for key in done if key in set(sent))
    assert len(set(done)) == len(done)


def slow_items(count: int, seconds: float) -> list[dict[str, str]]:
    """Items whose answers take `seconds`."""
    return [{"id": f"s{n}", "prompt": f"slow {n} [sim:slow:{seconds}]"} for n in range(count)]


def test_kill_9_mid_job_then_run_again_pays_nothing_twice(
    write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """After kill -9 with requests in flight, the next run records them interrupted, finishes the
    rest, re-sends no ok item, and leaves no temporary or partial image."""
    manifest = write_manifest(slow_items(6, 1.0), endpoint=simulator.url, concurrency=2)
    ledger = tmp_path / "out" / "ledger.jsonl"
    process = start_run(manifest)
    wait_for_lines(ledger, "result", 2)
    wait_for_lines(ledger, "sent", 4)
    process.kill()
    process.communicate(timeout=10)
    ok_before = {r["item"] for r in results(ledger) if r["outcome"] == "ok"}
    second = run_subprocess("run", str(manifest), "--no-progress")
    assert second.returncode == 1, second.stderr  # interrupted items are left for retry
    assert "interrupted" in second.stderr
    final = results(ledger)
    outcomes = {r["item"]: r["outcome"] for r in final}
    assert set(outcomes) == {f"s{n}" for n in range(6)}
    interrupted = {item for item, outcome in outcomes.items() if outcome == "interrupted"}
    assert interrupted and all(
        r["billed"] == "unknown" for r in final if r["outcome"] == "interrupted"
    )
    by_prompt = simulator.stats()["by_prompt"]
    for item in ok_before:
        assert by_prompt[f"slow {item[1:]} [sim:slow:1.0]"] == 1
    for item in interrupted:  # its `sent` line is durable; the kill may have come before sending
        assert by_prompt.get(f"slow {item[1:]} [sim:slow:1.0]", 0) <= 1
    assert_consistent(ledger)
    assert not list((tmp_path / "out").glob("*.tmp"))
    bill = simulator.bill()["billed_usd"]
    spent = sum(r["price_usd"] for r in final if r["billed"] == "yes")
    possibly = sum(r["price_usd"] for r in final if r["billed"] == "unknown")
    assert spent - 1e-9 <= bill <= spent + possibly + 1e-9


def test_one_sigint_lets_requests_in_flight_finish_and_exits_130(
    write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """The first Ctrl-C stops sending, records the paid requests in flight, and exits 130."""
    manifest = write_manifest(slow_items(6, 1.0), endpoint=simulator.url, concurrency=2)
    ledger = tmp_path / "out" / "ledger.jsonl"
    process = start_run(manifest)
    wait_for_lines(ledger, "sent", 2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    final = results(ledger)
    assert [r["outcome"] for r in final] == ["ok", "ok"]
    assert_consistent(ledger)
    assert simulator.stats()["requests"] == 2
    again = run_subprocess("run", str(manifest), "--no-progress")
    assert again.returncode == 0, again.stderr
    assert simulator.stats()["requests"] == 6


def test_two_sigints_abort_requests_in_flight_as_interrupted(
    write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """A second Ctrl-C aborts what is in flight: `interrupted`, billed unknown; exit 130."""
    manifest = write_manifest(slow_items(4, 5.0), endpoint=simulator.url, concurrency=2)
    ledger = tmp_path / "out" / "ledger.jsonl"
    process = start_run(manifest)
    wait_for_lines(ledger, "sent", 2)
    process.send_signal(signal.SIGINT)
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == 130, stderr
    final = results(ledger)
    assert [(r["outcome"], r["billed"]) for r in final] == [("interrupted", "unknown")] * 2
    assert_consistent(ledger)


def test_sigterm_behaves_like_the_first_ctrl_c(
    write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """SIGTERM stops sending, lets the requests in flight finish and exits 130."""
    manifest = write_manifest(slow_items(4, 0.8), endpoint=simulator.url, concurrency=1)
    ledger = tmp_path / "out" / "ledger.jsonl"
    process = start_run(manifest)
    wait_for_lines(ledger, "sent", 1)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == 130, stderr
    assert [r["outcome"] for r in results(ledger)] == ["ok"]


def test_second_process_on_the_same_ledger_is_refused(
    write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """A second run on a ledger in use exits 2 with a clear message; the first is unharmed."""
    manifest = write_manifest(slow_items(2, 1.0), endpoint=simulator.url, concurrency=1)
    ledger = tmp_path / "out" / "ledger.jsonl"
    first = start_run(manifest)
    wait_for_lines(ledger, "sent", 1)
    second = run_subprocess("run", str(manifest), "--no-progress")
    assert second.returncode == 2
    assert "in use by another batchbanana process" in second.stderr
    first.communicate(timeout=20)
    assert first.returncode == 0
    assert [r["outcome"] for r in results(ledger)] == ["ok", "ok"]
    assert_consistent(ledger)


def test_torn_and_garbage_lines_are_skipped_with_their_line_numbers(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """A garbage middle line and a torn last line are reported by number; the rest is read."""
    manifest = write_manifest(
        [{"id": "a", "prompt": "a"}, {"id": "b", "prompt": "b"}], endpoint=simulator.url
    )
    assert cli("run", str(manifest), "--no-progress").exit_code == 0
    ledger = tmp_path / "out" / "ledger.jsonl"
    lines = ledger.read_text().splitlines(keepends=True)
    lines.insert(2, "this is not json\n")
    ledger.write_text("".join(lines) + '{"event": "result", "item": "x", "outc')
    again = cli("run", str(manifest), "--no-progress")
    assert again.exit_code == 0
    assert f"{ledger}:3:" in again.stderr
    assert f"{ledger}:{len(lines) + 1}:" in again.stderr and "torn" in again.stderr
    assert simulator.stats()["requests"] == 2
    last = ledger.read_text().splitlines()[-1]
    assert last.startswith('{"event": "job"')


def test_editing_one_prompt_sends_only_that_item(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator
) -> None:
    """Changing an item's prompt makes it new work; the unchanged ok items are not sent again."""
    items = [{"id": f"i{n}", "prompt": f"prompt {n}"} for n in range(4)]
    manifest = write_manifest(items, endpoint=simulator.url)
    assert cli("run", str(manifest), "--no-progress").exit_code == 0
    items[2]["prompt"] = "prompt 2, but bluer"
    write_manifest(items, endpoint=simulator.url)
    assert cli("run", str(manifest), "--no-progress").exit_code == 0
    assert simulator.stats()["by_prompt"] == {
        "prompt 0": 1,
        "prompt 1": 1,
        "prompt 2": 1,
        "prompt 3": 1,
        "prompt 2, but bluer": 1,
    }


def test_unbilled_failures_are_sent_again_by_run_but_billed_ones_are_not(
    cli: Cli,
    write_manifest: Writer,
    make_simulator: Callable[..., RunningSimulator],
    tmp_path: Path,
) -> None:
    """A 403 (not billed) is sent again by the next run; a refusal (billed) is left for retry."""
    first = make_simulator()
    items = [
        {"id": "refused", "prompt": "r [sim:refuse]"},
        {"id": "denied", "prompt": "d [sim:403]"},
    ]
    manifest = write_manifest(items, endpoint=first.url, concurrency=1)
    assert cli("run", str(manifest), "--no-progress").exit_code == 1
    second = make_simulator()  # a fresh simulator forgets the directive counters
    result = cli("run", str(manifest), "--no-progress", "--endpoint", second.url)
    assert second.stats()["by_prompt"] == {"d [sim:403]": 1}
    assert "need `batchbanana retry" in result.stderr


def test_retry_only_refused_resends_exactly_the_refused_items(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """`retry --only refused` re-sends the refused items and nothing else."""
    items = [
        {"id": "r1", "prompt": "one [sim:refusex1]"},
        {"id": "r2", "prompt": "two [sim:refusex1]"},
        {"id": "n1", "prompt": "three [sim:no_imagex1]"},
        {"id": "ok", "prompt": "four"},
    ]
    manifest = write_manifest(items, endpoint=simulator.url)
    assert cli("run", str(manifest), "--no-progress").exit_code == 1
    ledger = tmp_path / "out" / "ledger.jsonl"
    result = cli("retry", str(ledger), "--only", "refused", "--yes", "--no-progress")
    assert result.exit_code == 0, result.stderr
    by_prompt = simulator.stats()["by_prompt"]
    assert by_prompt == {
        "one [sim:refusex1]": 2,
        "two [sim:refusex1]": 2,
        "three [sim:no_imagex1]": 1,
        "four": 1,
    }
    latest = {r["item"]: r for r in results(ledger)}
    assert latest["r1"]["outcome"] == "ok" and latest["r1"]["attempt"] == 2
    assert (tmp_path / "out" / "r1.png").exists()
    assert read_jsonl(ledger)[-1]["event"] == "result"
    assert [r["command"] for r in read_jsonl(ledger) if r["event"] == "job"] == ["run", "retry"]


def test_retry_works_when_the_manifest_is_gone(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """`retry` rebuilds requests from the ledger alone, reference images included."""
    from tests.conftest import png_bytes

    (tmp_path / "ref.png").write_bytes(png_bytes(20, 10))
    manifest = write_manifest(
        [{"id": "t", "prompt": "t [sim:500x1]", "images": ["ref.png"]}], endpoint=simulator.url
    )
    assert cli("run", str(manifest), "--no-progress").exit_code == 1
    manifest.unlink()
    result = cli("retry", str(tmp_path / "out" / "ledger.jsonl"), "--yes", "--no-progress")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "out" / "t.png").exists()


def test_retry_without_terminal_or_yes_exits_2_and_sends_nothing(
    write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """With no terminal to confirm on and no --yes, retry refuses with exit 2."""
    manifest = write_manifest([{"id": "r", "prompt": "r [sim:refusex1]"}], endpoint=simulator.url)
    assert run_subprocess("run", str(manifest), "--no-progress").returncode == 1
    result = subprocess.run(
        [sys.executable, "-m", "batchbanana", "retry", str(tmp_path / "out" / "ledger.jsonl")],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "--yes" in result.stderr
    assert simulator.stats()["requests"] == 1


@pytest.mark.parametrize("bad", ["timeout,bogus", ""])
def test_retry_only_rejects_unknown_outcomes(cli: Cli, tmp_path: Path, bad: str) -> None:
    """`--only` with an unknown outcome name is exit 2 and names the known ones."""
    ledger = tmp_path / "ledger.jsonl"
    ledger.write_text("")
    result = cli("retry", str(ledger), "--only", bad, "--yes")
    assert result.exit_code == 2
    assert "refused" in result.stderr


def test_keyboard_interrupt_during_validation_has_no_traceback(tmp_path: Path) -> None:
    """The env var with the key is never needed for `plan`, and a missing manifest is one line."""
    result = run_subprocess("plan", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert os.fspath(tmp_path / "nope.yaml") in result.stderr


def test_kill_9_while_images_are_being_saved_leaves_them_owed_not_lost(
    write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """kill -9 while the saver holds paid answers (before their files are renamed): no partial
    file under a final name, their `sent` lines make them interrupted (billed unknown) on the next
    run, which sends nothing twice, and the bill stays within what the ledger says."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    marker = tmp_path / "saving"
    (hooks / "sitecustomize.py").write_text(
        "import time\n"
        "from pathlib import Path\n"
        "import batchbanana.run.committer as committer\n"
        "real = committer._commit_batch\n"
        "def slow(output_dir, batch, embed):\n"
        f"    Path({str(marker)!r}).write_text(str(len(batch)))\n"
        "    time.sleep(30)\n"
        "    real(output_dir, batch, embed)\n"
        "committer._commit_batch = slow\n"
    )
    items = [{"id": f"k{n}", "prompt": f"kept {n}"} for n in range(3)]
    manifest = write_manifest(items, endpoint=simulator.url, concurrency=3)
    ledger = tmp_path / "out" / "ledger.jsonl"
    env = {**os.environ, "PYTHONPATH": f"{hooks}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    process = subprocess.Popen(
        [sys.executable, "-m", "batchbanana", "run", str(manifest), "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 20
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert marker.exists(), "the saver never started"
    process.kill()
    process.communicate(timeout=10)
    assert results(ledger) == []  # no answer reached its result line
    assert not [p for p in (tmp_path / "out").iterdir() if p.suffix == ".png"]
    second = run_subprocess("run", str(manifest), "--no-progress")
    assert second.returncode == 1, second.stderr
    final = results(ledger)
    assert {(r["item"], r["outcome"], r["billed"]) for r in final} == {
        (f"k{n}", "interrupted", "unknown") for n in range(3)
    }
    assert sum(simulator.stats()["by_prompt"].values()) == 3  # nothing was sent twice
    assert not list((tmp_path / "out").glob(".*.tmp"))
    assert_consistent(ledger)
    bill = simulator.bill()["billed_usd"]
    possibly = sum(r["price_usd"] for r in final)
    assert 0 <= bill <= possibly + 1e-9


def test_retry_removes_the_temporary_files_a_killed_run_left_for_its_items(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """`retry` cleans up like `run`: a killed run's temporaries of the items it retries go, and
    another job's temporaries in the same folder stay."""
    manifest = write_manifest(
        [{"id": "r1", "prompt": "one [sim:refusex1]"}], endpoint=simulator.url
    )
    assert cli("run", str(manifest), "--no-progress").exit_code == 1
    out = tmp_path / "out"
    stale = out / ".r1~1-0badf00d.tmp"
    foreign = out / ".other~1-0badf00d.tmp"
    stale.write_bytes(b"half an image")
    foreign.write_bytes(b"not ours")
    result = cli("retry", str(out / "ledger.jsonl"), "--yes", "--no-progress")
    assert result.exit_code == 0, result.stderr
    assert not stale.exists() and foreign.exists()
    assert (out / "r1.png").exists()
