"""The outcome table of contract section 5: what each attempt was, whether it was billed, and
whether `run` may send it again."""

from __future__ import annotations

import pytest

from batchbanana.rules.answer import Answer, AnswerImage
from batchbanana.rules.error_answer import ErrorInfo, parse_error
from batchbanana.rules.outcomes import (
    Billed,
    Outcome,
    billed,
    classify_answer,
    classify_error,
    is_retryable,
)
from tests.conftest import png_bytes

PNG = png_bytes(2, 2)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 64


# --- the whole table: every outcome's billing and retry column ------------------------------


@pytest.mark.parametrize(
    ("outcome", "expected_billed", "retried"),
    [
        pytest.param(Outcome.OK, Billed.YES, False, id="ok"),
        pytest.param(Outcome.REFUSED, Billed.YES, False, id="refused"),
        pytest.param(Outcome.NO_IMAGE, Billed.YES, False, id="no_image"),
        pytest.param(Outcome.BAD_RESPONSE, Billed.YES, False, id="bad_response"),
        pytest.param(Outcome.TIMEOUT, Billed.YES, False, id="timeout"),
        pytest.param(Outcome.WRITE_ERROR, Billed.YES, False, id="write_error"),
        pytest.param(Outcome.RATE_LIMITED, Billed.NO, True, id="rate_limited"),
        pytest.param(Outcome.UNAVAILABLE, Billed.NO, True, id="unavailable"),
        pytest.param(Outcome.CONNECT_ERROR, Billed.NO, True, id="connect_error"),
        pytest.param(Outcome.HTTP_ERROR, Billed.NO, False, id="http_error"),
        pytest.param(Outcome.SERVER_ERROR, Billed.UNKNOWN, False, id="server_error"),
        pytest.param(Outcome.INTERRUPTED, Billed.UNKNOWN, False, id="interrupted"),
        pytest.param(Outcome.OVER_BUDGET, Billed.NO, False, id="over_budget"),
        pytest.param(Outcome.BLOCKED, Billed.NO, False, id="blocked"),
    ],
)
def test_outcome_table_billing_and_retry(
    outcome: Outcome, expected_billed: Billed, retried: bool
) -> None:
    """Each outcome is billed and retried by `run` exactly as the contract's table says."""
    assert billed(outcome) is expected_billed
    assert is_retryable(outcome) is retried


def test_every_outcome_is_in_the_table() -> None:
    """The ledger spells outcomes and billing as the contract does, and no outcome is missing."""
    assert {outcome.value for outcome in Outcome} == {
        "ok", "refused", "no_image", "bad_response", "timeout", "write_error", "rate_limited",
        "unavailable", "connect_error", "http_error", "server_error", "interrupted", "over_budget",
        "blocked",
    }  # fmt: skip
    assert {value.value for value in Billed} == {"yes", "no", "unknown"}


def test_only_unbilled_outcomes_are_retryable() -> None:
    """No outcome that may have cost money (billed yes or unknown) is ever retried by `run`."""
    for outcome in Outcome:
        if is_retryable(outcome):
            assert billed(outcome) is Billed.NO, outcome


# --- 200 answers: classify_answer -------------------------------------------------------------


