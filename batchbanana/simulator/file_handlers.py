"""The Files API over HTTP: the resumable upload protocol (start, chunks, finalize), a file's
metadata, its deletion, and the download of generated files (streamed from disk, 503s injected)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from batchbanana.simulator.faults import error_json
from batchbanana.simulator.files import (
    MAX_FILE_BYTES,
    UPLOAD_GRANULARITY,
    FileStore,
    StoredFile,
    UploadSession,
    file_json,
    valid_file_id,
)
from batchbanana.simulator.handlers import answering_errors, error_response, require_key
from batchbanana.simulator.requests import ApiError, invalid_argument, pick

FILES = web.AppKey("batchbanana_simulator_files", FileStore)
_FINAL = {"X-Goog-Upload-Status": "final"}


def base_url(request: web.Request) -> str:
    """This server's address as the client reached it (for the URLs answers carry)."""
    return str(request.url.origin())


def not_found(what: str) -> ApiError:
    """404 NOT_FOUND for a resource that does not exist (or was deleted)."""
    return ApiError(404, "NOT_FOUND", f"{what} not found.")


def _declared_size(request: web.Request, file: Mapping[str, Any]) -> int | None:
    raw = request.headers.get("X-Goog-Upload-Header-Content-Length") or pick(file, "sizeBytes")
    if raw is None:
        return None
    try:
        size = int(raw)
    except (TypeError, ValueError):
        raise invalid_argument(
            f"X-Goog-Upload-Header-Content-Length {raw!r} is not a number"
        ) from None
    if not 0 <= size <= MAX_FILE_BYTES:
        raise invalid_argument(f"The file is {size} bytes; the limit is {MAX_FILE_BYTES} bytes.")
    return size


async def _start(request: web.Request, store: FileStore) -> web.Response:
    """`X-Goog-Upload-Command: start`: open a session and answer its upload URL."""
    require_key(request)
    if request.headers.get("X-Goog-Upload-Protocol", "").strip().lower() != "resumable":
        raise invalid_argument(
            "Only resumable uploads are supported here; HINT: send "
            "X-Goog-Upload-Protocol: resumable and X-Goog-Upload-Command: start"
        )
    raw = await request.read()
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError:
        raise invalid_argument("Invalid JSON payload received.") from None
    file = pick(body, "file") if isinstance(body, Mapping) else None
    file = file if file is not None else {}
    if not isinstance(file, Mapping):
        raise invalid_argument("file must be an object")
    name = pick(file, "name")
    file_id = None
    if name:
        file_id = str(name).removeprefix("files/")
        if not valid_file_id(file_id):
            raise invalid_argument(
                f"Invalid file name {name!r}; HINT: up to 40 lowercase letters, digits or dashes"
            )
        if store.taken(file_id):
            raise ApiError(409, "ALREADY_EXISTS", f"File files/{file_id} already exists.")
    mime = request.headers.get("X-Goog-Upload-Header-Content-Type") or pick(file, "mimeType")
    if not mime:
        raise invalid_argument(
            "The file's MIME type is required; HINT: send X-Goog-Upload-Header-Content-Type"
        )
    session = store.start(
        file_id, str(mime), pick(file, "displayName"), _declared_size(request, file)
    )
    url = (
        f"{base_url(request)}{request.path}?upload_id={session.upload_id}&upload_protocol=resumable"
    )
    return web.Response(
        headers={
            "X-Goog-Upload-Status": "active",
            "X-Goog-Upload-URL": url,
            "X-Goog-Upload-Control-URL": url,
            "X-Goog-Upload-Chunk-Granularity": str(UPLOAD_GRANULARITY),
        }
    )


def _upload_error(message: str, session: UploadSession | None, code: int = 400) -> web.Response:
    headers = dict(_FINAL)
    if session is not None:  # the session lives on: say how much it holds, so a client can resume
        headers = {
            "X-Goog-Upload-Status": "active",
            "X-Goog-Upload-Size-Received": str(session.received),
        }
    status = "INVALID_ARGUMENT" if code == 400 else "NOT_FOUND"
    return error_response(ApiError(code, status, message), headers)


