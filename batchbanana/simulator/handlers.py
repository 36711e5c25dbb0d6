"""The HTTP side of generateContent: each request read, checked, answered (faults included) and
billed; the routes to it and to the /_sim/ books; and the key check and error answer that the
other endpoints share."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable

from aiohttp import web

from batchbanana.simulator.answers import Answer, success_answer
from batchbanana.simulator.directives import (
    BILLED_FAULTS,
    DirectiveError,
    parse_directives,
    plan_request,
    random_plan,
)
from batchbanana.simulator.faults import error_json, fault_answer, load_refusal
from batchbanana.simulator.requests import ApiError, invalid_argument, read_request
from batchbanana.simulator.rules import MAX_BODY_BYTES, MODELS
from batchbanana.simulator.state import SimulatorState

# The one state the handlers share; create_app puts it in the app, server.py hands it out.
STATE = web.AppKey("batchbanana_simulator_state", SimulatorState)


def api_key(request: web.Request) -> str:
    """The key from `Authorization: Bearer`, `x-goog-api-key` or `?key=`; "" when none."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-goog-api-key", "").strip() or request.query.get("key", "").strip()


def require_key(request: web.Request) -> str:
    """The request's API key (any key will do); ApiError 401 when it carries none."""
    key = api_key(request)
    if not key:
        raise ApiError(
            401,
            "UNAUTHENTICATED",
            "Request is missing required authentication "
            "credential. Expected an API key in x-goog-api-key or Authorization.",
        )
    return key


def error_response(exc: ApiError, headers: dict[str, str] | None = None) -> web.Response:
    """The error JSON Google answers, with its HTTP code."""
    return web.Response(
        status=exc.code,
        body=error_json(exc.code, exc.status, exc.message),
        content_type="application/json",
        charset="UTF-8",
        headers=headers,
    )


def answering_errors(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A handler that answers an ApiError it raises as Google's error JSON."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return error_response(exc)

    return wrapped


async def _decide(request: web.Request, state: SimulatorState) -> Answer:
    """Read and check the request, then choose its answer (and whether it is billed)."""
    model, _, method = request.match_info["name"].partition(":")
    key = require_key(request)
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
    elif (refusal := state.admit()) is not None:
        return load_refusal(refusal, model, state.config.rpm)  # at once, and not billed
    else:
        try:
            answer = await success_answer(state.images, model, rule, req, plan)
        except BaseException:
            state.generated()  # admitted, but it will never be generated
            raise
        answer.generating = True
    if plan.fault is None or plan.fault in BILLED_FAULTS:  # the model ran: the provider bills
        answer.price_usd = state.price(model, req.image_size or "1K", answer.output_images)
    answer.delay_s = plan.slow_s if plan.slow_s is not None else state.latency()
    return answer


def _close(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.close()


async def _send(request: web.Request, state: SimulatorState, answer: Answer) -> web.StreamResponse:
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
    state = request.app[STATE]
    state.enter()
    answer: Answer | None = None
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
        if answer is not None and answer.generating:
            state.generated()
        state.leave()


async def _bill(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].bill_json())


async def _stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].stats_json())


async def _reset(request: web.Request) -> web.Response:
    request.app[STATE].reset()
    return web.json_response({"reset": True})


def add_routes(app: web.Application, versions: tuple[str, ...]) -> None:
    """Route generateContent under every API version (after any other `models/` route: this one
    takes every method), and the /_sim/ books."""
    for version in versions:
        app.router.add_post(f"/{version}/models/{{name}}", _generate_content)
    app.router.add_get("/_sim/bill", _bill)
    app.router.add_get("/_sim/stats", _stats)
    app.router.add_post("/_sim/reset", _reset)
