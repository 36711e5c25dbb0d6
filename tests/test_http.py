"""The one exception boundary (run/http.py): a request fails as ConnectError when nothing was
sent, as AnswerTimeout or ConnectionLost once it was, never with aiohttp's own errors. Against a
real server on 127.0.0.1 with one route per behaviour."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp import web

from batchbanana.errors import AnswerTimeout, ConnectError, ConnectionLost
from batchbanana.run.http import HttpSession, read_at_most

DEAD = "http://127.0.0.1:9"  # the discard port: nothing listens there


def _close(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.close()


async def _ok(request: web.Request) -> web.Response:
    return web.Response(text="fine")


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(5)
    return web.Response(text="too late")


async def _drop(request: web.Request) -> web.Response:
    _close(request)
    return web.Response()  # never written: the connection is gone


async def _pieces(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(status=429)
    await response.prepare(request)
    for piece in (b"first half,", b" second half"):
        await response.write(piece)
        await asyncio.sleep(0.05)
    await response.write_eof()
    return response


async def _cut(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(status=int(request.match_info["status"]))
    response.content_length = 100
    await response.prepare(request)  # the headers, then the connection closes: no body at all
    await response.write(b"")
    _close(request)
    return response


@pytest_asyncio.fixture
async def server() -> AsyncIterator[tuple[str, list[str]]]:
    """A local server; yields its URL and the paths of the requests it received."""
    seen: list[str] = []

    @web.middleware
    async def record(request: web.Request, handler: web.Handler) -> web.StreamResponse:
        seen.append(request.path)
        return await handler(request)

    app = web.Application(middlewares=[record])
    app.router.add_route("*", "/ok", _ok)
    app.router.add_route("*", "/slow", _slow)
    app.router.add_route("*", "/drop", _drop)
    app.router.add_route("*", "/cut/{status}", _cut)
    app.router.add_route("*", "/pieces", _pieces)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}", seen
    await runner.cleanup()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("route", "expected"),
    [
        pytest.param("/slow", AnswerTimeout, id="no-answer-in-time"),
        pytest.param("/drop", ConnectionLost, id="dropped-after-sending"),
        pytest.param("/cut/200", ConnectionLost, id="body-cut-short"),
    ],
)
async def test_a_failure_after_sending_says_the_request_went_out(
    server: tuple[str, list[str]], route: str, expected: type[Exception]
) -> None:
    """Once the server has the request, a timeout is AnswerTimeout (billed) and a cut
    connection ConnectionLost (billed unknown), with aiohttp's error kept as the cause."""
    url, seen = server
    async with HttpSession() as http:
        with pytest.raises(expected) as caught:
            async with http.request("POST", url + route, data=b"{}", timeout_s=0.3) as response:
                await response.read()
    assert seen == [route]
    assert caught.value.__cause__ is not None


@pytest.mark.asyncio
@pytest.mark.parametrize("proxy", [None, DEAD], ids=["refused", "dead-proxy"])
async def test_no_connection_is_a_connect_error_and_nothing_was_sent(
    server: tuple[str, list[str]], proxy: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused connection, to the server or to the proxy HTTP_PROXY names, is ConnectError:
    the server received nothing, so a retry is safe."""
    url, seen = server
    if proxy is None:
        url = DEAD
    else:
        monkeypatch.setenv("HTTP_PROXY", proxy)
    async with HttpSession() as http:
        with pytest.raises(ConnectError):
            async with http.request("GET", url + "/ok", timeout_s=5):
                pass
    assert seen == []


@pytest.mark.asyncio
async def test_no_proxy_exempts_a_host_from_the_proxy(
    server: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host NO_PROXY names is reached directly, whatever HTTP_PROXY says."""
    url, seen = server
    monkeypatch.setenv("HTTP_PROXY", DEAD)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    async with HttpSession() as http, http.request("GET", url + "/ok", timeout_s=5) as response:
        assert await response.text() == "fine"
    assert seen == ["/ok"]


@pytest.mark.asyncio
async def test_an_error_body_cut_short_is_connection_lost(server: tuple[str, list[str]]) -> None:
    """read_at_most translates too: an error answer whose body is cut raises ConnectionLost."""
    url, _ = server
    async with HttpSession() as http, http.request("GET", url + "/cut/503", timeout_s=5) as answer:
        assert answer.status == 503
        with pytest.raises(ConnectionLost):
            await read_at_most(answer, 1000)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("limit", "expected"),
    [(1000, b"first half, second half"), (15, b"first half, sec")],
    ids=["whole", "limited"],
)
async def test_an_error_body_in_pieces_is_read_whole_up_to_the_limit(
    server: tuple[str, list[str]], limit: int, expected: bytes
) -> None:
    """read_at_most waits for every piece of a body (a 429's RetryInfo may come in the second),
    and never reads past its limit."""
    url, _ = server
    async with HttpSession() as http, http.request("GET", url + "/pieces", timeout_s=5) as answer:
        assert await read_at_most(answer, limit) == expected