async def _receive(request: web.Request, store: FileStore, session: UploadSession) -> web.Response:
    """Append one chunk at its offset; finalize when asked. Bytes go to disk as they arrive."""
    commands = {
        c.strip() for c in request.headers.get("X-Goog-Upload-Command", "").lower().split(",")
    }
    if commands == {"query"}:
        return web.Response(
            headers={
                "X-Goog-Upload-Status": "active",
                "X-Goog-Upload-Size-Received": str(session.received),
            }
        )
    if not commands & {"upload", "finalize"} or not commands <= {"upload", "finalize"}:
        return _upload_error("X-Goog-Upload-Command must be upload, finalize or query", session)
    try:
        offset = int(request.headers.get("X-Goog-Upload-Offset", ""))
    except ValueError:
        return _upload_error("X-Goog-Upload-Offset is required", session)
    if offset != session.received:
        return _upload_error(
            f"X-Goog-Upload-Offset is {offset}, but {session.received} bytes have been received",
            session,
        )
    finalize = "finalize" in commands
    length = request.content_length
    if not finalize and length is not None and length % UPLOAD_GRANULARITY:
        return _upload_error(
            f"A chunk that does not finalize must be a multiple of {UPLOAD_GRANULARITY} bytes; "
            f"this one is {length}",
            session,
        )
    async for piece in request.content.iter_chunked(1 << 20):
        limit = MAX_FILE_BYTES if session.declared_bytes is None else session.declared_bytes
        if session.received + len(piece) > limit:
            store.abandon(session)
            return _upload_error(f"More bytes than the {limit} allowed or declared", None)
        await asyncio.to_thread(session.write, piece)
    if not finalize:
        return web.Response(
            headers={
                "X-Goog-Upload-Status": "active",
                "X-Goog-Upload-Size-Received": str(session.received),
            }
        )
    if session.declared_bytes is not None and session.received != session.declared_bytes:
        store.abandon(session)
        return _upload_error(
            f"Finalized after {session.received} bytes; {session.declared_bytes} were declared",
            None,
        )
    stored = store.finalize(session)
    return web.json_response({"file": file_json(stored, base_url(request))}, headers=_FINAL)


async def _upload(request: web.Request) -> web.StreamResponse:
    store = request.app[FILES]
    upload_id = request.query.get("upload_id")
    if upload_id is None:
        try:
            return await _start(request, store)
        except ApiError as exc:
            return error_response(exc)
    session = store.sessions.get(upload_id)
    if session is None:
        return _upload_error(
            f"No upload session {upload_id!r} (finished, failed or unknown)", None, 404
        )
    if session.busy:
        return _upload_error("Another chunk of this upload is still being received", session)
    session.busy = True
    try:
        return await _receive(request, store, session)
    finally:
        session.busy = False


def _stored(request: web.Request) -> StoredFile:
    require_key(request)
    file_id = request.match_info["file_id"]
    stored = request.app[FILES].files.get(file_id)
    if stored is None:
        raise not_found(f"File files/{file_id}")
    return stored


@answering_errors
async def _get(request: web.Request) -> web.StreamResponse:
    return web.json_response(file_json(_stored(request), base_url(request)))


@answering_errors
async def _delete(request: web.Request) -> web.StreamResponse:
    stored = _stored(request)
    request.app[FILES].delete(stored.file_id)
    return web.json_response({})


@answering_errors
async def _download(request: web.Request) -> web.StreamResponse:
    stored = _stored(request)
    if request.query.get("alt") != "media":
        raise invalid_argument("Downloads need alt=media; HINT: add ?alt=media")
    if stored.source != "GENERATED":
        raise invalid_argument(
            f"files/{stored.file_id} was uploaded; only generated files can be downloaded"
        )
    if stored.downloads_503_left > 0:
        stored.downloads_503_left -= 1
        body = error_json(503, "UNAVAILABLE", "The service is currently unavailable.")
        return web.Response(status=503, body=body, content_type="application/json")
    return web.FileResponse(stored.path, headers={"Content-Type": stored.mime_type})


def add_routes(app: web.Application, versions: tuple[str, ...]) -> None:
    """Route the Files API under every API version, Google's upload and download paths included."""
    app[FILES] = FileStore()
    for version in versions:
        app.router.add_post(f"/upload/{version}/files", _upload)
        app.router.add_get(f"/{version}/files/{{file_id:[^/:]+}}", _get)
        app.router.add_delete(f"/{version}/files/{{file_id:[^/:]+}}", _delete)
        app.router.add_get(f"/{version}/files/{{file_id:[^/:]+}}:download", _download)
        app.router.add_get(f"/download/{version}/files/{{file_id:[^/:]+}}:download", _download)
