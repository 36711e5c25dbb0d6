"""The provider's books, the HTTP handlers, and running the server (in-process, in a thread,
or in the foreground)."""

from __future__ import annotations

import asyncio
import functools
import math
import random
import signal
import sys
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from decimal import Decimal
from typing import Any

from aiohttp import web

from batchbanana.simulator.answers import Answer, error_json, fault_answer, success_answer
from batchbanana.simulator.config import SimulatorConfig, describe_price_book
from batchbanana.simulator.directives import (
    BILLED_FAULTS,
    DirectiveError,
    parse_directives,
    plan_request,
    random_plan,
)
from batchbanana.simulator.images import ImageCache
from batchbanana.simulator.requests import ApiError, invalid_argument, read_request
from batchbanana.simulator.rules import MAX_BODY_BYTES, MODELS, book_price


class _State:
    """Counters, the bill and the fault RNG of one simulator."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.images = ImageCache(config.image_bytes)
        self._lock = threading.Lock()
        self._requests = 0
        self._in_flight = 0
        self._max_in_flight = 0
        self._by_prompt: Counter[str] = Counter()
        self._by_status: Counter[str] = Counter()
        self._billed_requests = 0
        self._billed_usd = Decimal(0)

    def price(self, model: str, image_size: str, output_images: int) -> Decimal:
        if self.config.price_usd is not None:
            return Decimal(str(self.config.price_usd(model, image_size)))
        price = book_price(self.config.price_book, model, image_size)
        # Google's list prices are per output image; a billed answer without one costs one.
        return price * max(1, output_images) if self.config.price_book == "google" else price

    def enter(self) -> None:
        with self._lock:
            self._requests += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)

    def leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def count_prompt(self, prompt: str) -> int:
        """Count a request with this prompt; return how many came before it (since reset)."""
        with self._lock:
            index = self._by_prompt[prompt]
            self._by_prompt[prompt] = index + 1
            return index

    def count_status(self, status: str) -> None:
        with self._lock:
            self._by_status[status] += 1

    def bill(self, price_usd: Decimal) -> None:
        with self._lock:
            self._billed_requests += 1
            self._billed_usd += price_usd

    def bill_json(self) -> dict[str, Any]:
        with self._lock:
            return {
                "billed_requests": self._billed_requests,
                "billed_usd": round(float(self._billed_usd), 6),
                "requests": self._requests,
            }

    def stats_json(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self._requests,
                "in_flight": self._in_flight,
                "max_in_flight": self._max_in_flight,
                "by_prompt": dict(self._by_prompt),
                "by_status": dict(self._by_status),
                "billed_requests": self._billed_requests,
                "billed_usd": round(float(self._billed_usd), 6),
            }

    def reset(self) -> None:
        with self._lock:
            self._requests = 0
            self._max_in_flight = self._in_flight  # requests still running stay counted
            self._by_prompt.clear()
            self._by_status.clear()
            self._billed_requests = 0
            self._billed_usd = Decimal(0)


_STATE = web.AppKey("batchbanana_simulator_state", _State)


# ---------------------------------------------------------------------------------------------
# HTTP handlers
# ---------------------------------------------------------------------------------------------


def _api_key(request: web.Request) -> str:
    """The key from `Authorization: Bearer`, `x-goog-api-key` or `?key=`; "" when none."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-goog-api-key", "").strip() or request.query.get("key", "").strip()


async def _decide(request: web.Request, state: _State) -> Answer:
    """Read and check the request, then choose its answer (and whether it is billed)."""
    model, _, method = request.match_info["name"].partition(":")
    key = _api_key(request)
    if not key:
        raise ApiError(
            401,
            "UNAUTHENTICATED",
            "Request is missing required authentication "
            "credential. Expected an API key in x-goog-api-key or Authorization.",
        )
    rule = MODELS.get(model)
    if rule is None or method != "generateContent":
        raise ApiError(
            404,
            "NOT_FOUND",
            f"models/{model} is not found for API version v1beta, "
            f"or {method or 'this method'} is not supported for it.",
        )
    too_big = invalid_argument(f"Request payload size exceeds the limit: {MAX_BODY_BYTES} bytes.")
    if (request.content_length or 0) >= MAX_BODY_BYTES:
        raise too_big
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise too_big from None
    if len(raw) > 1_000_000:  # decoding megabytes of base64 would stall every other request
        req = await asyncio.to_thread(read_request, rule, model, raw)
    else:
        req = read_request(rule, model, raw)
    try:
        directives = parse_directives(req.prompt)
    except DirectiveError as exc:
        raise invalid_argument(str(exc)) from None
    index = state.count_prompt(req.prompt)
    plan = (
        plan_request(directives, index)
        if not directives.empty
        else random_plan(state.config, state.rng)
    )
    if plan.fault is not None:
        answer = fault_answer(plan.fault, plan, model, key)
    else:
        answer = await success_answer(state.images, model, rule, req, plan)
    if plan.fault is None or plan.fault in BILLED_FAULTS:  # the model ran: the provider bills
        answer.price_usd = state.price(model, req.image_size or "1K", answer.output_images)
    answer.delay_s = plan.slow_s if plan.slow_s is not None else state.config.latency_s
    return answer


