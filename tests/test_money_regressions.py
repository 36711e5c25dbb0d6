"""Regression tests for money bugs found in review: each is a promise the ledger keeps."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from batchbanana.simulator import RunningSimulator
from tests.conftest import CliResult, read_jsonl, results

Cli = Callable[..., CliResult]
Writer = Callable[..., Path]


def test_image_jpg_mime_type_is_saved_as_jpeg_not_a_crash(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """An answer labelled `image/jpg` (not the standard image/jpeg) is an ok image saved as .jpg."""
    manifest = write_manifest([{"id": "j", "prompt": "p [sim:mime_jpg]"}], endpoint=simulator.url)
    result = cli("run", str(manifest), "--no-progress")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "out" / "j.jpg").read_bytes()[:3] == b"\xff\xd8\xff"


def test_non_image_mime_type_is_a_billed_bad_response(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """An image part labelled `text/plain` is `bad_response` (billed) and writes no file."""
    manifest = write_manifest([{"id": "t", "prompt": "p [sim:mime_text]"}], endpoint=simulator.url)
    assert cli("run", str(manifest), "--no-progress").exit_code == 1
    assert [(r["outcome"], r["billed"]) for r in results(tmp_path / "out" / "ledger.jsonl")] == [
        ("bad_response", "yes")
    ]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ledger.jsonl"]


def test_key_with_a_line_break_is_refused_before_anything_is_sent(
    cli: Cli,
    write_manifest: Writer,
    simulator: RunningSimulator,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """A key pasted with a line break inside is exit 2, with no `sent` line and no request."""
    monkeypatch.setenv("BATCHBANANA_API_KEY", "sk-abc\ndef-123456")
    manifest = write_manifest([{"prompt": "p"}], endpoint=simulator.url)
    result = cli("run", str(manifest))
    assert result.exit_code == 2
    assert "abc" not in result.stderr
    assert simulator.stats()["requests"] == 0
    assert not (tmp_path / "out" / "ledger.jsonl").exists()


def test_token_priced_jobs_never_exceed_the_budget(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """With per-token pricing, answers that carry two images still keep spending within budget."""
    items = [{"id": f"t{n}", "prompt": f"p{n} [sim:two_images]"} for n in range(6)]
    manifest = write_manifest(
        items,
        endpoint=simulator.url,
        pricing={"gemini-3-pro-image-preview": {"per_million_tokens_usd": 100}},
        budget_usd=0.45,
        concurrency=3,
    )
    cli("run", str(manifest), "--no-progress")
    lines = results(tmp_path / "out" / "ledger.jsonl")
    spent = sum(r["price_usd"] for r in lines if r["billed"] == "yes")
    assert 0 < spent <= 0.45
    assert any(r["outcome"] == "over_budget" for r in lines)


def test_reverting_an_edit_to_a_failed_version_sends_it_again(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator
) -> None:
    """Editing a failed prompt away and back is new work for `run`, not an item stranded forever."""
    original = [{"id": "a", "prompt": "version A [sim:500x1]"}]
    manifest = write_manifest(original, endpoint=simulator.url)
    assert cli("run", str(manifest), "--no-progress").exit_code == 1
    write_manifest([{"id": "a", "prompt": "version B"}], endpoint=simulator.url)
    assert cli("run", str(manifest), "--no-progress").exit_code == 0
    write_manifest(original, endpoint=simulator.url)
    assert cli("run", str(manifest), "--no-progress").exit_code == 0
    assert simulator.stats()["by_prompt"] == {"version A [sim:500x1]": 2, "version B": 1}


def test_file_of_an_item_only_ever_over_budget_is_not_overwritten(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """An item the ledger never sent (only over_budget) does not own a file found at its name."""
    manifest = write_manifest([{"id": "x", "prompt": "p"}], endpoint=simulator.url, budget_usd=0)
    assert cli("run", str(manifest), "--no-progress").exit_code == 1
    (tmp_path / "out" / "x+2.png").write_bytes(b"mine")
    result = cli("run", str(manifest), "--no-progress", "--budget", "1")
    assert result.exit_code == 2
    assert "x+2.png" in result.stderr
    assert (tmp_path / "out" / "x+2.png").read_bytes() == b"mine"


def test_another_jobs_temporary_files_are_left_alone(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """Cleaning up after a crash removes this job's temporaries only, not a neighbour's."""
    (tmp_path / "out").mkdir()
    neighbour = tmp_path / "out" / ".other~s1-abcd.tmp"
    mine = tmp_path / "out" / ".x~s1-abcd.tmp"
    neighbour.write_bytes(b"in progress")
    mine.write_bytes(b"stale")
    manifest = write_manifest([{"id": "x", "prompt": "p"}], endpoint=simulator.url)
    assert cli("run", str(manifest), "--no-progress").exit_code == 0
    assert neighbour.exists() and not mine.exists()


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """A port whose listen backlog is full, so a new connection hangs instead of completing."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(8):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    yield port
    for filler in fillers:
        filler.close()
    server.close()