def _image(mime: str, data: bytes) -> tuple[AnswerImage, ...]:
    return (AnswerImage.in_memory(mime, data),)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        pytest.param(
            Answer(images=_image("image/png", PNG), finish_reason="STOP"), Outcome.OK, id="ok-png"
        ),
        pytest.param(Answer(images=_image("image/jpeg", JPEG)), Outcome.OK, id="ok-jpeg"),
        pytest.param(Answer(images=_image("image/jpg", JPEG)), Outcome.OK, id="ok-image-jpg-alias"),
        pytest.param(
            Answer(images=_image("image/png", PNG), text="Here it is."),
            Outcome.OK,
            id="ok-with-text",
        ),
        pytest.param(Answer(finish_reason="SAFETY"), Outcome.REFUSED, id="refused-SAFETY"),
        pytest.param(
            Answer(finish_reason="IMAGE_SAFETY", text="I can't make that."),
            Outcome.REFUSED,
            id="refused-IMAGE_SAFETY",
        ),
        pytest.param(
            Answer(finish_reason="PROHIBITED_CONTENT"),
            Outcome.REFUSED,
            id="refused-PROHIBITED_CONTENT",
        ),
        pytest.param(
            Answer(finish_reason="IMAGE_PROHIBITED_CONTENT"),
            Outcome.REFUSED,
            id="refused-IMAGE_PROHIBITED_CONTENT",
        ),
        pytest.param(Answer(finish_reason="BLOCKLIST"), Outcome.REFUSED, id="refused-BLOCKLIST"),
        pytest.param(Answer(finish_reason="SPII"), Outcome.REFUSED, id="refused-SPII"),
        pytest.param(
            Answer(block_reason="PROHIBITED_CONTENT"), Outcome.REFUSED, id="refused-blockReason"
        ),
        pytest.param(Answer(block_reason="OTHER"), Outcome.REFUSED, id="refused-blockReason-OTHER"),
        pytest.param(
            Answer(finish_reason="STOP", text="A lovely idea!"),
            Outcome.NO_IMAGE,
            id="no_image-STOP-text-only",
        ),
        pytest.param(
            Answer(finish_reason="IMAGE_RECITATION"),
            Outcome.NO_IMAGE,
            id="no_image-IMAGE_RECITATION",
        ),
        pytest.param(
            Answer(finish_reason="IMAGE_OTHER"), Outcome.NO_IMAGE, id="no_image-IMAGE_OTHER"
        ),
        pytest.param(Answer(finish_reason="NO_IMAGE"), Outcome.NO_IMAGE, id="no_image-NO_IMAGE"),
        pytest.param(
            Answer(finish_reason="RECITATION"), Outcome.NO_IMAGE, id="no_image-RECITATION"
        ),
        pytest.param(
            Answer(finish_reason="MAX_TOKENS"), Outcome.NO_IMAGE, id="no_image-MAX_TOKENS"
        ),
        pytest.param(Answer(finish_reason="OTHER"), Outcome.NO_IMAGE, id="no_image-OTHER"),
        pytest.param(Answer(), Outcome.NO_IMAGE, id="no_image-empty-answer"),
        pytest.param(
            Answer(images=_image("image/png", b"this is not a png")),
            Outcome.BAD_RESPONSE,
            id="bad_response-bytes-not-an-image",
        ),
        pytest.param(
            Answer(images=_image("image/png", JPEG)),
            Outcome.BAD_RESPONSE,
            id="bad_response-mime-does-not-match-bytes",
        ),
        pytest.param(
            Answer(images=_image("text/plain", PNG)),
            Outcome.BAD_RESPONSE,
            id="bad_response-not-an-image-type",
        ),
        pytest.param(
            Answer(images=_image("image/png", b"")),
            Outcome.BAD_RESPONSE,
            id="bad_response-empty-image",
        ),
        pytest.param(
            Answer(images=(*_image("image/png", PNG), *_image("image/png", b"junk"))),
            Outcome.BAD_RESPONSE,
            id="bad_response-second-image-broken",
        ),
    ],
)
def test_classify_answer(answer: Answer, expected: Outcome) -> None:
    """A 200 answer is ok with an image, refused for the refusal reasons, else no_image or bad."""
    verdict = classify_answer(answer)
    assert verdict.outcome is expected
    assert verdict.job_stop is None
    assert billed(verdict.outcome) is Billed.YES
    assert not is_retryable(verdict.outcome)
    if expected is not Outcome.OK:
        assert verdict.error  # the ledger says why there is no image


def test_refused_error_names_the_reason() -> None:
    """A refusal's error names its finish or block reason, so a report can say why."""
    assert "IMAGE_SAFETY" in (classify_answer(Answer(finish_reason="IMAGE_SAFETY")).error or "")
    assert "SPII" in (classify_answer(Answer(block_reason="SPII")).error or "")


# --- error answers: classify_error ------------------------------------------------------------

PER_DAY = ErrorInfo(status="RESOURCE_EXHAUSTED", message="quota", quota_per_day=True)
ZERO = ErrorInfo(status="RESOURCE_EXHAUSTED", message="limit: 0", quota_zero=True)
PER_MINUTE = ErrorInfo(status="RESOURCE_EXHAUSTED", message="slow down", retry_delay_s=53.0)


