"""The provider client: one attempt at a time through the job's HTTP session, classified.

run/http.py turns network errors into ConnectError (nothing sent), AnswerTimeout or ConnectionLost
(sent); here they become outcomes, beside the outcomes of answers that came.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from batchbanana.errors import (
    AnswerTimeout,
    BadResponse,
    ConnectError,
    ConnectionLost,
    SinkError,
    TransportError,
    make_scrubber,
)
from batchbanana.rules.answer import Answer, AnswerImage, parse_answer
from batchbanana.rules.error_answer import parse_error, parse_retry_after
from batchbanana.rules.grounding import scrub_grounding
from batchbanana.rules.limits import Throttle
from batchbanana.rules.outcomes import Outcome, Verdict, classify_answer, classify_error
from batchbanana.rules.wire import auth_headers, request_url
from batchbanana.run.answers import AnswerStream
from batchbanana.run.http import HttpSession, read_at_most

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
    throttle: Throttle = Throttle.NONE  # what the answer says about the provider's limits
    quota_window_s: float | None = None  # a quota refusal's window, as its quota id names it
    grounding: dict[str, Any] | None = None  # what a grounded answer searched and cited


class ProviderClient:
    """Sends generateContent requests to one endpoint with one key."""

    def __init__(self, endpoint: str, auth: str, api_key: str, connect_timeout_s: float) -> None:
        self.endpoint = endpoint
        self._headers = {"Content-Type": "application/json", **auth_headers(auth, api_key)}
        # Text a server or an exception produced loses the key before anything cuts it short.
        self._scrub = make_scrubber([api_key])
        self._connect_timeout_s = connect_timeout_s
        self._http = HttpSession()

    async def __aenter__(self) -> ProviderClient:
        await self._http.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._http.__aexit__(*exc_info)

    async def generate(
        self,
        model: str,
        body: bytes,
        timeout_s: float,
        sink_dir: Path | None = None,
        prefix: str = "answer",
    ) -> AttemptResult:
        """Send one request and classify how it ended. Never raises for network trouble.

        With `sink_dir`, a 200 answer is streamed: its images are decoded into temporary files
        there (returned as AnswerImage.path) instead of being held in memory.
        """
        started = time.monotonic()
        status: int | None = None

        def elapsed() -> float:
            return round(time.monotonic() - started, 3)

        try:
            async with self._http.request(
                "POST",
                request_url(self.endpoint, model),
                data=body,
                headers=self._headers,
                timeout_s=timeout_s,
                connect_timeout_s=self._connect_timeout_s,
            ) as response:
                status = response.status
                if status == 200:
                    if sink_dir is None:
                        payload = await response.read()
                        return self._answered(parse_answer, payload, elapsed())
                    return await self._streamed(response, sink_dir, prefix, elapsed)
                try:
                    error_body = await read_at_most(response, ERROR_BODY_LIMIT)
                except TransportError as exc:
                    # The status already says what happened; a lost error body changes nothing.
                    error_body = f"(error body unreadable: {exc})".encode()
                return self._refused(status, error_body, response.headers, elapsed())
        except ConnectError as exc:
            return AttemptResult(
                Outcome.CONNECT_ERROR,
                None,
                elapsed(),
                self._scrub(f"no connection, nothing sent: {exc}"),
            )
        except AnswerTimeout:
            return AttemptResult(
                Outcome.TIMEOUT,
                status,
                elapsed(),
                f"no full answer within {timeout_s:g} s (billed: the provider charges disconnects)",
            )
        except ConnectionLost as exc:
            if status == 200:
                return AttemptResult(
                    Outcome.BAD_RESPONSE,
                    status,
                    elapsed(),
                    self._scrub(f"answer cut off: {exc}"),
                )
            return AttemptResult(
                Outcome.SERVER_ERROR,
                status,
                elapsed(),
                self._scrub(f"connection lost after sending: {exc}"),
            )

    async def _streamed(
        self,
        response: aiohttp.ClientResponse,
        sink_dir: Path,
        prefix: str,
        elapsed: Callable[[], float],
    ) -> AttemptResult:
        stream = AnswerStream(sink_dir, prefix)
        try:
            async for chunk in response.content.iter_any():
                stream.feed(chunk)
            result = self._answered(lambda _: stream.finish(), b"", elapsed())
        except SinkError as exc:
            stream.discard()
            return AttemptResult(
                Outcome.WRITE_ERROR, 200, elapsed(), f"could not write the image: {exc}"
            )
        except BadResponse as exc:
            stream.discard()  # the rest of the body cannot make it valid; it is paid for anyway
            return AttemptResult(Outcome.BAD_RESPONSE, 200, elapsed(), str(exc))
        except BaseException:
            stream.discard()  # a timeout, a cut connection or a cancellation: no partial file
            raise
        if result.outcome is not Outcome.OK:
            stream.discard()
        return result

    def _answered(
        self, read: Callable[[bytes], Answer], payload: bytes, latency_s: float
    ) -> AttemptResult:
        try:
            answer = read(payload)
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
            grounding=scrub_grounding(answer.grounding, self._scrub),
        )

    def _refused(self, status: int, body: bytes, headers: Any, latency_s: float) -> AttemptResult:
        # Scrub before parsing: the parser cuts long messages, which could leave part of the key.
        info = parse_error(self._scrub(body.decode("utf-8", "replace")).encode("utf-8"))
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
            throttle=verdict.throttle,
            quota_window_s=verdict.quota_window_s,
        )
