"""The simulator's Files API spoken by hand: the resumable upload protocol (chunks, offsets,
finalize), a file's metadata, deletion, what may be downloaded, and the directory cleaned up."""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from batchbanana.simulator import RunningSimulator, SimulatorConfig, run_simulator
from tests.simbatch import GRANULE, KEY, call, upload

_START = {
    **KEY,
    "X-Goog-Upload-Protocol": "resumable",
    "X-Goog-Upload-Command": "start",
    "X-Goog-Upload-Header-Content-Length": "10",
    "X-Goog-Upload-Header-Content-Type": "jsonl",
}


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[RunningSimulator]:
    async with run_simulator(SimulatorConfig()) as running:
        yield running


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _start(http: aiohttp.ClientSession, sim: RunningSimulator, **headers: str) -> str:
    reply = await call(
        http, "POST", f"{sim.url}/upload/v1beta/files", {"file": {}}, {**_START, **headers}
    )
    assert reply.status == 200, reply.raw
    assert reply.headers["X-Goog-Upload-Status"] == "active"
    return str(reply.headers["X-Goog-Upload-URL"])


def _chunk(command: str, offset: int) -> dict[str, str]:
    return {"X-Goog-Upload-Command": command, "X-Goog-Upload-Offset": str(offset)}


@pytest.mark.asyncio
async def test_upload_in_chunks_becomes_an_active_file(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    """Three chunks (two of 256 KiB, then the rest with finalize) make one ACTIVE file whose size
    and hash are the bytes'; GET files/{id} says the same."""
    data = os.urandom(2 * GRANULE + 1234)
    reply = await upload(http, sim, data, file={"displayName": "my input"})
    assert reply.status == 200, reply.raw
    assert reply.headers["X-Goog-Upload-Status"] == "final"
    file = reply.json["file"]
    assert file["name"].startswith("files/") and file["state"] == "ACTIVE"
    assert file["sizeBytes"] == str(len(data)) and file["mimeType"] == "jsonl"
    assert file["source"] == "UPLOADED" and file["displayName"] == "my input"
    assert base64.b64decode(file["sha256Hash"]).decode() == hashlib.sha256(data).hexdigest()
    assert {"createTime", "updateTime", "expirationTime", "uri"} <= set(file)
    assert "downloadUri" not in file
    got = await call(http, "GET", f"{sim.url}/v1beta/{file['name']}")
    assert got.status == 200 and got.json == file


@pytest.mark.asyncio
async def test_a_wrong_offset_is_400_and_the_upload_can_go_on(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    """An offset other than the bytes received is refused (saying how many arrived); the session
    stays open, and `query` reports the same."""
    url = await _start(http, sim)
    assert (await call(http, "POST", url, b"12345", _chunk("upload, finalize", 3))).status == 400
    wrong = await call(http, "POST", url, b"12345", _chunk("upload, finalize", 3))
    assert wrong.json["error"]["status"] == "INVALID_ARGUMENT"
    assert wrong.headers["X-Goog-Upload-Size-Received"] == "0"
    query = await call(http, "POST", url, b"", {"X-Goog-Upload-Command": "query"})
    assert query.status == 200 and query.headers["X-Goog-Upload-Size-Received"] == "0"
    done = await call(http, "POST", url, b"0123456789", _chunk("upload, finalize", 0))
    assert done.status == 200 and done.json["file"]["sizeBytes"] == "10"


@pytest.mark.asyncio
async def test_a_chunk_off_the_granularity_is_400(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    """A chunk that does not finalize must be a multiple of 256 KiB (Google's granularity)."""
    url = await _start(http, sim, **{"X-Goog-Upload-Header-Content-Length": str(GRANULE + 1)})
    reply = await call(http, "POST", url, b"x" * 1000, _chunk("upload", 0))
    assert reply.status == 400 and "262144" in reply.json["error"]["message"]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("data", "message"),
    [(b"short", "declared"), (b"x" * 11, "More bytes than")],
    ids=["fewer", "more"],
)
async def test_a_size_other_than_declared_ends_the_session(
    sim: RunningSimulator, http: aiohttp.ClientSession, data: bytes, message: str
) -> None:
    """Finalizing with fewer bytes, or sending more, than declared is 400 and ends the session."""
    url = await _start(http, sim)
    reply = await call(http, "POST", url, data, _chunk("upload, finalize", 0))
    assert reply.status == 400 and message in reply.json["error"]["message"]
    assert reply.headers["X-Goog-Upload-Status"] == "final"
    gone = await call(http, "POST", url, b"0123456789", _chunk("upload, finalize", 0))
    assert gone.status == 404


@pytest.mark.asyncio
async def test_start_needs_a_key_and_the_resumable_protocol(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    """Starting needs a key (the chunks do not: the upload URL is the credential) and
    X-Goog-Upload-Protocol: resumable."""
    url = f"{sim.url}/upload/v1beta/files"
    no_key = {k: v for k, v in _START.items() if k not in KEY}
    assert (await call(http, "POST", url, {"file": {}}, no_key)).status == 401
    multipart = {**_START, "X-Goog-Upload-Protocol": "multipart"}
    reply = await call(http, "POST", url, {"file": {}}, multipart)
    assert reply.status == 400 and "resumable" in reply.json["error"]["message"]


@pytest.mark.asyncio
async def test_a_chosen_name_is_kept_and_cannot_be_taken_twice(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    """`file.name` chooses the id; a second upload under it is 409 ALREADY_EXISTS."""
    reply = await upload(http, sim, b"{}\n", file={"name": "files/my-input-1"})
    assert reply.json["file"]["name"] == "files/my-input-1"
    again = await call(
        http,
        "POST",
        f"{sim.url}/upload/v1beta/files",
        {"file": {"name": "files/my-input-1"}},
        _START,
    )
    assert again.status == 409 and again.json["error"]["status"] == "ALREADY_EXISTS"
    bad = await call(
        http, "POST", f"{sim.url}/upload/v1beta/files", {"file": {"name": "files/No!"}}, _START
    )
    assert bad.status == 400


@pytest.mark.asyncio
async def test_uploaded_files_cannot_be_downloaded_and_can_be_deleted(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    """Only generated files download (an uploaded one is 400); DELETE answers {} and the file is
    gone (404), as is any id that never existed."""
    name = (await upload(http, sim, b"{}\n")).json["file"]["name"]
    download = await call(http, "GET", f"{sim.url}/v1beta/{name}:download?alt=media")
    assert download.status == 400 and "generated" in download.json["error"]["message"]
    deleted = await call(http, "DELETE", f"{sim.url}/v1beta/{name}")
    assert deleted.status == 200 and deleted.json == {}
    for method, path in [("GET", name), ("DELETE", name), ("GET", "files/nosuchfile")]:
        reply = await call(http, method, f"{sim.url}/v1beta/{path}")
        assert reply.status == 404 and reply.json["error"]["status"] == "NOT_FOUND"
    no_key = await call(http, "GET", f"{sim.url}/v1beta/files/nosuchfile", headers={})
    assert no_key.status == 401


@pytest.mark.asyncio
async def test_the_files_directory_is_removed_when_the_server_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Uploads go to a temporary directory that is gone once the simulator stops."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    def listing() -> list[str]:
        return sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))

    async with run_simulator(SimulatorConfig()) as sim, aiohttp.ClientSession() as http:
        assert (await upload(http, sim, b"{}\n" * 100)).status == 200
        made = listing()
        assert len(made) == 2 and made[0].startswith("batchbanana-sim-")
    assert listing() == []
