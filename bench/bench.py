"""`make bench`: batchbanana against a plain ThreadPoolExecutor + requests client, same workloads
(W1-W3 here; W4 capacity and W5 quota, against a provider with hidden limits, in limits_bench.py;
W6, batch mode's memory while collecting 16 MB images, in batch_bench.py).

The simulator runs in its own process; each client runs in its own process so that its peak RSS
and CPU seconds are its own (os.wait4). Each workload runs 3 times per client; medians are shown.

Output folders of small-image workloads are deleted only once the benchmark is over: ext4 skips
inodes freed in the last minutes when it allocates new ones, so deleting 2,000 images just
before the next run made that run's file creations several times dearer (about 0.7 s of kernel
time in W1, for either client), and the figures depended on the order of the runs. For the
same reason the page cache is flushed (os.sync) before each run, outside its timing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from batch_bench import batch_rows  # noqa: E402  (bench/ is a folder of scripts)
from limits_bench import limit_rows  # noqa: E402
from simulated import start_simulator as start_simulator_process  # noqa: E402
from simulated import write_manifest  # noqa: E402


@dataclass(frozen=True)
class Workload:
    """One benchmark scenario."""

    name: str
    latency_s: float
    image_bytes: int
    items: int
    concurrency: int


KEEP_OUTPUTS_BYTES = 500_000_000  # a run's images kept until the end when they take at most this

WORKLOADS = (
    Workload("W1 overhead", 0.0, 50_000, 2000, 64),
    Workload("W2 scheduling", 0.5, 50_000, 1000, 50),
    Workload("W3 memory", 0.3, 16_000_000, 96, 32),
)


@dataclass(frozen=True)
class Measure:
    """One client run."""

    wall_s: float
    peak_rss_mb: float
    cpu_s: float


def start_simulator(workload: Workload) -> tuple[subprocess.Popen[str], str]:
    """The simulator with this workload's latency and image size, on a free port."""
    latency, size = str(workload.latency_s), str(workload.image_bytes)
    return start_simulator_process("--latency", latency, "--image-bytes", size)


def measured(command: list[str], env: dict[str, str] | None = None) -> Measure:
    """Run a command; its wall time, peak RSS and CPU seconds (user + system)."""
    started = time.monotonic()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.monotonic() - started
    stderr = process.stderr.read().decode() if process.stderr else ""
    if process.stderr:
        process.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{command[:4]} failed with {code}:\n{stderr[-2000:]}")
    return Measure(wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime)


def run_batchbanana(workload: Workload, url: str, folder: Path) -> Measure:
    """batchbanana run on a fresh manifest and ledger."""
    # The default adaptive pool: with no limit to find, what finding one costs shows here.
    manifest = write_manifest(
        folder / "bench.yaml", url, workload.items, concurrency=workload.concurrency
    )
    env = {**os.environ, "BATCHBANANA_API_KEY": "bench-key"}
    return measured(
        [sys.executable, "-m", "batchbanana", "run", str(manifest), "--no-progress"], env
    )


def run_baseline(workload: Workload, url: str, folder: Path) -> Measure:
    """The thread-pool client."""
    return run_script("baseline_client.py", workload, url, folder)


def run_bare(workload: Workload, url: str, folder: Path) -> Measure:
    """The reference row: the baseline's work with bare aiohttp (no ledger, fsync or checks)."""
    return run_script("bare_client.py", workload, url, folder)


def run_script(script: str, workload: Workload, url: str, folder: Path) -> Measure:
    """One of the comparison clients in bench/."""
    return measured(
        [
            sys.executable,
            str(ROOT / "bench" / script),
            "--url",
            url,
            "--items",
            str(workload.items),
            "--concurrency",
            str(workload.concurrency),
            "--out",
            str(folder / "out"),
        ]
    )


def reset(url: str) -> None:
    """Zero the simulator's counters between runs."""
    request = urllib.request.Request(f"{url}/_sim/reset", method="POST", data=b"")
    urllib.request.urlopen(request, timeout=10).close()


def median_measure(runs: list[Measure]) -> Measure:
    """Per-field medians."""
    return Measure(
        statistics.median(run.wall_s for run in runs),
        statistics.median(run.peak_rss_mb for run in runs),
        statistics.median(run.cpu_s for run in runs),
    )


STARTUP_SIZES = (100_000, 1_000_000)


def startup_figures(sizes: tuple[int, ...] = STARTUP_SIZES) -> list[str]:
    """How start-up grows with the job: plan of an N-row CSV, and a run that resumes a ledger
    whose N items are all done already (nothing is sent), at each size."""
    lines = []
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="bb-bench-scale-") as tmp:
            manifest = write_rows_job(Path(tmp), size)
            plan = measured([sys.executable, "-m", "batchbanana", "plan", str(manifest)])
            lines.append(
                f"plan of a {size:,}-row items_file: {plan.wall_s:.2f} s,"
                f" peak RSS {plan.peak_rss_mb:.0f} MB"
            )
            write_done_ledger(manifest, Path(tmp) / "out" / "ledger.jsonl")
            resume = measured(
                [sys.executable, "-m", "batchbanana", "run", str(manifest), "--no-progress"]
            )
            lines.append(
                f"resume of a {size:,}-item ledger (all ok, nothing sent): {resume.wall_s:.2f} s,"
                f" peak RSS {resume.peak_rss_mb:.0f} MB"
            )
    return lines