def test_total_timeout_while_still_connecting_is_an_unbilled_connect_error(
    cli: Cli, write_manifest: Writer, tmp_path: Path, unanswered_port: int
) -> None:
    """When the size's timeout fires before the connection is made, nothing was sent: not billed."""
    manifest = write_manifest(
        [{"id": "a", "prompt": "p"}],
        endpoint=f"http://127.0.0.1:{unanswered_port}",
        timeouts={"1K": 0.5, "connect": 30},
        retry={"max_attempts": 1},
    )
    assert cli("run", str(manifest), "--no-progress").exit_code == 1
    lines = results(tmp_path / "out" / "ledger.jsonl")
    assert [(r["outcome"], r["billed"]) for r in lines] == [("connect_error", "no")]


def test_echoed_key_is_scrubbed_even_where_messages_are_cut(
    cli: Cli,
    write_manifest: Writer,
    simulator: RunningSimulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A long key echoed by a 403 appears nowhere, not even as a prefix cut by a length limit."""
    long_key = "sk-" + "K" * 600
    monkeypatch.setenv("BATCHBANANA_API_KEY", long_key)
    manifest = write_manifest(
        [{"id": "e", "prompt": "p [sim:echo_key_403]"}], endpoint=simulator.url
    )
    result = cli("run", str(manifest), "--no-progress")
    assert "K" * 40 not in result.stderr
    assert "K" * 40 not in (tmp_path / "out" / "ledger.jsonl").read_text()
    assert read_jsonl(tmp_path / "out" / "ledger.jsonl")[-1]["http_status"] == 403


def test_proxy_settings_are_honoured(
    cli: Cli,
    write_manifest: Writer,
    simulator: RunningSimulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HTTP_PROXY sends requests through the proxy (here a dead one: nothing sent, not billed);
    NO_PROXY exempts a host."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    manifest = write_manifest(
        [{"id": "p", "prompt": "p"}], endpoint=simulator.url, retry={"max_attempts": 1}
    )
    assert cli("run", str(manifest), "--no-progress").exit_code == 1
    assert [r["outcome"] for r in results(tmp_path / "out" / "ledger.jsonl")] == ["connect_error"]
    assert simulator.stats()["requests"] == 0
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert cli("run", str(manifest), "--no-progress").exit_code == 0


def test_an_image_pillow_cannot_open_is_sent_as_it_is(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """optimize_inputs never stops a job: a PNG that Pillow refuses is sent unchanged."""
    from tests.conftest import png_bytes

    broken = png_bytes(8, 8)[:60]  # a PNG header whose data is cut short
    (tmp_path / "cut.png").write_bytes(broken)
    manifest = write_manifest(
        [{"id": "c", "prompt": "p", "images": ["cut.png"]}, {"id": "d", "prompt": "q"}],
        endpoint=simulator.url,
        optimize_inputs="lossless",
        concurrency=1,
    )
    cli("run", str(manifest), "--no-progress")
    assert simulator.stats()["requests"] == 2  # both sent: the job did not stop


def test_retry_never_overwrites_a_file_the_ledger_never_made(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """`retry` of an item only ever over_budget refuses to replace a file found at its name."""
    manifest = write_manifest([{"id": "a", "prompt": "p"}], endpoint=simulator.url, budget_usd=0)
    assert cli("run", str(manifest), "--no-progress").exit_code == 1
    (tmp_path / "out" / "a.png").write_bytes(b"mine")
    result = cli("retry", str(tmp_path / "out" / "ledger.jsonl"), "--yes", "--budget", "1")
    assert result.exit_code == 2
    assert (tmp_path / "out" / "a.png").read_bytes() == b"mine"
    assert simulator.stats()["requests"] == 0


def test_retry_only_interrupted_finds_a_request_killed_in_flight(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """A dangling `sent` after an earlier failure is `interrupted`, not the earlier outcome."""
    import json

    manifest = write_manifest([{"id": "a", "prompt": "p [sim:500x1]"}], endpoint=simulator.url)
    assert cli("run", str(manifest), "--no-progress").exit_code == 1
    ledger = tmp_path / "out" / "ledger.jsonl"
    last = read_jsonl(ledger)[-1]
    dangling = {**{k: last[k] for k in ("item", "fingerprint", "spec")}, "attempt": 2}
    with ledger.open("a") as handle:
        handle.write(json.dumps({"event": "sent", **dangling, "price_usd": 0.09}) + "\n")
    result = cli("retry", str(ledger), "--only", "interrupted", "--yes", "--no-progress")
    assert result.exit_code == 0, result.stderr
    outcomes = [(r["attempt"], r["outcome"]) for r in results(ledger)]
    assert outcomes == [(1, "server_error"), (2, "interrupted"), (3, "ok")]


def test_a_job_stop_during_slow_input_encoding_sends_nothing_more(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """Items whose bodies were still being built when a 402 stopped the job are not sent."""
    import os
    import struct
    import zlib

    def noisy_png(width: int, height: int) -> bytes:
        # Random pixels stored uncompressed (~6.7 MB): recompressing one takes ~0.4 s, far
        # longer than the 402 round trip.
        def chunk(kind: bytes, data: bytes) -> bytes:
            crc = zlib.crc32(kind + data) & 0xFFFFFFFF
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

        rows = b"".join(b"\x00" + os.urandom(width * 3) for _ in range(height))
        header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
        return (
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows, 0))
            + chunk(b"IEND", b"")
        )

    for n in range(4):
        (tmp_path / f"big{n}.png").write_bytes(noisy_png(1600, 1400))
    items = [{"id": "broke", "prompt": "p [sim:402]"}] + [
        {"id": f"i{n}", "prompt": f"q{n}", "images": [f"big{n}.png"]} for n in range(4)
    ]
    manifest = write_manifest(
        items, endpoint=simulator.url, optimize_inputs="lossless", concurrency=5
    )
    result = cli("run", str(manifest), "--no-progress")
    assert result.exit_code == 1
    assert simulator.stats()["requests"] == 1
    sent = [r for r in read_jsonl(tmp_path / "out" / "ledger.jsonl") if r["event"] == "sent"]
    assert [r["item"] for r in sent] == ["broke"]
    assert "4 item(s) were not sent" in result.stderr


def test_a_paid_image_is_saved_even_when_a_task_beside_the_pool_fails(
    cli: Cli,
    write_manifest: Writer,
    simulator: RunningSimulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The ledger's background fsync fails just as a paid answer is handed to the image saver:
    the image still reaches its final name and its `ok` line (the saver outlives the tasks beside
    the pool, and the answer's conclusion is shielded)."""
    import threading

    import anyio
    import anyio.to_thread

    from batchbanana.ledger.writer import LedgerWriter
    from batchbanana.rules.answer import AnswerImage
    from batchbanana.run.committer import ImageCommitter, Saved

    answered = threading.Event()
    real_commit = ImageCommitter.commit

    async def late_commit(
        self: ImageCommitter, item_id: str, images: list[AnswerImage], record: object = None
    ) -> Saved:
        answered.set()
        await anyio.sleep(0.3)  # meanwhile the task beside the pool fails
        return await real_commit(self, item_id, images, record)  # type: ignore[arg-type]

    async def failing_keep_synced(self: LedgerWriter) -> None:
        await anyio.to_thread.run_sync(answered.wait)
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(ImageCommitter, "commit", late_commit)
    monkeypatch.setattr(LedgerWriter, "keep_synced", failing_keep_synced)
    manifest = write_manifest([{"id": "paid", "prompt": "p"}], endpoint=simulator.url)
    with pytest.raises(BaseException):  # noqa: B017 - the fsync error ends the run
        cli("run", str(manifest), "--no-progress")
    lines = results(tmp_path / "out" / "ledger.jsonl")
    assert [(r["item"], r["outcome"]) for r in lines] == [("paid", "ok")]
    assert (tmp_path / "out" / "paid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_answer_whose_second_image_cannot_be_written_names_the_file_that_was(
    cli: Cli,
    write_manifest: Writer,
    simulator: RunningSimulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two images, the second cannot be written: a billed write_error whose line names the first
    image, which stays (paid for and complete), and no temporary file is left."""
    from batchbanana.run import committer

    real_write = committer.write_image

    def second_fails(output_dir: Path, item_id: str, index: int, *args: object) -> Path:
        if index == 2:
            raise OSError(28, "No space left on device")
        return real_write(output_dir, item_id, index, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(committer, "write_image", second_fails)
    manifest = write_manifest(
        [{"id": "pair", "prompt": "p [sim:two_images]"}], endpoint=simulator.url
    )
    assert cli("run", str(manifest), "--no-progress").exit_code == 1
    out = tmp_path / "out"
    (line,) = results(out / "ledger.jsonl")
    assert (line["outcome"], line["billed"]) == ("write_error", "yes")
    assert line["output"] == str(out / "pair.png")
    assert "1 of 2 images saved" in line["error"] and "No space left" in line["error"]
    assert (out / "pair.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.iterdir()) == ["ledger.jsonl", "pair.json", "pair.png"]


def test_a_line_cut_short_by_a_full_disk_is_taken_back_so_the_next_line_is_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills up in the middle of a line: the write fails, the torn part is removed, and
    the next line (once there is room) is read back whole, not glued to the torn one."""
    import errno
    import os

    from batchbanana.ledger import writer as ledger_module
    from batchbanana.ledger.replay import read_ledger
    from batchbanana.ledger.writer import LedgerWriter

    writer = LedgerWriter(tmp_path / "ledger.jsonl")
    writer.open()
    writer.append({"event": "job", "run_id": "r"})
    real_write = os.write
    calls = []

    def disk_fills(fd: int, data: memoryview) -> int:
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data[:10]))  # part of the line goes out
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ledger_module.os, "write", disk_fills)
    with pytest.raises(OSError):
        writer.append({"event": "result", "item": "lost", "attempt": 1, "fingerprint": "f"})
    monkeypatch.setattr(ledger_module.os, "write", real_write)
    writer.append({"event": "result", "item": "kept", "attempt": 1, "fingerprint": "f"})
    writer.close()
    read = read_ledger(tmp_path / "ledger.jsonl")
    assert read.warnings == []
    assert [r.get("item") for r in read.records] == [None, "kept"]
