"""Shared fixtures: a clean environment with a recognisable fake key, the real simulator on
127.0.0.1, manifest writers and CLI runners."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from batchbanana.cli import main
from batchbanana.simulator import RunningSimulator, SimulatorConfig, simulator_in_thread

FAKE_KEY = "sk-FAKE-test-key-0123456789-do-not-leak"
KEY_ENV = "BATCHBANANA_API_KEY"
_PROXY_VARS = (
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "https_proxy",
    "http_proxy",
    "all_proxy",
    "no_proxy",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts with no proxy settings and the fake key in the default variable."""
    for name in _PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(KEY_ENV, FAKE_KEY)


def png_bytes(width: int = 8, height: int = 8, padding: int = 0) -> bytes:
    """A valid RGB PNG; `padding` adds an ancillary chunk of that many bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    rows = b"".join(b"\x00" + bytes((30, 60, 90)) * width for _ in range(height))
    body = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    if padding:
        body += chunk(b"pAdD", os.urandom(padding))
    body += chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.fixture
def simulator() -> Iterator[RunningSimulator]:
    """The real simulator in its own thread and event loop, with default (fault-free) settings."""
    with simulator_in_thread(SimulatorConfig(seed=1)) as sim:
        yield sim


@pytest.fixture
def make_simulator() -> Iterator[Callable[..., RunningSimulator]]:
    """Start simulators with custom settings; all are stopped at the end of the test."""
    stack: list[Any] = []

    def start(**settings: Any) -> RunningSimulator:
        manager = simulator_in_thread(SimulatorConfig(**settings))
        sim = manager.__enter__()
        stack.append(manager)
        return sim

    yield start
    for manager in reversed(stack):
        manager.__exit__(None, None, None)


@pytest.fixture
def write_manifest(tmp_path: Path) -> Callable[..., Path]:
    """Write a manifest into tmp_path; returns its path. Fast retries by default."""

    def write(
        items: list[dict[str, Any]] | None = None,
        name: str = "job.yaml",
        **settings: Any,
    ) -> Path:
        document: dict[str, Any] = {
            "version": 1,
            "model": "gemini-3-pro-image-preview",
            "output_dir": "out",
            "retry": {"base_delay_s": 0.05, "max_delay_s": 0.2},
        }
        document.update(settings)
        if items is not None:
            document["items"] = items
        path = tmp_path / name
        path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
        return path

    return write


@dataclass
class CliResult:
    """What a CLI invocation produced."""

    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli() -> Callable[..., CliResult]:
    """Run batchbanana in-process through click's runner (exceptions are not swallowed)."""

    def invoke(*args: str) -> CliResult:
        runner = CliRunner()
        result = runner.invoke(main, list(args), catch_exceptions=False)
        return CliResult(result.exit_code, result.stdout, result.stderr)

    return invoke


def run_subprocess(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `python -m batchbanana ARGS` in a child process."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "batchbanana", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        check=False,
    )


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every line of a JSONL file, parsed (a test fails on any unreadable line)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def results(path: Path) -> list[dict[str, Any]]:
    """The `result` lines of a ledger."""
    return [record for record in read_jsonl(path) if record["event"] == "result"]