def _close(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.close()


async def _send(request: web.Request, state: _State, answer: Answer) -> web.StreamResponse:
    """Bill (when the model runs, before any wait), wait, then deliver the answer its way."""
    if answer.price_usd is not None:
        state.bill(answer.price_usd)
    state.count_status("drop" if answer.delivery == "drop" else str(answer.status))
    if answer.delay_s > 0:
        await asyncio.sleep(answer.delay_s)
    headers = {**answer.headers, "Content-Type": f"{answer.content_type}; charset=UTF-8"}
    if answer.delivery == "normal":
        return web.Response(status=answer.status, body=answer.body, headers=headers)
    if answer.delivery == "drop":
        _close(request)
        return web.Response()  # never written: aiohttp sees the closed transport and moves on
    response = web.StreamResponse(status=answer.status, headers=headers)
    response.content_length = len(answer.body)
    try:
        await response.prepare(request)
        if answer.delivery == "cut":
            await response.write(answer.body[: len(answer.body) // 2])
            _close(request)  # after the buffered half is flushed; the client sees a short body
        else:
            pieces = min(50, len(answer.body)) or 1
            step = math.ceil(len(answer.body) / pieces)
            for start in range(0, len(answer.body), step):
                await asyncio.sleep(answer.trickle_s / pieces)
                await response.write(answer.body[start : start + step])
    except ConnectionResetError:
        pass  # the client went away; the provider bills anyway and nobody is left to tell
    return response


async def _generate_content(request: web.Request) -> web.StreamResponse:
    state = request.app[_STATE]
    state.enter()
    try:
        try:
            answer = await _decide(request, state)
        except ApiError as exc:
            answer = Answer(
                exc.code,
                error_json(exc.code, exc.status, exc.message),
                delay_s=state.config.latency_s,
            )
        return await _send(request, state, answer)
    finally:
        state.leave()


async def _bill(request: web.Request) -> web.Response:
    return web.json_response(request.app[_STATE].bill_json())


async def _stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[_STATE].stats_json())


async def _reset(request: web.Request) -> web.Response:
    request.app[_STATE].reset()
    return web.json_response({"reset": True})


def create_app(config: SimulatorConfig) -> web.Application:
    """The simulator as an aiohttp application (routes, state and bill included)."""
    app = web.Application(client_max_size=MAX_BODY_BYTES - 1)
    app[_STATE] = _State(config)
    # Google serves the same method under every API version; the official google-genai client
    # uses /v1 by default in recent releases and /v1beta in older ones.
    for version in ("v1beta", "v1", "v1alpha"):
        app.router.add_post(f"/{version}/models/{{name}}", _generate_content)
    app.router.add_get("/_sim/bill", _bill)
    app.router.add_get("/_sim/stats", _stats)
    app.router.add_post("/_sim/reset", _reset)
    return app


# ---------------------------------------------------------------------------------------------
# Running it
# ---------------------------------------------------------------------------------------------


class RunningSimulator:
    """A handle to a started simulator: its base URL and its books."""

    __slots__ = ("_state", "url")

    def __init__(self, url: str, state: _State) -> None:
        self.url = url
        self._state = state

    def bill(self) -> dict[str, Any]:
        """The same JSON as GET /_sim/bill."""
        return self._state.bill_json()

    def stats(self) -> dict[str, Any]:
        """The same JSON as GET /_sim/stats."""
        return self._state.stats_json()

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
        yield RunningSimulator(_url(host, bound_port), app[_STATE])
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
