"""W4 capacity and W5 quota: a provider whose limits the client is not told, time compressed.

The simulator answers in about `latency_s` (lognormal spread) and refuses by capacity (503 while
`capacity` are being generated) or by quota (429 with a per-minute QuotaFailure and RetryInfo past
`rpm` requests per `window_s`); the retry settings are scaled the same way (base 0.07 s, at most
4 s). batchbanana runs adaptive with concurrency 64 as the ceiling; the baseline is the same
thread pool, 64 threads, retrying 429/503 with the same backoff. Efficiency = ideal / wall (whole
process): capacity, items x mean latency / capacity; quota, items x window / rpm. The extra rows
try other limits and limits that double halfway, batchbanana only, one run each.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from simulated import start_simulator, write_manifest

ROOT = Path(__file__).resolve().parent.parent
CEILING = 64
BASE_DELAY_S = 0.07
MAX_DELAY_S = 4.0


@dataclass(frozen=True)
class LimitWorkload:
    """A provider with a hidden limit."""

    name: str
    items: int
    latency_s: float = 1.0
    spread: float = 0.3  # lognormal sigma of the latency
    capacity: int | None = None
    rpm: int | None = None
    window_s: float = 3.0
    double_at_s: float | None = None

    def ideal_s(self) -> float | None:
        """The wall time of a client that knew the limit and never wasted a moment."""
        if self.double_at_s is not None:
            return None
        if self.capacity:
            return self.items * self.latency_s / self.capacity
        assert self.rpm
        return self.items * self.window_s / self.rpm

    def simulator_options(self) -> list[str]:
        # Seeded: the same answer times for every client and every version, so rows compare.
        options = ["--latency", str(self.latency_s), "--latency-spread", str(self.spread)]
        options += ["--seed", "1"]
        if self.capacity:
            options += ["--capacity", str(self.capacity)]
        if self.rpm:
            options += ["--rpm", str(self.rpm), "--rpm-window", str(self.window_s)]
        if self.double_at_s is not None:
            options += ["--limits-double-at", str(self.double_at_s)]
        return options


MAIN = (
    LimitWorkload("W4 capacity", items=480, capacity=16),
    LimitWorkload("W5 quota", items=240, rpm=40),
)
EXTRA = (
    LimitWorkload("W4 capacity 8", items=240, capacity=8),
    LimitWorkload("W4 capacity 32", items=960, capacity=32),
    LimitWorkload("W4 doubling 16>32", items=720, capacity=16, double_at_s=8.0),
    LimitWorkload("W5 quota 20", items=120, rpm=20),
    LimitWorkload("W5 quota 100", items=600, rpm=100),
    LimitWorkload("W5 doubling 20>40", items=240, rpm=20, double_at_s=9.0),
)


@dataclass(frozen=True)
class LimitMeasure:
    """One client run against a limited provider."""

    wall_s: float
    ok: int
    refused: int
    found: str = ""


def _simulator(workload: LimitWorkload) -> tuple[subprocess.Popen[str], str]:
    return start_simulator(*workload.simulator_options())


def _run_batchbanana(workload: LimitWorkload, url: str, folder: Path) -> LimitMeasure:
    retry = {"base_delay_s": BASE_DELAY_S, "max_delay_s": MAX_DELAY_S}
    manifest = write_manifest(
        folder / "limits.yaml", url, workload.items, concurrency=CEILING, retry=retry
    )
    command = [sys.executable, "-m", "batchbanana", "run", str(manifest), "--no-progress"]
    started = time.monotonic()
    done = subprocess.run(
        command,
        env={**os.environ, "BATCHBANANA_API_KEY": "bench-key"},
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.monotonic() - started
    lines = [json.loads(line) for line in (folder / "out" / "ledger.jsonl").open()]
    results = [line for line in lines if line.get("event") == "result"]
    ok = sum(1 for line in results if line["outcome"] == "ok")
    refused = sum(1 for line in results if line["outcome"] in ("rate_limited", "unavailable"))
    found = re.search(r"provider limit: ([^;]+);", done.stderr)
    return LimitMeasure(wall, ok, refused, found.group(1) if found else "-")


def _run_threadpool(workload: LimitWorkload, url: str, folder: Path) -> LimitMeasure:
    report = folder / "report.json"
    command = [
        sys.executable,
        str(ROOT / "bench" / "baseline_client.py"),
        "--url", url,
        "--items", str(workload.items),
        "--concurrency", str(CEILING),
        "--out", str(folder / "out"),
        "--retries", "5",
        "--base-delay", str(BASE_DELAY_S),
        "--max-delay", str(MAX_DELAY_S),
        "--report", str(report),
    ]  # fmt: skip
    started = time.monotonic()
    subprocess.run(command, capture_output=True, check=True)
    wall = time.monotonic() - started
    figures = json.loads(report.read_text())
    return LimitMeasure(wall, figures["ok"], figures["refused"])


CLIENTS = (("batchbanana", _run_batchbanana), ("threadpool", _run_threadpool))


def _measure(
    workload: LimitWorkload, runs: int, clients: tuple[str, ...]
) -> dict[str, list[LimitMeasure]]:
    measures: dict[str, list[LimitMeasure]] = {name: [] for name in clients}
    for _ in range(runs):
        for name, runner in CLIENTS:
            if name not in clients:
                continue
            # A fresh simulator per run: its quota windows and its doubling start with the run.
            simulator, url = _simulator(workload)
            try:
                with tempfile.TemporaryDirectory(prefix="bb-bench-limits-") as tmp:
                    measures[name].append(runner(workload, url, Path(tmp)))
            finally:
                simulator.terminate()
                simulator.wait(timeout=10)
    return measures


def _row(workload: LimitWorkload, client: str, runs: list[LimitMeasure]) -> str:
    wall = statistics.median(run.wall_s for run in runs)
    ok = min(run.ok for run in runs)
    refused = statistics.median(run.refused for run in runs) / workload.items
    ideal = workload.ideal_s()
    efficiency = f"{ideal / wall:.3f}" if ideal else "-"
    found = runs[len(runs) // 2].found
    return (
        f"{workload.name:<19} {client:<12} {wall:>7.2f} {efficiency:>7}"
        f" {ok:>4}/{workload.items:<4} {refused:>9.3f}  {found}"
    )


def limit_rows(runs: int, only: str | None) -> list[str]:
    """The W4 and W5 rows (medians of `runs`), then the extra limits (one batchbanana run)."""
    header = (
        f"{'workload':<19} {'client':<12} {'wall s':>7} {'effic.':>7} {'ok':>9}"
        f" {'refused/img':>11}  limit found"
    )
    lines = [header, "-" * (len(header) + 12)]
    for workload in MAIN:
        if only and not workload.name.startswith(only):
            continue
        measures = _measure(workload, runs, ("batchbanana", "threadpool"))
        lines += [_row(workload, client, measures[client]) for client in measures]
    for workload in EXTRA:
        if only and not workload.name.startswith(only):
            continue
        lines.append(
            _row(workload, "batchbanana", _measure(workload, 1, ("batchbanana",))["batchbanana"])
        )
    lines.append(
        "efficiency = ideal / wall, whole process; ideal = items x mean latency / capacity, or"
        " items x window / quota; refused = 429/503 answers per image"
    )
    return lines


if __name__ == "__main__":
    for text in limit_rows(int(sys.argv[1]) if len(sys.argv) > 1 else 1, None):
        print(text)
