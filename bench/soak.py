"""`make soak`: a 10,000-item job against a faulty simulator, checked for money and memory.

Faults: 5% 429, 2% 503, 1% dropped connections, concurrency 64. Checks that every item ends
with a result line, that ledger spent <= simulator bill <= spent + possibly spent to the cent,
and that the client's peak RSS once all 10,000 items are done is within 20% of its peak when the
first 1,000 were done (memory stays flat as the job goes on).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from simulated import start_simulator as start_simulated

FAULTS = ("--seed", "11", "--rate-429", "0.05", "--rate-503", "0.02", "--rate-drop", "0.01")


def start_simulator() -> tuple[subprocess.Popen[str], str]:
    """The simulator with the soak's fault rates, on a free port."""
    return start_simulated(*FAULTS, "--image-bytes", "50000")


def bill(url: str) -> dict[str, float]:
    """The simulator's bill."""
    with urllib.request.urlopen(f"{url}/_sim/bill", timeout=10) as response:
        return json.load(response)


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set so far (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run_job(url: str, items: int, folder: Path) -> tuple[float, float, float, Path]:
    """Run a job: (wall s, peak RSS MB at 1,000 results, peak RSS MB at the end, ledger)."""
    manifest = folder / "soak.yaml"
    ledger = folder / "out" / "ledger.jsonl"
    manifest.write_text(
        json.dumps(
            {
                "version": 1,
                "endpoint": url,
                "model": "gemini-3.1-flash-image-preview",
                "concurrency": 64,
                "output_dir": "out",
                "retry": {"base_delay_s": 0.05, "max_delay_s": 0.5, "max_attempts": 10},
                "items": [{"id": f"i{n}", "prompt": f"soak item {n}"} for n in range(items)],
            }
        )
    )
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "batchbanana", "run", str(manifest), "--no-progress"],
        env={**os.environ, "BATCHBANANA_API_KEY": "soak-key"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    at_1000 = 0.0
    while True:
        pid, _, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break  # reaped: usage holds the whole run's peak RSS
        if not at_1000 and ledger.exists():
            with ledger.open("rb") as handle:
                done = sum(1 for line in handle if b'"event": "result"' in line)
            if done >= 1000:
                at_1000 = peak_rss_mb(process.pid)
        time.sleep(0.2)
    process.returncode = 0  # reaped above; keep Popen from waiting again
    return time.monotonic() - started, at_1000, usage.ru_maxrss / 1024, ledger


def check_ledger(ledger: Path, items: int, billed_usd: float) -> tuple[float, float]:
    """Every item has a final line; the bill invariant holds. Returns (spent, possibly)."""
    spent = possibly = 0.0
    final: dict[str, str] = {}
    for line in ledger.read_text().splitlines():
        record = json.loads(line)
        if record["event"] != "result":
            continue
        final[record["item"]] = record["outcome"]
        if record["billed"] == "yes":
            spent += record["price_usd"]
        elif record["billed"] == "unknown":
            possibly += record["price_usd"]
    assert len(final) == items, f"{items - len(final)} items have no result line"
    assert spent - 0.005 <= billed_usd <= spent + possibly + 0.005, (spent, billed_usd, possibly)
    return spent, possibly


def main() -> None:
    """Run 10,000 items and print the figures."""
    items = 10_000
    simulator, url = start_simulator()
    try:
        with tempfile.TemporaryDirectory(prefix="bb-soak-") as tmp:
            wall, at_1000, at_end, ledger = run_job(url, items, Path(tmp))
            billed = bill(url)["billed_usd"]
            spent, possibly = check_ledger(ledger, items, billed)
    finally:
        simulator.terminate()
        simulator.wait(timeout=10)
    print(
        f"{items} items in {wall:.1f} s ({items / wall:.0f} items/s), concurrency 64,"
        " faults 5% 429, 2% 503, 1% dropped"
    )
    print(
        f"spent ${spent:.3f}, possibly ${possibly:.3f}, simulator bill ${billed:.3f}:"
        " spent <= bill <= spent + possibly holds"
    )
    growth = at_end / at_1000
    print(
        f"peak RSS after 1,000 items {at_1000:.1f} MB, after 10,000 {at_end:.1f} MB:"
        f" {growth:.2f}x (limit 1.20x)"
    )
    if growth > 1.2:
        raise SystemExit("memory grew more than 20%")


if __name__ == "__main__":
    main()
