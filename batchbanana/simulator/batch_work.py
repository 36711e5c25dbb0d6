"""A batch's life on the simulator's clock: PENDING for batch_pending_s, then RUNNING for
batch_running_s while its requests are answered one by one (paced across that time, each line
written to disk as it is made and billed), then its ending. A cancel or a delete stops the work
after the line in hand; the lines already made are kept."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import sys
import traceback
from typing import IO, Any

from batchbanana.simulator.batch_lines import answer_line, encode_line
from batchbanana.simulator.batches import (
    CANCELLED,
    EXPIRED,
    FAILED,
    RUNNING,
    SUCCEEDED,
    Batch,
    BatchStore,
)
from batchbanana.simulator.files import FileStore
from batchbanana.simulator.rules import MODELS
from batchbanana.simulator.state import SimulatorState

RESPONSES_MIME = "application/jsonl"


async def _wait(batch: Batch, seconds: float | None) -> bool:
    """Sleep `seconds` (None: for ever) unless a stop is asked; True if one was."""
    if batch.stop is None and (seconds is None or seconds > 0):
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(batch.wake.wait(), timeout=seconds)
    return batch.stop is not None


def _write(handle: IO[bytes], hasher: Any, pieces: list[bytes]) -> None:
    for piece in pieces:
        handle.write(piece)
        hasher.update(piece)


async def _answer_lines(batch: Batch, state: SimulatorState, files: FileStore) -> bool:
    """Answer the requests the batch is to finish (all, or the first half when it is to end
    cancelled), paced across the running time; False if a stop cut it short."""
    config, rule = state.config, MODELS[batch.model]
    loop = asyncio.get_running_loop()
    started = loop.time()
    total = len(batch.lines)
    make = total if batch.ending == "succeeded" else total // 2
    path = files.path_for(f"batch-{batch.batch_id}")
    # Opened and closed on the loop: awaited in a thread, a stop's cancellation could leak it.
    handle = path.open("wb")
    hasher = hashlib.sha256()
    batch.output = path
    stopped = False
    try:
        for i, line in enumerate(batch.lines[:make]):
            due = started + config.batch_running_s * (i + 1) / total
            if await _wait(batch, due - loop.time()):
                stopped = True
                break
            answer = await answer_line(state, batch.model, rule, line, batch.api_key)
            await asyncio.to_thread(_write, handle, hasher, encode_line(line, answer, batch.mode))
            if answer.price_usd is not None:
                state.bill_batch(answer.price_usd)
                batch.succeeded += 1
            else:
                batch.failed += 1
    finally:
        handle.close()
    batch.output_bytes = path.stat().st_size
    if batch.mode == "file" and batch.succeeded + batch.failed > 0:
        file_id = f"batch-{batch.batch_id}"
        files.add_generated(file_id, path, RESPONSES_MIME, hasher.hexdigest(), batch.downloads_503)
        batch.responses_file = f"files/{file_id}"
    return not stopped and batch.stop is None  # a stop asked during the last line counts


async def run_batch(
    batch: Batch, store: BatchStore, state: SimulatorState, files: FileStore
) -> None:
    """Take the batch from PENDING to its end (the task created with it)."""
    config = state.config
    try:
        pending_s = None if batch.ending == "stuck" else config.batch_pending_s
        if await _wait(batch, pending_s):
            store.set_state(batch, CANCELLED)
            return
        store.set_state(batch, RUNNING)
        if batch.ending in ("failed", "expired"):
            stopped = await _wait(batch, config.batch_running_s)
            ended = FAILED if batch.ending == "failed" else EXPIRED
            store.set_state(batch, CANCELLED if stopped else ended)
            return
        finished = await _answer_lines(batch, state, files)
        store.set_state(batch, SUCCEEDED if finished and batch.ending == "succeeded" else CANCELLED)
    except Exception:  # a simulator bug: say so, and end the batch rather than leave it running
        print(f"simulator: batch {batch.name} failed:", file=sys.stderr)
        traceback.print_exc()
        store.set_state(batch, FAILED)


async def stop_batch(batch: Batch, how: str) -> None:
    """Ask an unfinished batch to stop ("cancel" or "delete") and wait until it has: it ends
    CANCELLED with the lines made so far. A finished batch is left as it is."""
    if batch.done or batch.task is None:
        return
    batch.stop = how
    batch.wake.set()
    await asyncio.shield(batch.task)


async def stop_all(store: BatchStore) -> None:
    """The server stops: end every batch's work where it stands."""
    tasks = [b.task for b in store.all() if b.task is not None and not b.task.done()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