def write_rows_job(folder: Path, size: int) -> Path:
    """A manifest whose items_file has `size` rows (an id and a prompt each)."""
    import csv

    with (folder / "rows.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "prompt"])
        for n in range(size):
            writer.writerow([f"row{n}", f"a product shot number {n}, studio light"])
    manifest = folder / "big.yaml"
    manifest.write_text(
        "version: 1\nendpoint: simulate\nmodel: gemini-3.1-flash-image-preview\n"
        "output_dir: out\nitems_file: rows.csv\n"
    )
    return manifest


def write_done_ledger(manifest: Path, ledger: Path) -> None:
    """A ledger in which every item of the manifest is already ok."""
    from batchbanana.plan.build import load_job

    job = load_job(manifest)
    ledger.parent.mkdir(parents=True, exist_ok=True)
    with ledger.open("w") as handle:
        handle.write(json.dumps({"event": "job", "run_id": "bench", "settings": {}}) + "\n")
        for item in job.items:
            base = {"item": item.id, "attempt": 1, "fingerprint": item.fingerprint}
            handle.write(json.dumps({"event": "sent", **base, "spec": item.spec()}) + "\n")
            result = {"event": "result", **base, "outcome": "ok", "billed": "yes"}
            handle.write(json.dumps({**result, "price_usd": 0.055, "spec": item.spec()}) + "\n")


def main() -> None:
    """Run every workload and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--only",
        help="run only workloads whose name starts with this (W1...), or `startup` for the"
        " plan and resume figures",
    )
    args = parser.parse_args()
    rows = []
    kept: list[Path] = []
    try:
        for workload in WORKLOADS:
            if args.only and not workload.name.startswith(args.only):
                continue
            rows.append((workload, run_workload(workload, args.runs, kept)))
    finally:
        for folder in kept:
            shutil.rmtree(folder, ignore_errors=True)
    if rows:
        print_table(rows)
    if not args.only or args.only.startswith(("W4", "W5")):
        print()
        for line in limit_rows(args.runs, args.only):
            print(line)
    if not args.only or args.only.startswith("W6"):
        print()
        for line in batch_rows(args.runs):
            print(line)
    if not args.only or args.only == "startup":
        print()
        for line in startup_figures():
            print(line)


def run_workload(workload: Workload, runs: int, kept: list[Path]) -> dict[str, Measure]:
    """Both clients, `runs` times each, alternating; the medians per client."""
    keep = workload.image_bytes * workload.items <= KEEP_OUTPUTS_BYTES
    simulator, url = start_simulator(workload)
    try:
        results: dict[str, list[Measure]] = {name: [] for name, _ in CLIENTS}
        for _ in range(runs):
            for client, runner in CLIENTS:
                folder = Path(tempfile.mkdtemp(prefix="bb-bench-"))
                try:
                    reset(url)
                    # The clients that do not fsync leave their images to the kernel's
                    # writeback; flushed now, it does not land in the next client's run.
                    os.sync()
                    results[client].append(runner(workload, url, folder))
                finally:
                    if keep:
                        kept.append(folder)
                    else:
                        shutil.rmtree(folder, ignore_errors=True)
        return {name: median_measure(measures) for name, measures in results.items()}
    finally:
        simulator.terminate()
        simulator.wait(timeout=10)


CLIENTS: tuple[tuple[str, Callable[[Workload, str, Path], Measure]], ...] = (
    ("batchbanana", run_batchbanana),
    ("threadpool", run_baseline),
    ("aiohttp-bare", run_bare),
)


def print_table(rows: list[tuple[Workload, dict[str, Measure]]]) -> None:
    """The benchmark table, one line per workload and client, with ratios to the baseline."""
    header = (
        f"{'workload':<14} {'client':<12} {'wall s':>7} {'items/s':>8} {'effic.':>7}"
        f" {'RSS MB':>7} {'CPU s':>6} {'CPU ms/img':>10} {'x items/s':>9} {'x RSS':>6} {'x CPU':>6}"
    )
    print(header)
    print("-" * len(header))
    footnote = (
        "aiohttp-bare: the baseline's work with bare aiohttp coroutines, for reference; no"
        " validation, ledger, fsync, retries or checks"
    )
    for workload, measures in rows:
        base = measures["threadpool"]
        for client, _ in CLIENTS:
            m = measures[client]
            rate = workload.items / m.wall_s
            ideal = workload.items * workload.latency_s / workload.concurrency
            efficiency = f"{ideal / m.wall_s:.3f}" if ideal else "-"
            print(
                f"{workload.name:<14} {client:<12} {m.wall_s:>7.2f} {rate:>8.1f} {efficiency:>7}"
                f" {m.peak_rss_mb:>7.0f} {m.cpu_s:>6.2f} {1000 * m.cpu_s / workload.items:>10.2f}"
                f" {rate / (workload.items / base.wall_s):>9.2f}"
                f" {m.peak_rss_mb / base.peak_rss_mb:>6.2f}"
                f" {m.cpu_s / base.cpu_s:>6.2f}"
            )
    print(footnote)


if __name__ == "__main__":
    main()
