"""Running the simulator: in the caller's event loop, in a thread of its own for synchronous
callers, or in the foreground until a signal (`batchbanana simulate`)."""

from __future__ import annotations

import asyncio
import functools
import signal
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from typing import Any

from aiohttp import web

from batchbanana.simulator.app import create_app
from batchbanana.simulator.batch_handlers import BATCHES
from batchbanana.simulator.batches import BatchStore
from batchbanana.simulator.config import SimulatorConfig, describe_price_book
from batchbanana.simulator.handlers import STATE
from batchbanana.simulator.state import SimulatorState


class RunningSimulator:
    """A handle to a started simulator: its base URL, its books and its batches."""

    __slots__ = ("_batches", "_state", "url")

    def __init__(self, url: str, state: SimulatorState, batches: BatchStore) -> None:
        self.url = url
        self._state = state
        self._batches = batches

    def bill(self) -> dict[str, Any]:
        """The same JSON as GET /_sim/bill."""
        return self._state.bill_json()

    def stats(self) -> dict[str, Any]:
        """The same JSON as GET /_sim/stats."""
        return self._state.stats_json()

    def batches(self) -> list[dict[str, Any]]:
        """The same JSON as GET /_sim/batches: every batch created, oldest first."""
        return self._batches.summary()

    def reset(self) -> None:
        """Zero the bill, the stats and the directive counters."""
        self._state.reset()


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@asynccontextmanager
async def run_simulator(
    config: SimulatorConfig, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[RunningSimulator]:
    """Serve the simulator in the caller's event loop until the block exits."""
    app = create_app(config)
    # No access log: a `?key=` query string would put the API key in it.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = runner.addresses[0][1]
        yield RunningSimulator(_url(host, bound_port), app[STATE], app[BATCHES])
    finally:
        await runner.cleanup()


@contextmanager
def simulator_in_thread(
    config: SimulatorConfig, host: str = "127.0.0.1", port: int = 0
) -> Iterator[RunningSimulator]:
    """Serve the simulator from its own event loop in a daemon thread, for synchronous callers."""
    ready = threading.Event()
    started: list[RunningSimulator] = []
    failed: list[BaseException] = []
    stoppers: list[Callable[[], object]] = []

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        async with run_simulator(config, host, port) as sim:
            started.append(sim)
            stoppers.append(functools.partial(loop.call_soon_threadsafe, stop.set))
            ready.set()
            await stop.wait()

    def thread_main() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # handed to the caller's thread instead of printed here
            failed.append(exc)
        finally:
            ready.set()

    thread = threading.Thread(target=thread_main, name="batchbanana-simulator", daemon=True)
    thread.start()
    ready.wait()
    if not started:
        thread.join()
        raise failed[0] if failed else RuntimeError("the simulator thread stopped before starting")
    try:
        yield started[0]
    finally:
        stoppers[0]()
        thread.join(timeout=10)


async def _serve_until_signal(config: SimulatorConfig, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if sys.platform != "win32":  # there, Ctrl-C arrives as KeyboardInterrupt instead
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
    async with run_simulator(config, host, port) as sim:
        print(f"batchbanana simulator listening on {sim.url}", file=sys.stderr, flush=True)
        print(f"price book: {describe_price_book(config)}", file=sys.stderr, flush=True)
        await stop.wait()


def serve(config: SimulatorConfig, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve until SIGINT or SIGTERM, after one banner line on stderr; return cleanly on Ctrl-C."""
    with suppress(KeyboardInterrupt):
        asyncio.run(_serve_until_signal(config, host, port))
