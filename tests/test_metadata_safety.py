"""What `metadata` must never do: break a C2PA signature, overwrite a `.json` it did not write,
leave a partial sidecar, lose a paid answer's line, or write the key into a record."""

from __future__ import annotations

import base64
import io
import json
import os
import random
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from batchbanana.simulator import RunningSimulator
from tests.conftest import (
    FAKE_KEY,
    CliResult,
    RecordingServer,
    Reply,
    Seen,
    results,
    run_subprocess,
)

Cli = Callable[..., CliResult]
Writer = Callable[..., Path]


def c2pa_jpeg(noise_px: int) -> bytes:
    """A JPEG of noise (large enough to be streamed to a file when big) whose header carries an
    APP11 JUMBF superbox labelled `c2pa`, as a C2PA manifest store sits in a JPEG."""
    rng = random.Random(7)
    image = Image.frombytes(
        "RGB", (noise_px, noise_px), bytes(rng.getrandbits(8) for _ in range(noise_px**2 * 3))
    )
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95)
    data = buffer.getvalue()
    jumd = b"jumd" + bytes(16) + b"\x03c2pa\x00"
    superbox = struct.pack(">I", 8 + 4 + len(jumd)) + b"jumb" + struct.pack(">I", 4 + len(jumd))
    payload = b"JP\x00\x01\x00\x00\x00\x01" + superbox + jumd
    return data[:2] + b"\xff\xeb" + struct.pack(">H", 2 + len(payload)) + payload + data[2:]


def answering(image: bytes, mime_type: str, text: str = "here it is") -> Reply:
    """A reply for the RecordingServer: a 200 generateContent answer with this image."""
    data = base64.b64encode(image).decode()
    parts = [{"text": text}, {"inlineData": {"mimeType": mime_type, "data": data}}]
    body = {
        "candidates": [{"content": {"parts": parts}, "finishReason": "STOP"}],
        "responseId": "resp-1",
    }

    def reply(seen: Seen, request: bytes) -> tuple[int, dict[str, str], bytes]:
        return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()

    return reply


@pytest.mark.parametrize("noise_px", [64, 400], ids=["in-memory", "streamed-to-a-file"])
def test_a_jpeg_carrying_c2pa_is_saved_byte_for_byte_with_its_sidecar(
    cli: Cli, write_manifest: Writer, recording_server: RecordingServer, tmp_path: Path,
    noise_px: int,
) -> None:  # fmt: skip
    """`embed` never touches an image with a C2PA manifest (its signature would break): the file
    is exactly the answer's bytes, and the record is in the sidecar."""
    signed = c2pa_jpeg(noise_px)
    recording_server.reply = answering(signed, "image/jpeg")
    manifest = write_manifest(
        [{"id": "signed", "prompt": "p"}], endpoint=recording_server.url, metadata="embed"
    )
    assert cli("run", str(manifest), "--no-progress").exit_code == 0, "run failed"
    out = tmp_path / "out"
    assert (out / "signed.jpg").read_bytes() == signed
    record = json.loads((out / "signed.json").read_text())
    assert (record["item"], record["response_id"]) == ("signed", "resp-1")
    assert record["text"] == "here it is"
    assert not list(out.glob(".*.tmp"))


def test_the_key_echoed_by_a_server_never_reaches_a_record(
    cli: Cli, write_manifest: Writer, recording_server: RecordingServer, tmp_path: Path
) -> None:
    """A server puts the key in the model's text: neither the sidecar nor the image holds it."""
    with Image.new("RGB", (8, 8)) as image:
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
    recording_server.reply = answering(buffer.getvalue(), "image/png", f"your key is {FAKE_KEY}")
    manifest = write_manifest(
        [{"id": "k", "prompt": "p"}], endpoint=recording_server.url, metadata="embed"
    )
    assert cli("run", str(manifest), "--no-progress").exit_code == 0
    out = tmp_path / "out"
    for path in (out / "k.json", out / "k.png", out / "ledger.jsonl"):
        assert FAKE_KEY.encode() not in path.read_bytes(), path.name
    assert json.loads((out / "k.json").read_text())["text"] == "your key is ***"


