"""The simulator and the job as the benchmarks run them: `batchbanana simulate` in its own process
on a free port (its CPU is not the client's), and a manifest of N plain items for it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any


def start_simulator(*options: str) -> tuple[subprocess.Popen[str], str]:
    """`batchbanana simulate --port 0 OPTIONS` started; the process and the URL it serves."""
    process = subprocess.Popen(
        [sys.executable, "-m", "batchbanana", "simulate", "--port", "0", *options],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    assert process.stderr is not None
    line = process.stderr.readline()
    match = re.search(r"(http://\S+)", line)
    if not match:
        process.kill()
        raise SystemExit(f"simulator did not start: {line!r}")
    return process, match.group(1)


def write_manifest(path: Path, url: str, items: int, **settings: Any) -> Path:
    """A manifest of `items` plain 1K items for the simulator at `url`, with `settings` on top."""
    document = {
        "version": 1,
        "endpoint": url,
        "model": "gemini-3.1-flash-image-preview",
        "aspect_ratio": "1:1",
        "output_dir": "out",
        **settings,
        "items": [{"id": f"i{n}", "prompt": f"bench item {n}"} for n in range(items)],
    }
    path.write_text(json.dumps(document))
    return path
