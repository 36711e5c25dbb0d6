"""The Gemini-native wire format (contract section 3): request bodies out, answers and errors in."""

from __future__ import annotations

import base64
import email.utils
import json
from collections.abc import Iterator
from typing import Any

import pytest

from batchbanana.errors import BadResponse
from batchbanana.rules.answer import decode_base64, parse_answer
from batchbanana.rules.error_answer import parse_duration_s, parse_error, parse_retry_after
from batchbanana.rules.wire import auth_headers, build_request, file_part, inline_part, request_url
from tests.conftest import png_bytes

RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"


def _request(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "model": "gemini-3-pro-image-preview",
        "prompt": "add five dogs",
        "image_parts": [],
        "image_size": "2K",
        "aspect_ratio": "16:9",
        "system_prompt": None,
        "response_modalities": ["TEXT", "IMAGE"],
    }
    fields.update(overrides)
    return build_request(**fields)


def _keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, child in value.items():
            yield key
            yield from _keys(child)
    elif isinstance(value, list):
        for child in value:
            yield from _keys(child)


def _answer(*parts: dict[str, Any], finish: str = "STOP", **extra: Any) -> bytes:
    body = {
        "candidates": [
            {"content": {"role": "model", "parts": list(parts)}, "finishReason": finish}
        ],
        **extra,
    }
    return json.dumps(body).encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _error(code: int, status: str, message: str, *details: dict[str, Any]) -> bytes:
    error = {"code": code, "message": message, "status": status, "details": list(details)}
    return json.dumps({"error": error}).encode()


# --- request_url and auth_headers -------------------------------------------------------------


@pytest.mark.parametrize(
    "endpoint",
    [
        pytest.param("https://api.apiyi.com", id="bare"),
        pytest.param("https://api.apiyi.com/", id="trailing-slash"),
    ],
)
def test_request_url_appends_the_generate_content_path(endpoint: str) -> None:
    """The URL is {endpoint}/v1beta/models/{model}:generateContent, whatever the trailing slash."""
    assert request_url(endpoint, "gemini-3-pro-image-preview") == (
        "https://api.apiyi.com/v1beta/models/gemini-3-pro-image-preview:generateContent"
    )


def test_bearer_auth_sends_only_an_authorization_header() -> None:
    """`auth: bearer` sends `Authorization: Bearer KEY` and no Google header."""
    assert auth_headers("bearer", "sk-test") == {"Authorization": "Bearer sk-test"}


def test_google_auth_sends_only_x_goog_api_key() -> None:
    """`auth: google` sends `x-goog-api-key: KEY` and no Authorization header."""
    assert auth_headers("google", "sk-test") == {"x-goog-api-key": "sk-test"}


# --- build_request, inline_part, file_part ----------------------------------------------------


def test_inline_part_is_camel_case_inline_data() -> None:
    """A local image becomes `inlineData {mimeType, data}`."""
    assert inline_part("image/png", "AAAA") == {
        "inlineData": {"mimeType": "image/png", "data": "AAAA"}
    }


def test_file_part_is_camel_case_file_data() -> None:
    """A URL image becomes `fileData {mimeType, fileUri}`."""
    assert file_part("image/jpeg", "https://example.com/x.jpg") == {
        "fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/x.jpg"}
    }


def test_request_has_one_user_turn_with_images_then_the_prompt() -> None:
    """Images come in the item's order and the prompt follows as the one text part."""
    first = inline_part("image/png", "AAAA")
    second = file_part("image/jpeg", "https://example.com/x.jpg")
    body = _request(image_parts=[first, second])
    assert body["contents"] == [
        {"role": "user", "parts": [first, second, {"text": "add five dogs"}]}
    ]


def test_prompt_is_sent_verbatim() -> None:
    """The prompt's whitespace, newlines and unicode reach the wire unchanged."""
    prompt = "  Ein Fuchs 🦊\n\tim Schnee, «golden hour»  "
    body = _request(prompt=prompt)
    texts = [part["text"] for part in body["contents"][0]["parts"] if "text" in part]
    assert texts == [prompt]


def test_generation_config_carries_modalities_and_image_config() -> None:
    """`generationConfig` holds responseModalities and imageConfig {aspectRatio, imageSize}."""
    body = _request()
    assert body["generationConfig"] == {
        "responseModalities": ["TEXT", "IMAGE"],
        "imageConfig": {"aspectRatio": "16:9", "imageSize": "2K"},
    }


