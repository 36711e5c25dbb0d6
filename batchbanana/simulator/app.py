"""The simulator as one aiohttp application: every route (Batch API, Files API, generateContent,
the /_sim/ books) and, when it stops, the batches' work ended and the files' directory removed."""

from __future__ import annotations

import asyncio

from aiohttp import web

from batchbanana.simulator.batch_handlers import BATCHES
from batchbanana.simulator.batch_handlers import add_routes as add_batch_routes
from batchbanana.simulator.batch_work import stop_all
from batchbanana.simulator.config import SimulatorConfig
from batchbanana.simulator.file_handlers import FILES
from batchbanana.simulator.file_handlers import add_routes as add_file_routes
from batchbanana.simulator.handlers import STATE
from batchbanana.simulator.handlers import add_routes as add_generate_routes
from batchbanana.simulator.rules import MAX_BODY_BYTES
from batchbanana.simulator.state import SimulatorState

# Google serves the same methods under every API version; the official google-genai client
# uses /v1 by default in recent releases and /v1beta in older ones.
VERSIONS = ("v1beta", "v1", "v1alpha")


async def _stop(app: web.Application) -> None:
    await stop_all(app[BATCHES])  # first: their work writes into the files' directory
    await asyncio.to_thread(app[FILES].close)


def create_app(config: SimulatorConfig) -> web.Application:
    """The simulator as an aiohttp application (routes, state, bill, batches and files)."""
    app = web.Application(client_max_size=MAX_BODY_BYTES - 1)
    app[STATE] = SimulatorState(config)
    add_batch_routes(app, VERSIONS)  # first: generateContent's `models/{name}` takes any method
    add_file_routes(app, VERSIONS)
    add_generate_routes(app, VERSIONS)
    app.on_cleanup.append(_stop)
    return app
