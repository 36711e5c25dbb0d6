"""W6, batch mode's memory: a job of 16 MB images collected from a finished batch, from a
responses file (JSONL, downloaded) and from inline results (one operation JSON), each read one
response at a time and decoded straight to disk. Peak RSS should stay near the sync W3 figure,
far below the size of what is collected.

Run alone: `python bench/batch_bench.py [--runs 3]`; `make bench` prints its rows too.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from simulated import start_simulator, write_manifest

IMAGE_BYTES = 16_000_000
ITEMS = 16


def _measure(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one run of `command`."""
    started = time.monotonic()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.monotonic() - started
    stderr = process.stderr.read().decode() if process.stderr else ""
    if process.stderr:
        process.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"batch run failed:\n{stderr[-2000:]}")
    return wall, usage.ru_maxrss / 1024


def _one(url: str, source: str) -> tuple[float, float, int]:
    folder = Path(tempfile.mkdtemp(prefix="bb-batch-bench-"))
    try:
        manifest = write_manifest(
            folder / "batch.yaml", url, ITEMS,
            auth="google", mode="batch", price_book="google",
            batch={"poll_s": 0.1, "max_poll_s": 0.5, "input": source},
        )  # fmt: skip
        env = {**os.environ, "BATCHBANANA_API_KEY": "bench-key"}
        wall, rss = _measure(
            [sys.executable, "-m", "batchbanana", "run", str(manifest), "--no-progress"], env
        )
        saved = sum(path.stat().st_size for path in (folder / "out").glob("*.png"))
        return wall, rss, saved
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def batch_rows(runs: int) -> list[str]:
    """The W6 rows: medians of `runs` runs for a file batch and an inline batch."""
    simulator, url = start_simulator(
        "--image-bytes", str(IMAGE_BYTES), "--batch-pending", "0.1", "--batch-running", "0.2",
        "--price-book", "google",
    )  # fmt: skip
    rows = [
        f"W6 batch memory: {ITEMS} images of {IMAGE_BYTES / 1e6:.0f} MB collected from a"
        " finished batch (medians)",
        f"{'input':<8} {'wall s':>8} {'peak RSS MB':>12} {'images MB':>10}",
    ]
    try:
        for source in ("file", "inline"):
            measures = [_one(url, source) for _ in range(runs)]
            wall = statistics.median(m[0] for m in measures)
            rss = statistics.median(m[1] for m in measures)
            saved = measures[0][2] / 1e6
            rows.append(f"{source:<8} {wall:>8.2f} {rss:>12.0f} {saved:>10.0f}")
    finally:
        simulator.terminate()
        simulator.wait(timeout=10)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    print("\n".join(batch_rows(parser.parse_args().runs)))


if __name__ == "__main__":
    main()