def test_image_only_modality_is_sent_as_given() -> None:
    """`response_modalities: [IMAGE]` is sent as ["IMAGE"]."""
    body = _request(response_modalities=["IMAGE"])
    assert body["generationConfig"]["responseModalities"] == ["IMAGE"]


def test_omitted_aspect_ratio_is_left_out_of_the_request() -> None:
    """Without an aspect ratio the request has no aspectRatio, so the model follows the input."""
    body = _request(aspect_ratio=None)
    assert "aspectRatio" not in body["generationConfig"].get("imageConfig", {})


def test_system_prompt_goes_in_system_instruction_not_a_model_turn() -> None:
    """A system prompt is sent as systemInstruction, and contents keep only the user turn."""
    body = _request(system_prompt="Clean light.")
    assert body["systemInstruction"] == {"parts": [{"text": "Clean light."}]}
    assert [turn["role"] for turn in body["contents"]] == ["user"]


def test_no_system_prompt_means_no_system_instruction() -> None:
    """Without a system prompt the request carries no systemInstruction."""
    assert "systemInstruction" not in _request()


def test_request_keys_are_camel_case_only() -> None:
    """No key anywhere in the body is snake_case (API易 ignores snake_case request keys)."""
    body = _request(
        image_parts=[inline_part("image/png", "AAAA"), file_part("image/png", "https://e.x/a.png")],
        system_prompt="s",
    )
    assert [key for key in _keys(body) if "_" in key] == []


def test_request_never_asks_for_more_than_one_candidate() -> None:
    """candidateCount is never sent above 1 (each extra candidate would be billed)."""
    config = _request()["generationConfig"]
    assert config.get("candidateCount", 1) <= 1


# --- decode_base64 ----------------------------------------------------------------------------

RAW = bytes(range(256)) * 3  # holds every byte, so both alphabets' special characters occur


@pytest.mark.parametrize(
    ("encoded", "expected"),
    [
        pytest.param(base64.b64encode(RAW).decode(), RAW, id="standard-padded"),
        pytest.param(
            base64.b64encode(RAW[:-1]).decode().rstrip("="), RAW[:-1], id="standard-unpadded"
        ),
        pytest.param(base64.urlsafe_b64encode(RAW).decode(), RAW, id="urlsafe-padded"),
        pytest.param(
            base64.urlsafe_b64encode(RAW[:-1]).decode().rstrip("="), RAW[:-1], id="urlsafe-unpadded"
        ),
        pytest.param(base64.encodebytes(RAW).decode(), RAW, id="standard-with-newlines"),
    ],
)
def test_decode_base64_accepts_both_alphabets(encoded: str, expected: bytes) -> None:
    """Standard and URL-safe base64, padded or not, decode to the original bytes."""
    assert decode_base64(encoded) == expected


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param("not base64 at all!", id="punctuation"),
        pytest.param("A", id="impossible-length"),
        pytest.param("QUJD$RA==", id="stray-symbol"),
    ],
)
def test_decode_base64_rejects_garbage_as_bad_response(garbage: str) -> None:
    """Invalid base64 raises BadResponse, never a raw binascii error."""
    with pytest.raises(BadResponse):
        decode_base64(garbage)


# --- parse_answer -----------------------------------------------------------------------------


def test_answer_image_is_read_from_inline_data() -> None:
    """candidates[0].content.parts[].inlineData gives the image's MIME type and bytes."""
    png = png_bytes(2, 2)
    answer = parse_answer(_answer({"inlineData": {"mimeType": "image/png", "data": _b64(png)}}))
    assert [(image.mime_type, image.data) for image in answer.images] == [("image/png", png)]
    assert answer.finish_reason == "STOP"


def test_answer_accepts_snake_case_keys() -> None:
    """inline_data, mime_type, finish_reason and usage_metadata are read like camelCase."""
    png = png_bytes(2, 2)
    body = {
        "candidates": [
            {
                "content": {
                    "parts": [{"inline_data": {"mime_type": "image/png", "data": _b64(png)}}]
                },
                "finish_reason": "STOP",
            }
        ],
        "usage_metadata": {"total_token_count": 1300},
        "response_id": "r-1",
        "model_version": "gemini-3-pro-image-preview",
    }
    answer = parse_answer(json.dumps(body).encode())
    assert [image.data for image in answer.images] == [png]
    assert answer.finish_reason == "STOP"
    assert answer.usage == {"total_token_count": 1300}
    assert (answer.response_id, answer.model_version) == ("r-1", "gemini-3-pro-image-preview")


