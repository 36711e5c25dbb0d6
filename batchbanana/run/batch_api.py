"""Google's Batch and Files APIs, the calls batch mode makes: create a batch (inline, or from a
file uploaded with the resumable protocol), get, list (to find a batch by its display name),
cancel, and download a file or a finished batch's operation to disk, streamed, with retries.

Every call goes through run/http.py (one session, one proxy policy, one exception boundary).
A failed call raises BatchCallError saying whether anything reached the provider.
"""

from __future__ import annotations

import contextlib
import json
import os
import urllib.parse
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import anyio

from batchbanana.errors import (
    BadResponse,
    BatchCallError,
    ConnectError,
    TransportError,
    make_scrubber,
)
from batchbanana.rules.backoff import retry_wait_s
from batchbanana.rules.batch import BATCH_PATH, BatchStatus, batch_status
from batchbanana.rules.error_answer import parse_error
from batchbanana.rules.wire import auth_headers
from batchbanana.run.batch_stream import Skeleton
from batchbanana.run.http import HttpSession, read_at_most

API_TIMEOUT_S = 300.0  # a create with a 20 MB body, a get, a list: generous but bounded
READ_TIMEOUT_S = 120.0  # a transfer silent this long has stalled: give up (polls are retried)
TRANSFER_TIMEOUT_S = 6 * 3600.0  # uploading or downloading up to 2 GB
CHUNK_BYTES = 8 * 1024 * 1024
ERROR_BODY_LIMIT = 64 * 1024
STATUS_BODY_LIMIT = 8 * 1024 * 1024  # a get without inline results is a few KB
TRANSIENT = frozenset({429, 500, 502, 503, 504})
DOWNLOAD_ATTEMPTS = 6


