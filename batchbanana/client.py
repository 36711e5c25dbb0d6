"""One aiohttp session for the job, and one attempt at a time through it.

This is the one exception boundary: low-level errors become outcomes here, and the knowledge of
what was sent (a refused connection sent nothing; a timeout after sending is billed) lives here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from batchbanana.outcomes import Outcome, Verdict, classify_answer, classify_error
from batchbanana.wire import (
    AnswerImage,
    BadResponse,
    auth_headers,
    parse_answer,
    parse_error,
    parse_retry_after,
    request_url,
)

ERROR_BODY_LIMIT = 256 * 1024  # bytes of an error answer worth reading


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """Everything one request produced, ready for the ledger."""

    outcome: Outcome
    http_status: int | None
    latency_s: float
    error: str | None = None
    images: tuple[AnswerImage, ...] = ()
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    text: str | None = None
    response_id: str | None = None
    model_version: str | None = None
    server_wait_s: float | None = None  # Retry-After or RetryInfo, whichever is longer
    job_stop: str | None = None


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__


class ProviderClient:
    """Sends generateContent requests to one endpoint with one key."""

    def __init__(self, endpoint: str, auth: str, api_key: str, connect_timeout_s: float) -> None:
        self.endpoint = endpoint
        self._headers = {"Content-Type": "application/json", **auth_headers(auth, api_key)}
        self._connect_timeout_s = connect_timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ProviderClient:
        # The pool bounds the requests in flight; the connector must never queue them, or the
        # wait for a free connection would eat into each request's timeout.
        connector = aiohttp.TCPConnector(limit=0, enable_cleanup_closed=True)
        self._session = aiohttp.ClientSession(connector=connector, trust_env=True)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def generate(self, model: str, body: bytes, timeout_s: float) -> AttemptResult:
        """Send one request and classify how it ended. Never raises for network trouble."""
        assert self._session is not None, "use ProviderClient as an async context manager"
        timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=self._connect_timeout_s)
        started = time.monotonic()
        status: int | None = None

        def elapsed() -> float:
            return round(time.monotonic() - started, 3)

        try:
            async with self._session.post(
                request_url(self.endpoint, model),
                data=body,
                headers=self._headers,
                timeout=timeout,
                allow_redirects=False,  # a redirected POST could be sent, and billed, twice
            ) as response:
                status = response.status
                if status == 200:
                    payload = await response.read()
                    return self._answered(payload, elapsed())
                error_body = await response.content.read(ERROR_BODY_LIMIT)
                return self._refused(status, error_body, response.headers, elapsed())
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            return AttemptResult(
                Outcome.CONNECT_ERROR, None, elapsed(), f"no connection: {_describe(exc)}"
            )
        except TimeoutError:
            return AttemptResult(
                Outcome.TIMEOUT,
                status,
                elapsed(),
                f"no full answer within {timeout_s:g} s (billed: the provider charges disconnects)",
            )
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, OSError) as exc:
            if status == 200:
                return AttemptResult(
                    Outcome.BAD_RESPONSE, status, elapsed(), f"answer cut off: {_describe(exc)}"
                )
            return AttemptResult(
                Outcome.SERVER_ERROR,
                status,
                elapsed(),
                f"connection lost after sending: {_describe(exc)}",
            )
        except aiohttp.ClientError as exc:
            outcome = Outcome.BAD_RESPONSE if status == 200 else Outcome.SERVER_ERROR
            return AttemptResult(outcome, status, elapsed(), _describe(exc))

    def _answered(self, payload: bytes, latency_s: float) -> AttemptResult:
        try:
            answer = parse_answer(payload)
        except BadResponse as exc:
            return AttemptResult(Outcome.BAD_RESPONSE, 200, latency_s, str(exc))
        verdict = classify_answer(answer)
        return AttemptResult(
            verdict.outcome,
            200,
            latency_s,
            verdict.error,
            images=answer.images if verdict.outcome is Outcome.OK else (),
            finish_reason=answer.finish_reason or answer.block_reason,
            usage=answer.usage,
            text=answer.text,
            response_id=answer.response_id,
            model_version=answer.model_version,
        )

    def _refused(self, status: int, body: bytes, headers: Any, latency_s: float) -> AttemptResult:
        info = parse_error(body)
        verdict: Verdict = classify_error(status, info)
        waits = [
            wait
            for wait in (parse_retry_after(headers.get("Retry-After")), info.retry_delay_s)
            if wait is not None
        ]
        return AttemptResult(
            verdict.outcome,
            status,
            latency_s,
            verdict.error,
            server_wait_s=max(waits) if waits else None,
            job_stop=verdict.job_stop,
        )