def test_a_json_file_this_job_did_not_write_is_never_overwritten(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """A `<id>.json` at a sidecar's name that batchbanana did not write: the run refuses to start
    (exit 2) and names it, nothing is sent; with `metadata: none` it is no concern."""
    out = tmp_path / "out"
    out.mkdir()
    notes = out / "cat+2.json"
    notes.write_text('{"my": "notes"}')
    manifest = write_manifest([{"id": "cat", "prompt": "p"}], endpoint=simulator.url)
    result = cli("run", str(manifest), "--no-progress")
    assert result.exit_code == 2
    assert "cat+2.json" in result.stderr and "metadata: none" in result.stderr
    assert simulator.stats()["requests"] == 0
    manifest = write_manifest(
        [{"id": "cat", "prompt": "p"}], endpoint=simulator.url, metadata="none"
    )
    assert cli("run", str(manifest), "--no-progress").exit_code == 0
    assert notes.read_text() == '{"my": "notes"}'


def test_a_sidecar_that_cannot_be_written_is_a_write_error_and_stops_the_job(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Disk full while writing a sidecar: the paid answer's line is a billed `write_error` naming
    the image that was saved (like an image that cannot be written, it stops the job); no
    sidecar, partial or whole, and no temporary file remain."""
    from batchbanana.run import outputs

    real = outputs.write_new_file

    def full_for_sidecars(path: Path, chunks: object) -> None:
        if "~j" in path.name:
            with path.open("wb") as handle:
                handle.write(b'{"batchbanana": "half')  # some of it reached the disk
            path.unlink()  # as write_new_file does when a write fails
            raise OSError(28, "No space left on device")
        real(path, chunks)  # type: ignore[arg-type]

    monkeypatch.setattr("batchbanana.run.making.write_new_file", full_for_sidecars)
    manifest = write_manifest([{"id": "a", "prompt": "a"}], endpoint=simulator.url)
    result = cli("run", str(manifest), "--no-progress")
    assert result.exit_code == 1 and "stopping: item 'a'" in result.stderr
    out = tmp_path / "out"
    (line,) = results(out / "ledger.jsonl")
    assert (line["outcome"], line["billed"]) == ("write_error", "yes")
    assert line["output"] == str(out / "a.png") and "No space left" in line["error"]
    assert sorted(path.name for path in out.iterdir()) == ["a.png", "ledger.jsonl"]


def test_kill_9_while_a_sidecar_is_written_leaves_no_partial_sidecar(
    write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """kill -9 in the middle of a sidecar: no `<id>.json` under its final name, only a temporary
    file that the next start removes; the request counts as interrupted, and `retry` then
    writes the image and a whole sidecar."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(
        "import os, signal\n"
        "import batchbanana.run.making as making\n"
        "def dying(path, chunks):\n"
        "    with open(path, 'wb') as handle:\n"
        "        handle.write(b'{\"batchbanana\": \"0.')\n"
        "        handle.flush()\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "making.write_new_file = dying\n"
    )
    manifest = write_manifest([{"id": "k", "prompt": "kept"}], endpoint=simulator.url)
    env = {**os.environ, "PYTHONPATH": f"{hooks}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    process = subprocess.run(
        [sys.executable, "-m", "batchbanana", "run", str(manifest), "--no-progress"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert process.returncode == -9, process.stderr
    out = tmp_path / "out"
    assert not (out / "k.json").exists()
    assert [path.name.startswith(".k~j1-") for path in out.glob(".*.tmp")] == [True]
    second = run_subprocess("run", str(manifest), "--no-progress")
    assert second.returncode == 1, second.stderr  # left for retry: it may have been paid
    assert not list(out.glob(".*.tmp"))
    assert [(r["outcome"], r["billed"]) for r in results(out / "ledger.jsonl")] == [
        ("interrupted", "unknown")
    ]
    retried = run_subprocess("retry", str(out / "ledger.jsonl"), "--yes", "--no-progress")
    assert retried.returncode == 0, retried.stderr
    assert json.loads((out / "k.json").read_text())["attempt"] == 2
