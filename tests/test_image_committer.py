"""ImageCommitter: answers' images made durable in batches, each answer's failure its own."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import anyio
import pytest

from batchbanana.rules.answer import AnswerImage
from batchbanana.run.committer import ImageCommitter
from batchbanana.run.outputs import temp_path

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64


async def _with_committer(output_dir: Path, work):  # type: ignore[no-untyped-def]
    committer = ImageCommitter(output_dir)
    async with anyio.create_task_group() as group:
        group.start_soon(committer.serve)
        result = await work(committer)
        group.cancel_scope.cancel()
    return committer, result


@pytest.mark.asyncio
async def test_concurrent_answers_are_saved_under_their_final_names(tmp_path: Path) -> None:
    async def work(committer: ImageCommitter) -> dict[str, list[Path]]:
        saved: dict[str, list[Path]] = {}

        async def one(item: str) -> None:
            images = [
                AnswerImage.in_memory("image/png", PNG + item.encode()),
                AnswerImage.in_memory("image/png", PNG),
            ]
            saved[item] = (await committer.commit(item, images)).paths

        async with anyio.create_task_group() as group:
            for n in range(20):
                group.start_soon(one, f"i{n}")
        return saved

    _, saved = await _with_committer(tmp_path, work)
    assert saved["i3"] == [tmp_path / "i3.png", tmp_path / "i3+2.png"]
    assert (tmp_path / "i7.png").read_bytes() == PNG + b"i7"
    assert sorted(os.listdir(tmp_path)) == sorted(
        name for n in range(20) for name in (f"i{n}.png", f"i{n}+2.png")
    )


@pytest.mark.asyncio
async def test_a_streamed_temp_file_is_renamed_and_a_failure_stays_with_its_answer(
    tmp_path: Path,
) -> None:
    streamed = temp_path(tmp_path, "good", "1")
    streamed.write_bytes(PNG)
    vanished = temp_path(tmp_path, "bad", "1")  # never written: its commit must fail

    async def work(committer: ImageCommitter) -> tuple[object, object]:
        outcomes: dict[str, object] = {}

        async def one(item: str, image: AnswerImage) -> None:
            result = await committer.commit(item, [image])
            outcomes[item] = result.error or result.paths

        async with anyio.create_task_group() as group:
            group.start_soon(one, "good", AnswerImage("image/png", path=streamed, size=len(PNG)))
            group.start_soon(one, "bad", AnswerImage("image/png", path=vanished))
        return outcomes["good"], outcomes["bad"]

    _, (good, bad) = await _with_committer(tmp_path, work)
    assert good == [tmp_path / "good.png"]
    assert isinstance(bad, FileNotFoundError)
    assert sorted(os.listdir(tmp_path)) == ["good.png"]  # no temp left behind


@pytest.mark.asyncio
async def test_commit_after_the_saver_stopped_fails_instead_of_hanging(tmp_path: Path) -> None:
    committer, _ = await _with_committer(tmp_path, _nothing)
    late = await committer.commit("late", [AnswerImage.in_memory("image/png", PNG)])
    assert late.paths == [] and "stopped" in str(late.error)
    assert os.listdir(tmp_path) == []


async def _nothing(committer: ImageCommitter) -> None:
    return None


@pytest.mark.asyncio
async def test_a_backlog_of_large_images_is_saved_by_several_lanes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import batchbanana.run.committer as committer_module

    monkeypatch.setattr(committer_module, "BATCH_BYTES", 100)  # every image counts as large
    real_batch = committer_module._commit_batch
    lock = threading.Lock()
    running = [0, 0]  # now, most at once

    def spy(output_dir: Path, batch: list[object], embed: bool) -> None:
        assert len(batch) == 1  # each image is a batch of its own
        with lock:
            running[0] += 1
            running[1] = max(running)
        time.sleep(0.05)
        real_batch(output_dir, batch, embed)  # type: ignore[arg-type]
        with lock:
            running[0] -= 1

    monkeypatch.setattr(committer_module, "_commit_batch", spy)
    big = PNG + bytes(200)

    async def work(committer: ImageCommitter) -> None:
        async with anyio.create_task_group() as group:
            for n in range(12):
                group.start_soon(
                    committer.commit, f"big{n}", [AnswerImage.in_memory("image/png", big)]
                )

    await _with_committer(tmp_path, work)
    assert sorted(os.listdir(tmp_path)) == sorted(f"big{n}.png" for n in range(12))
    assert all((tmp_path / f"big{n}.png").read_bytes() == big for n in range(12))
    assert running[1] == committer_module.SAVER_LANES
