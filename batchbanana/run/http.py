"""The one way batchbanana speaks HTTP, for provider requests and URL downloads alike.

One proxy policy (contract section 2): HTTPS_PROXY / HTTP_PROXY / ALL_PROXY name the proxy for a
URL unless NO_PROXY exempts its host, by the standard library's reading of those variables; TLS
checks against the default certificates, which SSL_CERT_FILE and SSL_CERT_DIR replace.

One exception boundary: aiohttp's and the socket's errors become errors.TransportError here, and
which subclass says what reached the server. ConnectError: the request's headers were never
written, so nothing was sent and a retry is safe. AnswerTimeout and ConnectionLost: the request
went out, so the provider may have billed it (contract section 5).
"""

from __future__ import annotations

import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import aiohttp

from batchbanana.errors import AnswerTimeout, ConnectError, ConnectionLost, describe_error


def proxy_for(url: str) -> str | None:
    """The proxy HTTPS_PROXY / HTTP_PROXY / ALL_PROXY name for a URL, unless NO_PROXY exempts it."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    # proxy_bypass_environment is public in CPython but missing from typeshed's stubs.
    if urllib.request.proxy_bypass_environment(host):  # type: ignore[attr-defined]
        return None
    proxies = urllib.request.getproxies_environment()
    return proxies.get(parts.scheme) or proxies.get("all")


class _SendProgress:
    """Whether a request's headers were written: before that, nothing can have been billed."""

    __slots__ = ("sent",)

    def __init__(self, sent: bool = False) -> None:
        self.sent = sent


async def _mark_sent(
    session: aiohttp.ClientSession, context: Any, params: aiohttp.TraceRequestHeadersSentParams
) -> None:
    progress = getattr(context, "trace_request_ctx", None)
    if isinstance(progress, _SendProgress):
        progress.sent = True


@contextmanager
def _translated(progress: _SendProgress) -> Iterator[None]:
    """Raise aiohttp's and the socket's errors as TransportError, by what reached the server."""
    try:
        yield
    except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
        raise ConnectError(describe_error(exc)) from exc
    except TimeoutError as exc:
        if not progress.sent:  # the total timeout fired while still connecting
            raise ConnectError(describe_error(exc)) from exc
        raise AnswerTimeout(describe_error(exc)) from exc
    except (aiohttp.ClientError, OSError) as exc:
        if not progress.sent:
            raise ConnectError(describe_error(exc)) from exc
        raise ConnectionLost(describe_error(exc)) from exc


class HttpSession:
    """One aiohttp session: every request through it takes its proxy from proxy_for and raises
    TransportError, never aiohttp's errors."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        # Looked up once per scheme and host: aiohttp's trust_env would re-read the environment
        # and ~/.netrc on every request, a cost that shows at thousands of requests.
        self._proxies: dict[tuple[str, str], str | None] = {}

    async def __aenter__(self) -> HttpSession:
        # The pool bounds the requests in flight; the connector must never queue them, or the
        # wait for a free connection would eat into each request's timeout.
        connector = aiohttp.TCPConnector(limit=0, enable_cleanup_closed=True)
        tracing = aiohttp.TraceConfig()
        tracing.on_request_headers_sent.append(_mark_sent)
        self._session = aiohttp.ClientSession(connector=connector, trace_configs=[tracing])
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _proxy(self, url: str) -> str | None:
        parts = urllib.parse.urlsplit(url)
        key = (parts.scheme, parts.hostname or "")
        if key not in self._proxies:
            self._proxies[key] = proxy_for(url)
        return self._proxies[key]

    @asynccontextmanager
    async def request(
        self,
        method: str,
        url: str,
        *,
        timeout_s: float,
        connect_timeout_s: float | None = None,
        data: bytes | AsyncIterator[bytes] | None = None,  # an iterator streams an upload
        headers: Mapping[str, str] | None = None,
        max_redirects: int = 0,
        read_timeout_s: float | None = None,  # the longest silence while reading the answer
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """The response to one request, its body read inside the block; a network failure there
        or before raises ConnectError (nothing sent), AnswerTimeout or ConnectionLost (sent)."""
        assert self._session is not None, "use HttpSession as an async context manager"
        progress = _SendProgress()
        with _translated(progress):
            async with self._session.request(
                method,
                url,
                data=data,
                headers=headers,
                timeout=aiohttp.ClientTimeout(
                    total=timeout_s, sock_connect=connect_timeout_s, sock_read=read_timeout_s
                ),
                # A redirected POST could be sent, and billed, twice: none unless asked for.
                allow_redirects=max_redirects > 0,
                max_redirects=max_redirects,
                trace_request_ctx=progress,
                proxy=self._proxy(url),
            ) as response:
                yield response


async def read_at_most(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """A response's body, or its first `limit` bytes; a network failure raises AnswerTimeout or
    ConnectionLost (its headers came, so the request was sent)."""
    body = bytearray()
    with _translated(_SendProgress(sent=True)):
        # One read returns whatever has arrived: an error JSON in two pieces would be cut, and a
        # per-day quota or a RetryInfo in its second half missed.
        while len(body) < limit and (piece := await response.content.read(limit - len(body))):
            body += piece
    return bytes(body)
