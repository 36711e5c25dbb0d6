"""The Batch API over HTTP, as Google's v1beta answers it: create a batch (inline requests or an
uploaded JSONL file), get it, list them page by page, cancel and delete one; and GET /_sim/batches,
the simulator's own list of every batch created."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from batchbanana.simulator.batch_input import MAX_INLINE_BYTES, BatchInput, read_batch
from batchbanana.simulator.batch_work import run_batch, stop_batch
from batchbanana.simulator.batches import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    Batch,
    BatchStore,
    read_page_token,
)
from batchbanana.simulator.config import SimulatorConfig
from batchbanana.simulator.directives import BATCH_ENDINGS
from batchbanana.simulator.file_handlers import FILES, not_found
from batchbanana.simulator.handlers import STATE, answering_errors, require_key
from batchbanana.simulator.operations import list_pieces, operation_pieces, send_pieces
from batchbanana.simulator.requests import ApiError, invalid_argument
from batchbanana.simulator.rules import MODELS

BATCHES = web.AppKey("batchbanana_simulator_batches", BatchStore)


def _ending(config: SimulatorConfig, spec: BatchInput) -> tuple[str, int]:
    """How the batch ends (the first batch directive, else batch_end) and how many downloads of
    its responses file answer 503 (the most any directive or download_503 asks)."""
    ending: str | None = None
    downloads_503 = config.download_503
    for line in spec.lines:
        for directive in line.directives.batch:
            if directive.name in BATCH_ENDINGS:
                ending = ending or directive.name.removeprefix("batch_")
            else:
                downloads_503 = max(downloads_503, directive.count or 1)
    return ending or config.batch_end, downloads_503


def _too_big() -> ApiError:
    return invalid_argument(
        f"Request payload size exceeds the limit: {MAX_INLINE_BYTES} bytes. HINT: upload the "
        "requests as a JSONL file through the Files API and send its name instead"
    )


@answering_errors
async def _create(request: web.Request) -> web.StreamResponse:
    key = require_key(request)
    model = request.match_info["model"]
    rule = MODELS.get(model)
    if rule is None:
        raise invalid_argument(
            f"models/{model} is not found for API version v1beta, or does not support "
            "batchGenerateContent."
        )
    if (request.content_length or 0) > MAX_INLINE_BYTES:
        raise _too_big()
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _too_big() from None
    files, state, store = request.app[FILES], request.app[STATE], request.app[BATCHES]

    def find_file(name: str) -> Path | None:
        stored = files.files.get(name.removeprefix("files/"))
        if not name.startswith("files/") or stored is None or stored.source != "UPLOADED":
            return None
        return stored.path

    spec = await asyncio.to_thread(read_batch, raw, model, rule, find_file)
    ending, downloads_503 = _ending(state.config, spec)
    batch = store.create(model, spec, key, ending, downloads_503)
    state.count_batch()
    batch.task = asyncio.create_task(run_batch(batch, store, state, files))
    return await send_pieces(request, operation_pieces(batch))


def _batch(request: web.Request) -> Batch:
    require_key(request)
    batch_id = request.match_info["batch_id"]
    batch = request.app[BATCHES].get(batch_id)
    if batch is None:
        raise not_found(f"Batch batches/{batch_id}")
    return batch


@answering_errors
async def _get(request: web.Request) -> web.StreamResponse:
    return await send_pieces(request, operation_pieces(_batch(request)))


@answering_errors
async def _list(request: web.Request) -> web.StreamResponse:
    require_key(request)
    raw_size = request.query.get("pageSize", request.query.get("page_size", ""))
    try:
        size = int(raw_size) if raw_size else 0
    except ValueError:
        raise invalid_argument(f"pageSize {raw_size!r} is not a number") from None
    if size < 0:
        raise invalid_argument("pageSize must not be negative")
    size = min(size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    token = request.query.get("pageToken", request.query.get("page_token", ""))
    before = read_page_token(token) if token else None
    if token and before is None:
        raise invalid_argument(f"pageToken {token!r} is not valid; HINT: send nextPageToken as is")
    batches, next_token = request.app[BATCHES].page(size, before)
    return await send_pieces(request, list_pieces(batches, next_token))


@answering_errors
async def _cancel(request: web.Request) -> web.StreamResponse:
    await stop_batch(_batch(request), "cancel")
    return web.json_response({})


@answering_errors
async def _delete(request: web.Request) -> web.StreamResponse:
    batch = _batch(request)
    await stop_batch(batch, "delete")
    batch.deleted = True
    return web.json_response({})


async def _sim_batches(request: web.Request) -> web.Response:
    return web.json_response(request.app[BATCHES].summary())


def add_routes(app: web.Application, versions: tuple[str, ...]) -> None:
    """Route the Batch API under every API version (before generateContent's `models/` route)."""
    app[BATCHES] = BatchStore()
    for version in versions:
        app.router.add_post(f"/{version}/models/{{model:[^/:]+}}:batchGenerateContent", _create)
        app.router.add_get(f"/{version}/batches", _list)
        app.router.add_get(f"/{version}/batches/{{batch_id:[^/:]+}}", _get)
        app.router.add_delete(f"/{version}/batches/{{batch_id:[^/:]+}}", _delete)
        app.router.add_post(f"/{version}/batches/{{batch_id:[^/:]+}}:cancel", _cancel)
    app.router.add_get("/_sim/batches", _sim_batches)