def test_answer_accepts_url_safe_unpadded_image_data() -> None:
    """Image data in the URL-safe alphabet without padding decodes to the same bytes."""
    png = png_bytes(5, 3)
    data = base64.urlsafe_b64encode(png).decode().rstrip("=")
    answer = parse_answer(_answer({"inlineData": {"mimeType": "image/png", "data": data}}))
    assert answer.images[0].data == png


def test_thought_parts_are_never_outputs() -> None:
    """Parts marked "thought": true (interim drafts) are dropped; only the final image is kept."""
    draft, final = png_bytes(1, 1), png_bytes(4, 4)
    answer = parse_answer(
        _answer(
            {"text": "drafting", "thought": True},
            {"inlineData": {"mimeType": "image/png", "data": _b64(draft)}, "thought": True},
            {"inlineData": {"mimeType": "image/png", "data": _b64(final)}},
        )
    )
    assert [image.data for image in answer.images] == [final]
    assert answer.text is None


def test_several_images_keep_their_order() -> None:
    """Every final image of one answer is returned, in the order of the parts."""
    first, second = png_bytes(1, 1), png_bytes(2, 2)
    answer = parse_answer(
        _answer(
            {"inlineData": {"mimeType": "image/png", "data": _b64(first)}},
            {"text": "and another"},
            {"inlineData": {"mimeType": "IMAGE/PNG", "data": _b64(second)}},
        )
    )
    assert [image.data for image in answer.images] == [first, second]
    assert [image.mime_type for image in answer.images] == ["image/png", "image/png"]


def test_answer_text_is_kept_and_cut_at_500_characters() -> None:
    """The model's words are returned, cut at 500 characters."""
    answer = parse_answer(_answer({"text": "x" * 800}, finish="IMAGE_SAFETY"))
    assert answer.text == "x" * 500
    assert answer.finish_reason == "IMAGE_SAFETY"
    assert answer.images == ()


def test_blocked_prompt_has_only_a_block_reason() -> None:
    """A prompt blocked outright (no candidates) yields its promptFeedback.blockReason."""
    body = json.dumps({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}}).encode()
    answer = parse_answer(body)
    assert answer.block_reason == "PROHIBITED_CONTENT"
    assert answer.images == ()


def test_blocked_prompt_snake_case_is_read() -> None:
    """prompt_feedback.block_reason is read like its camelCase form."""
    body = json.dumps({"prompt_feedback": {"block_reason": "SAFETY"}}).encode()
    assert parse_answer(body).block_reason == "SAFETY"


def test_answer_metadata_is_read() -> None:
    """usageMetadata, responseId and modelVersion are returned for the ledger."""
    usage = {"promptTokenCount": 10, "candidatesTokenCount": 1290, "totalTokenCount": 1300}
    answer = parse_answer(
        _answer({"text": "hi"}, usageMetadata=usage, responseId="abc", modelVersion="v-1")
    )
    assert (answer.usage, answer.response_id, answer.model_version) == (usage, "abc", "v-1")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"<html>502 Bad Gateway</html>", id="html"),
        pytest.param(b'{"candidates": [{"content": {"parts": [{"inlineData": {"mi', id="cut-off"),
        pytest.param(b"", id="empty"),
        pytest.param(b"\xff\xfe\x00garbage", id="not-utf8"),
        pytest.param(b"[1, 2, 3]", id="json-array"),
        pytest.param(
            _answer({"inlineData": {"mimeType": "image/png", "data": "%%%not-base64%%%"}}),
            id="bad-base64",
        ),
        pytest.param(_answer({"inlineData": {"mimeType": "image/png"}}), id="no-data"),
        pytest.param(b'{"error": {"code": 500, "message": "oops"}}', id="error-object"),
    ],
)
def test_unreadable_answer_raises_bad_response(body: bytes) -> None:
    """A 200 whose body is not JSON, is cut off, or holds undecodable image data is BadResponse."""
    with pytest.raises(BadResponse):
        parse_answer(body)


# --- parse_error, parse_duration_s ------------------------------------------------------------