@pytest.mark.parametrize(
    ("status", "info", "expected", "stops_job"),
    [
        pytest.param(429, PER_MINUTE, Outcome.RATE_LIMITED, False, id="429-per-minute"),
        pytest.param(429, ErrorInfo(), Outcome.RATE_LIMITED, False, id="429-bare"),
        pytest.param(429, PER_DAY, Outcome.RATE_LIMITED, True, id="429-per-day-stops-job"),
        pytest.param(429, ZERO, Outcome.RATE_LIMITED, True, id="429-limit-zero-stops-job"),
        pytest.param(503, ErrorInfo(status="UNAVAILABLE"), Outcome.UNAVAILABLE, False, id="503"),
        pytest.param(
            400, ErrorInfo(status="INVALID_ARGUMENT"), Outcome.HTTP_ERROR, False, id="400"
        ),
        pytest.param(404, ErrorInfo(status="NOT_FOUND"), Outcome.HTTP_ERROR, False, id="404"),
        pytest.param(408, ErrorInfo(), Outcome.HTTP_ERROR, False, id="408"),
        pytest.param(413, ErrorInfo(), Outcome.HTTP_ERROR, False, id="413"),
        pytest.param(422, ErrorInfo(), Outcome.HTTP_ERROR, False, id="422"),
        pytest.param(
            401,
            ErrorInfo(status="UNAUTHENTICATED"),
            Outcome.HTTP_ERROR,
            True,
            id="401-bad-key-stops-job",
        ),
        pytest.param(402, ErrorInfo(), Outcome.HTTP_ERROR, True, id="402-no-balance-stops-job"),
        pytest.param(
            403,
            ErrorInfo(status="PERMISSION_DENIED"),
            Outcome.HTTP_ERROR,
            True,
            id="403-forbidden-stops-job",
        ),
        pytest.param(500, ErrorInfo(status="INTERNAL"), Outcome.SERVER_ERROR, False, id="500"),
        pytest.param(502, ErrorInfo(message="Bad Gateway"), Outcome.SERVER_ERROR, False, id="502"),
        pytest.param(
            504, ErrorInfo(status="DEADLINE_EXCEEDED"), Outcome.SERVER_ERROR, False, id="504"
        ),
    ],
)
def test_classify_error(status: int, info: ErrorInfo, expected: Outcome, stops_job: bool) -> None:
    """A non-200 answer gets the table's outcome, and only job-level errors stop the job."""
    verdict = classify_error(status, info)
    assert verdict.outcome is expected
    assert (verdict.job_stop is not None) is stops_job
    if stops_job:
        assert "\n" not in (verdict.job_stop or "")  # said in one line


def test_error_summary_keeps_the_status_and_message() -> None:
    """The recorded error holds the HTTP status and the server's message."""
    verdict = classify_error(400, ErrorInfo(status="INVALID_ARGUMENT", message="bad ratio"))
    assert verdict.error is not None
    assert "400" in verdict.error
    assert "INVALID_ARGUMENT" in verdict.error
    assert "bad ratio" in verdict.error


def test_error_summary_is_bounded() -> None:
    """A huge error message is cut, so one answer cannot bloat the ledger."""
    verdict = classify_error(500, ErrorInfo(message="x" * 10_000))
    assert verdict.error is not None
    assert len(verdict.error) <= 500


def test_google_invalid_key_400_stops_the_job_without_billing() -> None:
    """Google answers a bad key with 400 API_KEY_INVALID: http_error, not billed, and a job stop."""
    body = (
        b'{"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",'
        b' "status": "INVALID_ARGUMENT", "details": [{"@type":'
        b' "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",'
        b' "domain": "googleapis.com"}]}}'
    )
    verdict = classify_error(400, parse_error(body))
    assert verdict.outcome is Outcome.HTTP_ERROR
    assert billed(verdict.outcome) is Billed.NO
    assert verdict.job_stop is not None and "API_KEY_INVALID" in verdict.job_stop


def test_ordinary_400_does_not_stop_the_job() -> None:
    """A 400 for one item's bad argument fails that item only."""
    body = b'{"error": {"code": 400, "message": "bad aspect ratio", "status": "INVALID_ARGUMENT"}}'
    assert classify_error(400, parse_error(body)).job_stop is None
