"""Shared fixtures: a clean environment with a recognisable fake key, the real simulator on
127.0.0.1, a recording HTTP server, manifest writers and CLI runners."""

from __future__ import annotations

import http.server
import json
import os
import struct
import subprocess
import sys
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class Seen:
    """One request a RecordingServer received, as it came: method, target and headers."""

    method: str
    target: str  # a path, an absolute URL (sent to a proxy) or host:port (CONNECT)
    headers: dict[str, str]


Reply = Callable[[Seen, bytes], tuple[int, dict[str, str], bytes]]


@dataclass
class RecordingServer:
    """An HTTP server on 127.0.0.1 that records every request and answers with `reply`; it can
    stand for an endpoint, a download host or a forward proxy (HTTP_PROXY / HTTPS_PROXY)."""

    url: str
    reply: Reply
    seen: list[Seen] = field(default_factory=list)


class _RecordingHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    recorder: RecordingServer

    def _record_and_reply(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        seen = Seen(self.command, self.path, dict(self.headers.items()))
        self.recorder.seen.append(seen)
        status, headers, payload = self.recorder.reply(seen, body)
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(payload))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_CONNECT = _record_and_reply

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def recording_server() -> Iterator[RecordingServer]:
    """A RecordingServer that answers 404 until the test sets its `reply`."""
    recorder = RecordingServer("", lambda seen, body: (404, {}, b""))
    handler = type("Handler", (_RecordingHandler,), {"recorder": recorder})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    recorder.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield recorder
    server.shutdown()
    server.server_close()
    thread.join()


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