def test_error_status_and_message_are_read() -> None:
    """An error body gives its status and message."""
    info = parse_error(_error(400, "INVALID_ARGUMENT", "bad aspect ratio"))
    assert (info.status, info.message) == ("INVALID_ARGUMENT", "bad aspect ratio")
    assert (info.retry_delay_s, info.quota_per_day, info.quota_zero) == (None, False, False)


def test_retry_info_delay_is_read_in_seconds() -> None:
    """google.rpc.RetryInfo retryDelay "53s" is a 53-second wait."""
    info = parse_error(
        _error(429, "RESOURCE_EXHAUSTED", "slow down", {"@type": RETRY_INFO, "retryDelay": "53s"})
    )
    assert info.retry_delay_s == 53.0


def test_per_minute_quota_is_neither_daily_nor_zero() -> None:
    """A per-minute QuotaFailure with a positive limit is an ordinary rate limit."""
    quota = {
        "@type": QUOTA_FAILURE,
        "violations": [
            {"quotaId": "GenerateRequestsPerMinutePerProjectPerModel", "quotaValue": "10"}
        ],
    }
    info = parse_error(_error(429, "RESOURCE_EXHAUSTED", "limit: 10", quota))
    assert (info.quota_per_day, info.quota_zero) == (False, False)


def test_per_day_quota_is_recognised() -> None:
    """A violations[].quotaId containing PerDay marks a daily quota."""
    quota = {
        "@type": QUOTA_FAILURE,
        "violations": [{"quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier"}],
    }
    assert parse_error(_error(429, "RESOURCE_EXHAUSTED", "quota", quota)).quota_per_day is True


def test_quota_value_zero_is_recognised() -> None:
    """A violations[].quotaValue of "0" marks a limit of zero."""
    quota = {"@type": QUOTA_FAILURE, "violations": [{"quotaId": "PerMinute", "quotaValue": "0"}]}
    assert parse_error(_error(429, "RESOURCE_EXHAUSTED", "quota", quota)).quota_zero is True


def test_limit_zero_in_the_message_is_recognised() -> None:
    """`limit: 0` in the message (as real answers put it) marks a limit of zero."""
    message = "Quota exceeded for metric: generate_content_free_tier_requests, limit: 0, model: x"
    assert parse_error(_error(429, "RESOURCE_EXHAUSTED", message)).quota_zero is True


def test_non_json_error_body_gives_readable_text() -> None:
    """An HTML error page from a proxy yields its text without tags."""
    info = parse_error(b"<html><body><h1>502 Bad Gateway</h1></body></html>")
    assert info.message == "502 Bad Gateway"
    assert info.status is None


def test_list_wrapped_error_is_read() -> None:
    """An error object wrapped in a list (as some gateways send it) is read the same."""
    body = b'[{"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "m"}}]'
    assert parse_error(body).status == "RESOURCE_EXHAUSTED"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        pytest.param("53s", 53.0, id="whole"),
        pytest.param("1.5s", 1.5, id="fraction"),
        pytest.param("0s", 0.0, id="zero"),
        pytest.param({"seconds": 3, "nanos": 500_000_000}, 3.5, id="object"),
        pytest.param({"seconds": "7"}, 7.0, id="object-string-seconds"),
        pytest.param("soon", None, id="words"),
        pytest.param(None, None, id="missing"),
    ],
)
def test_parse_duration_s(value: Any, seconds: float | None) -> None:
    """A protobuf Duration in JSON form is read in seconds; anything unreadable gives None."""
    assert parse_duration_s(value) == seconds


# --- parse_retry_after ------------------------------------------------------------------------

NOW = email.utils.parsedate_to_datetime("Wed, 21 Oct 2015 07:28:00 GMT").timestamp()


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        pytest.param("3", 3.0, id="seconds"),
        pytest.param(" 120 ", 120.0, id="padded-seconds"),
        pytest.param("1.5", 1.5, id="fractional-seconds"),
        pytest.param("Wed, 21 Oct 2015 07:29:30 GMT", 90.0, id="http-date-future"),
        pytest.param("Wed, 21 Oct 2015 07:00:00 GMT", 0.0, id="http-date-past"),
        pytest.param("-5", 0.0, id="negative"),
        pytest.param(None, None, id="absent"),
        pytest.param("", None, id="empty"),
        pytest.param("whenever", None, id="garbage"),
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    """Retry-After is read as delta-seconds or an HTTP date; unreadable values give None."""
    assert parse_retry_after(header, now=NOW) == seconds