class BatchApi:
    """Batch and file calls to one endpoint with one key."""

    def __init__(self, http: HttpSession, endpoint: str, auth: str, api_key: str) -> None:
        self._http = http
        self._base = endpoint.rstrip("/")
        self._auth = auth_headers(auth, api_key)
        self._scrub = make_scrubber([api_key])

    def _url(self, path: str) -> str:
        return self._base + path

    async def _call(
        self, method: str, path: str, body: bytes | None = None, query: str = ""
    ) -> Any:
        """One JSON call; the answer's JSON, or BatchCallError."""
        url = self._url(path) + (f"?{query}" if query else "")
        headers = {**self._auth, "Content-Type": "application/json"}
        try:
            async with self._http.request(
                method, url, data=body, headers=headers, timeout_s=API_TIMEOUT_S
            ) as response:
                if response.status != 200:
                    raise self._refused(
                        response.status, await read_at_most(response, ERROR_BODY_LIMIT)
                    )
                payload = await read_at_most(response, STATUS_BODY_LIMIT + 1)
        except TransportError as exc:
            raise BatchCallError(
                self._scrub(f"{method} {path}: {exc}"),
                status=None,
                sent=not isinstance(exc, ConnectError),
            ) from None
        if len(payload) > STATUS_BODY_LIMIT:
            raise BatchCallError(f"{method} {path}: answer too large", status=200, sent=True)
        try:
            return json.loads(payload) if payload.strip() else {}
        except ValueError:
            raise BatchCallError(
                f"{method} {path}: answer is not JSON", status=200, sent=True
            ) from None

    def _refused(self, status: int, body: bytes) -> BatchCallError:
        info = parse_error(self._scrub(body.decode("utf-8", "replace")).encode("utf-8"))
        message = info.message or body[:200].decode("utf-8", "replace")
        return BatchCallError(
            self._scrub(f"HTTP {status}: {message}"),
            status=status,
            sent=True,
            retry_after_s=info.retry_delay_s,
        )

    async def create(self, model: str, body: bytes) -> BatchStatus:
        """Create a batch from a ready create body; its status (with the provider's name)."""
        answer = await self._call("POST", BATCH_PATH.format(model=model), body)
        status = batch_status(answer) if isinstance(answer, dict) else None
        if status is None:
            raise BatchCallError("create: the answer names no batch", status=200, sent=True)
        return status

    async def get(self, name: str) -> BatchStatus:
        """A batch's status. Its inline results, if any, are fetched by `save_operation`."""
        answer = await self._call("GET", f"/v1beta/{name}")
        status = batch_status(answer) if isinstance(answer, dict) else None
        if status is None:
            raise BatchCallError(f"get {name}: the answer names no batch", status=200, sent=True)
        return status

    async def find(self, display_name: str) -> BatchStatus | None:
        """The batch with this display name (a batch key), read through every page of the list;
        None when the provider has none (the create never happened)."""
        token = ""
        for _ in range(10_000):
            query = urllib.parse.urlencode(
                {"pageSize": 100, **({"pageToken": token} if token else {})}
            )
            answer = await self._list_page(query)
            operations = answer.get("operations") if isinstance(answer, dict) else None
            for operation in operations if isinstance(operations, list) else []:
                status = batch_status(operation) if isinstance(operation, dict) else None
                if status is not None and status.display_name == display_name:
                    return status
            following = answer.get("nextPageToken") if isinstance(answer, dict) else None
            if not isinstance(following, str) or not following:
                return None
            token = following
        return None

    async def _list_page(self, query: str) -> Any:
        """One page of the batches list, read as it arrives without the inline results its
        finished batches carry (a page may hold gigabytes of images; only the rest is kept)."""
        path = "/v1beta/batches"
        skeleton = Skeleton()
        try:
            async with self._http.request(
                "GET",
                f"{self._url(path)}?{query}",
                headers=self._auth,
                timeout_s=TRANSFER_TIMEOUT_S,
                read_timeout_s=READ_TIMEOUT_S,
            ) as response:
                if response.status != 200:
                    raise self._refused(
                        response.status, await read_at_most(response, ERROR_BODY_LIMIT)
                    )
                async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                    skeleton.feed(chunk)
                    if skeleton.size > STATUS_BODY_LIMIT:
                        raise BatchCallError(f"GET {path}: answer too large", status=200, sent=True)
        except TransportError as exc:
            raise BatchCallError(
                self._scrub(f"GET {path}: {exc}"),
                status=None,
                sent=not isinstance(exc, ConnectError),
            ) from None
        try:
            return skeleton.json()
        except BadResponse:
            raise BatchCallError(f"GET {path}: answer is not JSON", status=200, sent=True) from None

    async def cancel(self, name: str) -> None:
        """Ask the provider to cancel a batch (a finished one is left as it is)."""
        await self._call("POST", f"/v1beta/{name}:cancel", b"{}")

    async def upload(self, path: Path, size: int, display_name: str) -> str:
        """Upload a JSONL file of `size` bytes with the resumable protocol; the file's name
        (`files/...`)."""
        start_headers = {
            **self._auth,
            "Content-Type": "application/json",
            "X-Goog-Upload-Protocol": "resumable",
            "X-Goog-Upload-Command": "start",
            "X-Goog-Upload-Header-Content-Length": str(size),
            "X-Goog-Upload-Header-Content-Type": "application/jsonl",
        }
        meta = json.dumps({"file": {"displayName": display_name, "mimeType": "application/jsonl"}})
        try:
            async with self._http.request(
                "POST",
                self._url("/upload/v1beta/files"),
                data=meta.encode(),
                headers=start_headers,
                timeout_s=API_TIMEOUT_S,
            ) as response:
                if response.status != 200:
                    raise self._refused(
                        response.status, await read_at_most(response, ERROR_BODY_LIMIT)
                    )
                upload_url = response.headers.get("X-Goog-Upload-URL")
            if not upload_url:
                raise BatchCallError("upload: no upload URL in the answer", status=200, sent=True)
            headers = {
                **self._auth,
                "X-Goog-Upload-Command": "upload, finalize",
                "X-Goog-Upload-Offset": "0",
                "Content-Length": str(size),
            }
            async with self._http.request(
                "POST",
                upload_url,
                data=_file_chunks(path),
                headers=headers,
                timeout_s=TRANSFER_TIMEOUT_S,
                read_timeout_s=READ_TIMEOUT_S,
            ) as response:
                body = await read_at_most(response, STATUS_BODY_LIMIT)
                if response.status != 200:
                    raise self._refused(response.status, body)
        except TransportError as exc:
            raise BatchCallError(self._scrub(f"upload: {exc}"), status=None, sent=False) from None
        try:
            name = json.loads(body)["file"]["name"]
        except (ValueError, KeyError, TypeError):
            name = None
        if not isinstance(name, str):
            raise BatchCallError("upload: the answer names no file", status=200, sent=True)
        return name

    async def upload_lines(self, path: Path, display_name: str, lines: Iterable[bytes]) -> str:
        """Write `lines` to the new file `path` (in a worker thread: they are built there),
        upload it, and delete it; the uploaded file's name."""

        def write() -> int:
            with path.open("wb") as handle:
                handle.writelines(lines)
                return handle.tell()

        try:
            size = await anyio.to_thread.run_sync(write)
            return await self.upload(path, size, display_name)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)

    async def download(self, file_name: str, destination: Path, rng: Any) -> None:
        """Stream a file (a batch's responses) to `destination`, retrying what failed to arrive
        (users see 503s on finished batches' downloads); downloading costs nothing."""
        path = f"/download/v1beta/{file_name}:download"
        await self._fetch_to(path, "alt=media", destination, rng)

    async def save_operation(self, name: str, destination: Path, rng: Any) -> None:
        """Stream a finished batch's whole operation (inline results included) to a file."""
        await self._fetch_to(f"/v1beta/{name}", "", destination, rng)

    async def _fetch_to(self, path: str, query: str, destination: Path, rng: Any) -> None:
        url = self._url(path) + (f"?{query}" if query else "")
        for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
            wait: float | None = None
            try:
                async with self._http.request(
                    "GET",
                    url,
                    headers=self._auth,
                    timeout_s=TRANSFER_TIMEOUT_S,
                    read_timeout_s=READ_TIMEOUT_S,
                ) as response:
                    if response.status == 200:
                        await _stream_to(response.content.iter_chunked(CHUNK_BYTES), destination)
                        return
                    error = self._refused(
                        response.status, await read_at_most(response, ERROR_BODY_LIMIT)
                    )
                    if response.status not in TRANSIENT or attempt == DOWNLOAD_ATTEMPTS:
                        raise error
                    wait = error.retry_after_s
            except TransportError as exc:
                if attempt == DOWNLOAD_ATTEMPTS:
                    raise BatchCallError(
                        self._scrub(f"download {path}: {exc}"), None, True
                    ) from None
            await anyio.sleep(retry_wait_s(attempt, 1.0, 30.0, 900.0, wait, rng) or 30.0)


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    handle = await anyio.to_thread.run_sync(path.open, "rb")
    try:
        while chunk := await anyio.to_thread.run_sync(handle.read, CHUNK_BYTES):
            yield chunk
    finally:  # closed at once: aiohttp may cancel the body's writer mid-read, and an awaited
        handle.close()  # close would then never run (the file leaked)


async def _stream_to(chunks: AsyncIterator[bytes], destination: Path) -> None:
    """Write chunks to a new file, fsynced: it is read back after, possibly after a crash."""
    fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        async for chunk in chunks:
            await anyio.to_thread.run_sync(_write_all, fd, chunk)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
