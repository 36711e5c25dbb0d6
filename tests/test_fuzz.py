"""Property tests: whatever bytes a server, a manifest author or a torn disk hands them, the
parsers answer with their documented error (BadResponse, UserError, a skipped-line warning) or a
result, never with another exception, which would turn into an unrecorded or misrecorded attempt.

Inputs that once tripped a bug (surrogates, huge numbers, deep nesting, NUL characters,
recursive aliases) have their own regression tests below and are part of the general strategies.
"""

from __future__ import annotations

import base64
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

import batchbanana.plan.yaml_lines as manifest_module
from batchbanana.errors import BadResponse, UserError
from batchbanana.ledger.replay import LedgerState, read_ledger, replay
from batchbanana.plan.build import load_job
from batchbanana.plan.job import Job
from batchbanana.rules.answer import Answer, parse_answer
from batchbanana.rules.error_answer import ErrorInfo, parse_error
from batchbanana.rules.outcomes import Outcome, Verdict, classify_answer, classify_error
from batchbanana.run.answers import AnswerStream
from tests.conftest import png_bytes

FUZZ = settings(max_examples=200, deadline=None)
ANSWER_OUTCOMES = {Outcome.OK, Outcome.REFUSED, Outcome.NO_IMAGE, Outcome.BAD_RESPONSE}


PNG = png_bytes(3, 2)
PNG_B64 = base64.b64encode(PNG).decode()

# -- strategies -----------------------------------------------------------------------------------

# Any text, surrogates and characters outside the BMP included (json.dumps escapes them).
BMP_TEXT = st.text(max_size=40)
# Integers far beyond a float's range included.
SAFE_INTS = st.integers(min_value=-(10**400), max_value=10**400)
SCALARS = st.one_of(st.none(), st.booleans(), SAFE_INTS, st.floats(), BMP_TEXT)


def json_values(
    keys: st.SearchStrategy[str] = BMP_TEXT, max_leaves: int = 10
) -> st.SearchStrategy[Any]:
    """Any JSON value: scalars, lists and objects, nested a few levels."""
    return st.recursive(
        SCALARS,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)
        ),
        max_leaves=max_leaves,
    )


ANSWER_KEYS = st.sampled_from(
    [
        "candidates",
        "content",
        "parts",
        "text",
        "thought",
        "inlineData",
        "inline_data",
        "mimeType",
        "mime_type",
        "data",
        "finishReason",
        "finish_reason",
        "promptFeedback",
        "blockReason",
        "usageMetadata",
        "responseId",
        "modelVersion",
        "error",
    ]
)
IMAGE_DATA = st.one_of(
    st.just(PNG_B64),
    st.just(base64.urlsafe_b64encode(PNG).decode().rstrip("=")),
    st.just(PNG_B64[: len(PNG_B64) // 2]),
    st.text(
        alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_", max_size=60
    ),
    BMP_TEXT,
    json_values(),
)
MIME = st.one_of(
    st.sampled_from(["image/png", "image/jpeg", "image/jpg", "IMAGE/PNG ", "text/plain", ""]),
    json_values(),
)
INLINE = st.fixed_dictionaries(
    {}, optional={"mimeType": MIME, "mime_type": MIME, "data": IMAGE_DATA}
)
PART = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "text": st.one_of(BMP_TEXT, json_values()),
            "thought": st.one_of(st.booleans(), json_values()),
            "inlineData": st.one_of(INLINE, json_values()),
            "inline_data": INLINE,
        },
    ),
    json_values(ANSWER_KEYS),
)
FINISH = st.one_of(
    st.sampled_from(["STOP", "IMAGE_SAFETY", "SAFETY", "NO_IMAGE", "IMAGE_OTHER", "", None]),
    json_values(),
)


@st.composite
def gemini_answers(draw: st.DrawFn) -> dict[str, Any]:
    """A `{"candidates":[{"content":{"parts":[...]}}]}` skeleton with random parts and extras."""
    candidate: dict[str, Any] = {"content": {"parts": draw(st.lists(PART, max_size=4))}}
    if draw(st.booleans()):
        candidate["finishReason"] = draw(FINISH)
    candidates: Any = [candidate, *draw(st.lists(json_values(ANSWER_KEYS), max_size=2))]
    if draw(st.integers(0, 9)) == 0:
        candidates = draw(json_values(ANSWER_KEYS))
    answer: dict[str, Any] = {"candidates": candidates}
    extras = draw(st.dictionaries(ANSWER_KEYS, json_values(ANSWER_KEYS), max_size=3))
    answer.update({k: v for k, v in extras.items() if k != "candidates"})
    if draw(st.booleans()):
        answer["promptFeedback"] = {"blockReason": draw(FINISH)}
    return answer


def _serialised(value: Any, draw: st.DrawFn) -> bytes:
    text = json.dumps(value, indent=draw(st.sampled_from([None, 2])))
    if draw(st.booleans()):
        text = text.replace("/", "\\/")  # legal JSON that some servers write
    return text.encode()


@st.composite
def answer_bodies(draw: st.DrawFn) -> bytes:
    """Raw bytes, any JSON document, or a Gemini-shaped answer, possibly cut short."""
    kind = draw(st.sampled_from(["bytes", "json", "gemini", "gemini"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    body = _serialised(draw(json_values(ANSWER_KEYS) if kind == "json" else gemini_answers()), draw)
    if draw(st.integers(0, 4)) == 0:
        body = body[: draw(st.integers(0, len(body)))]
    return body


def chunked(body: bytes, sizes: list[int]) -> list[bytes]:
    """The body cut into pieces of the given sizes (cycled)."""
    pieces, position, index = [], 0, 0
    while position < len(body):
        size = sizes[index % len(sizes)]
        pieces.append(body[position : position + size])
        position += size
        index += 1
    return pieces


def check_answer(answer: Answer) -> Verdict:
    """The classification of a parsed answer, checked to be one a 200 may have."""
    verdict = classify_answer(answer)
    assert verdict.outcome in ANSWER_OUTCOMES
    assert answer.text is None or len(answer.text) <= 500
    return verdict


# -- answers --------------------------------------------------------------------------------------


@FUZZ
@given(body=answer_bodies())
def test_parse_answer_only_ever_raises_bad_response(body: bytes) -> None:
    """parse_answer returns an answer that classifies as ok/refused/no_image/bad_response, or
    raises BadResponse, for any body."""
    try:
        answer = parse_answer(body)
    except BadResponse:
        return
    check_answer(answer)


@FUZZ
@given(body=answer_bodies(), sizes=st.lists(st.integers(1, 64), min_size=1, max_size=5))
def test_streamed_answer_only_ever_raises_bad_response_and_discard_leaves_nothing(
    body: bytes, sizes: list[int]
) -> None:
    """The streaming reader, fed any body in any chunks, gives a classifiable answer or raises
    BadResponse, agrees with the plain parser on the outcome, and discard() leaves no file."""
    with tempfile.TemporaryDirectory() as folder:
        stream = AnswerStream(Path(folder), "x")
        try:
            for piece in chunked(body, sizes):
                stream.feed(piece)
            streamed: Verdict | None = check_answer(stream.finish())
        except BadResponse:
            streamed = None
        finally:
            stream.discard()
        assert os.listdir(folder) == []
    try:
        plain: Verdict | None = classify_answer(parse_answer(body))
    except BadResponse:
        plain = None
    if streamed is not None and plain is not None:
        assert streamed.outcome == plain.outcome


@FUZZ
@given(answer=gemini_answers())
@example(
    answer={
        "candidates": [
            {"content": {"parts": [{"inlineData": {"mimeType": "image/png", "data": PNG_B64}}]}}
        ]
    }
)
def test_a_streamed_image_is_the_decoded_bytes_until_discarded(answer: dict[str, Any]) -> None:
    """An ok streamed answer's image files hold exactly its announced bytes; discard() removes
    them."""
    with tempfile.TemporaryDirectory() as folder:
        stream = AnswerStream(Path(folder), "x")
        try:
            stream.feed(json.dumps(answer).encode())
            result = stream.finish()
        except BadResponse:
            stream.discard()
            assert os.listdir(folder) == []
            return
        for image in result.images:
            data = image.path.read_bytes() if image.path is not None else image.data
            assert len(data) == image.size and data[:32] == image.head
        stream.discard()
        assert os.listdir(folder) == []


SURROGATE_IN_IMAGE_DATA = (
    b'{"candidates":[{"content":{"parts":[{"inlineData":'
    b'{"mimeType":"image/png","data":"iVBO\\ud83d\\ude00"}}]},"finishReason":"STOP"}]}'
)


def test_stream_escape_of_a_surrogate_in_image_data_is_a_bad_response(tmp_path: Path) -> None:
    """A \\ud83d\\ude00 escape inside inlineData.data is BadResponse, like any non-base64 text."""
    stream = AnswerStream(tmp_path, "x")
    try:
        with pytest.raises(BadResponse):
            stream.feed(SURROGATE_IN_IMAGE_DATA)
            stream.finish()
    finally:
        stream.discard()


HUGE_NUMBER = b"1" * 5000  # over CPython's 4300-digit limit for int() of a decimal string
DEEP_NESTING = b"[" * 100_000


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(HUGE_NUMBER, id="5000-digit-number"),
        pytest.param(b'{"usageMetadata": {"n": ' + HUGE_NUMBER + b"}}", id="huge-usage-count"),
        pytest.param(DEEP_NESTING, id="deeply-nested"),
    ],
)
@pytest.mark.parametrize("reader", ["plain", "streamed"])
def test_pathological_json_answer_is_a_bad_response(
    body: bytes, reader: str, tmp_path: Path
) -> None:
    """A 200 body JSON cannot turn into Python objects is BadResponse, for both readers."""
    with pytest.raises(BadResponse):
        if reader == "plain":
            parse_answer(body)
        else:
            stream = AnswerStream(tmp_path, "x")
            stream.feed(body)
            stream.finish()


# -- error answers --------------------------------------------------------------------------------

DETAIL_TYPES = st.sampled_from(
    [
        "type.googleapis.com/google.rpc.RetryInfo",
        "type.googleapis.com/google.rpc.QuotaFailure",
        "type.googleapis.com/google.rpc.Help",
        "google.rpc.RetryInfo",
    ]
)
DURATION = st.one_of(
    st.sampled_from(["53s", "1.5s", " 2 s", "s", "-1s", "1e3s", ""]),
    st.fixed_dictionaries({}, optional={"seconds": SCALARS, "nanos": SCALARS}),
    json_values(),
)
# Lists, objects, falsy values, numbers and text where the parser expects structure.
VIOLATIONS = st.one_of(
    st.lists(
        st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "quotaId": st.one_of(
                        st.sampled_from(["GenerateRequestsPerDayPerProjectPerModel", "PerMinute"]),
                        json_values(),
                    ),
                    "quotaValue": st.one_of(st.sampled_from(["0", "250", 0]), json_values()),
                },
            ),
            json_values(),
        ),
        max_size=3,
    ),
    st.dictionaries(BMP_TEXT, SCALARS, max_size=2),
    st.sampled_from([None, 0, False, "", "PerDay"]),
    SCALARS,
)
DETAIL = st.one_of(
    st.fixed_dictionaries(
        {"@type": DETAIL_TYPES},
        optional={"retryDelay": DURATION, "retry_delay": DURATION, "violations": VIOLATIONS},
    ),
    json_values(),
)


@st.composite
def error_bodies(draw: st.DrawFn) -> bytes:
    """Raw bytes, any JSON, or a Google error with random details (RetryInfo, QuotaFailure)."""
    kind = draw(st.sampled_from(["bytes", "json", "google", "google"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "json":
        return json.dumps(draw(json_values())).encode()
    error = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "code": SCALARS,
                "status": st.one_of(st.sampled_from(["RESOURCE_EXHAUSTED", ""]), json_values()),
                "message": st.one_of(st.sampled_from(["limit: 0", "x limit: 0, y"]), BMP_TEXT),
                "details": st.one_of(st.lists(DETAIL, max_size=3), json_values()),
            },
        )
    )
    document: Any = {"error": error}
    if draw(st.integers(0, 5)) == 0:
        document = [document]  # some gateways wrap the error in a list
    return json.dumps(document).encode()


@FUZZ
@given(body=error_bodies(), status=st.integers(400, 599))
def test_parse_error_and_classify_error_never_raise(body: bytes, status: int) -> None:
    """Any error body parses into ErrorInfo, and any 4xx/5xx classifies as its status says."""
    info = parse_error(body)
    assert isinstance(info, ErrorInfo)
    check_error_verdict(status, classify_error(status, info))


def check_error_verdict(status: int, verdict: Verdict) -> None:
    """The outcome a status must map to, whatever the body said."""
    expected = {429: Outcome.RATE_LIMITED, 503: Outcome.UNAVAILABLE}.get(status)
    if expected is None:
        expected = Outcome.HTTP_ERROR if status < 500 else Outcome.SERVER_ERROR
    assert verdict.outcome is expected
    if status in (401, 402, 403):
        assert verdict.job_stop


@FUZZ
@given(
    status=st.integers(400, 599),
    info=st.builds(
        ErrorInfo,
        status=st.one_of(st.none(), BMP_TEXT),
        message=st.one_of(st.none(), st.text(max_size=800)),
        retry_delay_s=st.one_of(st.none(), st.floats()),
        quota_per_day=st.booleans(),
        quota_zero=st.booleans(),
        details=st.lists(json_values(), max_size=3),
    ),
)
def test_classify_error_never_raises(status: int, info: ErrorInfo) -> None:
    """classify_error gives the status's outcome for any ErrorInfo, with a message of <= 500."""
    verdict = classify_error(status, info)
    check_error_verdict(status, verdict)
    assert verdict.error is not None and len(verdict.error) <= 500
    if status == 429 and (info.quota_per_day or info.quota_zero):
        assert verdict.job_stop


def _google_error(detail: dict[str, Any]) -> bytes:
    return json.dumps(
        {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "details": [detail]}}
    ).encode()


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            _google_error(
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": 5}
            ),
            id="violations-is-a-number",
        ),
        pytest.param(
            _google_error(
                {
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": {"seconds": 10**400},
                }
            ),
            id="retry-delay-overflows-float",
        ),
        pytest.param(HUGE_NUMBER, id="5000-digit-number"),
        pytest.param(DEEP_NESTING, id="deeply-nested"),
    ],
)
def test_pathological_error_bodies_still_parse(body: bytes) -> None:
    """A malformed 429 body is read as far as it goes, never an exception."""
    assert isinstance(parse_error(body), ErrorInfo)


# -- the manifest ---------------------------------------------------------------------------------


def _loads_or_user_error(path: Path) -> Job | None:
    """load_job's result, or None when it raised UserError (anything else fails the test)."""
    try:
        return load_job(path)
    except UserError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
        return None


@FUZZ
@given(text=st.text(max_size=300))
@example(text="version: 1\nitems: [{prompt: p}]\n")
@example(text="version: 1\nitems: [{prompt: p, image_size: 512}]\n")
@example(text="- a\n- b\n")
@example(text="version: 1\nitems:\n  - prompt: p\n    repeat: 0\n")
@example(text="\ufeffversion: 1\n")
def test_any_yaml_text_loads_or_is_a_user_error(text: str) -> None:
    """Any text as a manifest gives a Job or a UserError with its problems, never another error."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "job.yaml"
        path.write_text(text, encoding="utf-8")
        _loads_or_user_error(path)


# Text for manifest values, NUL included (see test_nul_byte_in_a_path_is_a_user_error). Lone
# surrogates are left out: YAML cannot encode them, so no manifest file can hold one.
MANIFEST_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
MANIFEST_SCALARS = st.one_of(st.none(), st.booleans(), SAFE_INTS, st.floats(), MANIFEST_TEXT)


def manifest_values(*choices: Any) -> st.SearchStrategy[Any]:
    """A key's value: one of its meaningful choices, or anything at all."""
    anything = st.recursive(
        MANIFEST_SCALARS,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(MANIFEST_TEXT, inner, max_size=3)
        ),
        max_leaves=8,
    )
    return st.one_of(st.sampled_from(choices), anything) if choices else anything


SIZES = manifest_values("512", "1K", "2K", "4K", 512, "1k", "8K")
RATIOS = manifest_values("1:1", "16:9", "1:8", "99:1", "16/9", 960)
MODEL_NAMES = [
    "gemini-3-pro-image-preview",
    "gemini-3.1-flash-image",
    "gemini-2.5-flash-image",
    "mystery",
]
MODELS = manifest_values(*MODEL_NAMES)
IMAGES = manifest_values(
    "ref.png",
    "missing.png",
    "../ref.png",
    "notes.txt",
    "https://example.com/x.png",
    "https://example.com/x",
    {"url": "https://example.com/y", "mime_type": "image/webp"},
    {"path": "ref.png", "mime_type": "image/jpeg"},
    {"url": "a", "path": "b"},
)
ITEM = st.fixed_dictionaries(
    {},
    optional={
        "id": manifest_values("a", "b", "1", 7, "../x", "a+b", "-x"),
        "prompt": manifest_values("a fox", ""),
        "images": st.one_of(st.lists(IMAGES, max_size=3), manifest_values()),
        "repeat": manifest_values(1, 3, 0, -1, 10_001),
        "model": MODELS,
        "image_size": SIZES,
        "aspect_ratio": RATIOS,
        "system_prompt": manifest_values("be brief"),
        "response_modalities": manifest_values(["TEXT", "IMAGE"], ["IMAGE"], ["TEXT"], []),
        "imgae_size": manifest_values("2K"),
    },
)
MANIFEST = st.fixed_dictionaries(
    {"version": manifest_values(1, 2, "1")},
    optional={
        "job": manifest_values("night", "bad name", ""),
        "endpoint": manifest_values(
            "https://api.apiyi.com",
            "simulate",
            "http://127.0.0.1:8765",
            "http://example.com",
            "https://x.test/v1beta/models/m:generateContent",
            "https://x.test?key=sk-1",
            "ftp://x",
        ),
        "auth": manifest_values("bearer", "google", "basic"),
        "api_key_env": manifest_values("MY_KEY", "1BAD", "BATCHBANANA_API_KEY"),
        "model": MODELS,
        "image_size": SIZES,
        "aspect_ratio": RATIOS,
        "system_prompt": manifest_values("be brief"),
        "response_modalities": manifest_values(["TEXT", "IMAGE"], ["IMAGE"]),
        "concurrency": manifest_values(1, 8, 0, 1025),
        "budget_usd": manifest_values(0, 2.5, -1, float("inf"), float("nan")),
        "output_dir": manifest_values("out", "ref.png", "", "/"),
        "ledger": manifest_values("out/ledger.jsonl", "l.jsonl", ""),
        "timeouts": st.one_of(
            st.dictionaries(
                st.sampled_from(["512", "1K", "2K", "4K", "connect", "5K", 512]),
                manifest_values(1, 0, -5, 0.5),
                max_size=4,
            ),
            manifest_values(),
        ),
        "retry": st.one_of(
            st.dictionaries(
                st.sampled_from(
                    ["max_attempts", "base_delay_s", "max_delay_s", "max_wait_s", "tries"]
                ),
                manifest_values(0, 1, 6, 101, 0.5),
                max_size=4,
            ),
            manifest_values(),
        ),
        "adaptive": manifest_values(True, False),
        "rate_limit_rpm": manifest_values(60, 0),
        "inline_urls": manifest_values(True, False),
        "optimize_inputs": manifest_values("none", "lossless", "lossy"),
        "allow_insecure_http": manifest_values(True, False),
        "price_book": manifest_values("apiyi", "google", "retail"),
        "pricing": st.one_of(
            st.dictionaries(
                st.one_of(st.sampled_from(MODEL_NAMES), MANIFEST_TEXT, SAFE_INTS),
                st.one_of(
                    st.dictionaries(
                        st.sampled_from(["per_request_usd", "per_million_tokens_usd", "usd"]),
                        manifest_values(0.1, -1, 30),
                        max_size=2,
                    ),
                    manifest_values(),
                ),
                max_size=2,
            ),
            manifest_values(),
        ),
        "items": st.one_of(st.lists(ITEM, max_size=4), manifest_values()),
        "items_file": manifest_values("rows.csv", "rows.jsonl", "missing.csv", "ref.png", ""),
        "items_file_encoding": manifest_values("utf-8", "gb18030", "utf-16", "base64", "nope"),
        "image_sise": manifest_values("2K"),
    },
)
ROWS_CSV = "id,prompt,image_size,images\nr1,a cat,2K,ref.png\nr2,,,\nr3,a dog,1k,\n"
ROWS_JSONL = '{"prompt": "a cat", "repeat": 2}\nnot json\n[1]\n{"prompt": "x", "bogus": 1}\n'


@FUZZ
@given(document=MANIFEST)
def test_any_schema_shaped_manifest_loads_or_is_a_user_error(document: dict[str, Any]) -> None:
    """A manifest built from the real keys with random values gives a Job or a UserError."""
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        (base / "ref.png").write_bytes(PNG)
        (base / "notes.txt").write_text("not an image")
        (base / "rows.csv").write_text(ROWS_CSV)
        (base / "rows.jsonl").write_text(ROWS_JSONL)
        path = base / "job.yaml"
        path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
        job = _loads_or_user_error(path)
        if job is not None:
            assert job.items and len({item.id for item in job.items}) == len(job.items)
            assert job.output_dir.is_absolute() and job.ledger_path.is_absolute()


@pytest.mark.parametrize(
    "key", ["output_dir", "ledger", "items_file", "image"], ids=lambda key: key
)
def test_nul_byte_in_a_path_is_a_user_error(key: str, tmp_path: Path) -> None:
    """A path with a NUL byte is one readable problem (exit 2), not a traceback."""
    document: dict[str, Any] = {"version": 1, "items": [{"prompt": "p"}]}
    if key == "image":
        document["items"][0]["images"] = ["a\x00b.png"]
    else:
        document[key] = "a\x00b.csv"
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(UserError):
        load_job(path)


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(
            {"version": 1, "endpoint": "https://[api.apiyi.com", "items": [{"prompt": "p"}]},
            id="endpoint",
        ),
        pytest.param(
            {"version": 1, "items": [{"prompt": "p", "images": ["https://[cdn/x.png"]}]},
            id="image-url",
        ),
    ],
)
def test_unclosed_ipv6_bracket_is_a_user_error(document: dict[str, Any], tmp_path: Path) -> None:
    """A URL with an unclosed `[` is reported as a bad URL, not a traceback."""
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(UserError):
        load_job(path)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("version: 1\nitems: &x [*x]\n", id="items"),
        pytest.param("version: 1\njob: &x [*x]\nitems: [{prompt: p}]\n", id="job"),
    ],
)
def test_recursive_yaml_alias_is_a_user_error(text: str, tmp_path: Path) -> None:
    """A self-referencing alias is one problem line, not a RecursionError."""
    path = tmp_path / "job.yaml"
    path.write_text(text)
    with pytest.raises(UserError):
        load_job(path)


def _alias_ladder(depth: int) -> str:
    """YAML whose key x{n} lists x{n-1} twice by alias: 2**depth leaves from `depth` lines."""
    lines = ["version: 1", "items: [{prompt: p}]", "x0: &x0 [a, a]"]
    lines += [f"x{n}: &x{n} [*x{n - 1}, *x{n - 1}]" for n in range(1, depth)]
    return "\n".join(lines) + "\n"


def test_alias_ladder_is_read_in_time_linear_in_its_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 14-line alias ladder is mapped node by node, not once per path through the aliases."""
    path = tmp_path / "job.yaml"
    path.write_text(_alias_ladder(14))
    original = manifest_module._map_lines
    calls = 0

    def counting(*args: Any) -> None:
        nonlocal calls
        calls += 1
        original(*args)

    monkeypatch.setattr(manifest_module, "_map_lines", counting)
    with pytest.raises(UserError):  # x0..x13 are unknown keys
        load_job(path)
    assert calls < 1_000  # the document has about 60 nodes; 2**14 leaves if walked per alias


def test_huge_image_file_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    """An input image of 3 GB is refused as over 7 MB (exit 2) without being read into memory."""
    big = tmp_path / "movie.png"
    with big.open("wb") as handle:
        handle.write(PNG)
        handle.truncate(3_000_000_000)  # sparse: no disk used
    manifest = tmp_path / "job.yaml"
    manifest.write_text(
        yaml.safe_dump({"version": 1, "items": [{"prompt": "p", "images": [big.name]}]})
    )
    child = subprocess.run(
        [sys.executable, "-m", "batchbanana", "plan", str(manifest)],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (2_000_000_000,) * 2),
        check=False,
    )
    assert child.returncode == 2, child.stderr
    assert "7 MB" in child.stderr and "Traceback" not in child.stderr


# -- the ledger -----------------------------------------------------------------------------------

VALID_LEDGER = (
    b'{"event": "job", "run_id": "r-1", "command": "run"}\n'
    b'{"event": "sent", "item": "a", "attempt": 1, "fingerprint": "sha256:f", "price_usd": 0.09}\n'
    b'{"event": "result", "item": "a", "attempt": 1, "fingerprint": "sha256:f", "outcome": "ok",'
    b' "billed": "yes", "price_usd": 0.09}\n'
)
LEDGER_LINES = st.one_of(
    st.binary(max_size=200),
    json_values().map(lambda value: json.dumps(value).encode()),
    st.dictionaries(
        st.sampled_from(["event", "item", "attempt", "fingerprint", "billed", "price_usd"]),
        SCALARS,
        max_size=5,
    ).map(lambda value: json.dumps(value).encode()),
).map(lambda line: line.replace(b"\n", b" "))


@FUZZ
@given(line=LEDGER_LINES, ended=st.booleans())
@example(line=b'{"event": "result", "item": "a"', ended=False)
@example(line=b"\xff\xfe garbage", ended=True)
@example(line=b'{"event": 5}', ended=True)
def test_any_appended_line_is_read_or_skipped_with_its_line_number(
    line: bytes, ended: bool
) -> None:
    """A line appended to a valid ledger is read as a record, or skipped with a warning naming
    line 4; the three valid lines before it are always read."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ledger.jsonl"
        path.write_bytes(VALID_LEDGER + line + (b"\n" if ended else b""))
        read = read_ledger(path)
    assert [r["event"] for r in read.records[:3]] == ["job", "sent", "result"]
    if len(read.records) == 4:
        assert read.warnings == []
    else:
        assert len(read.records) == 3
        if line.strip():
            assert len(read.warnings) == 1 and f"{path}:4:" in read.warnings[0]
        else:
            assert read.warnings == []
    assert isinstance(replay(read.records), LedgerState)


@pytest.mark.parametrize(
    "line",
    [pytest.param(HUGE_NUMBER, id="5000-digit-number"), pytest.param(DEEP_NESTING, id="deep")],
)
def test_pathological_ledger_line_is_skipped_with_a_warning(line: bytes, tmp_path: Path) -> None:
    """A garbage line that JSON cannot represent is skipped with a warning, like any other."""
    path = tmp_path / "ledger.jsonl"
    path.write_bytes(VALID_LEDGER + line + b"\n")
    read = read_ledger(path)
    assert len(read.records) == 3 and ":4:" in read.warnings[0]


RECORD_FIELDS = st.sampled_from(
    ["event", "item", "fingerprint", "attempt", "outcome", "billed", "price_usd", "spec"]
)
RECORD_VALUES = st.one_of(
    st.sampled_from(["job", "sent", "result", "a", "b", "sha256:f", "yes", "no", "unknown", 1, 2]),
    json_values(max_leaves=4),
)


@FUZZ
@given(
    records=st.lists(
        st.dictionaries(st.one_of(RECORD_FIELDS, BMP_TEXT), RECORD_VALUES, max_size=8),
        max_size=10,
    )
)
def test_replay_never_raises_whatever_the_field_types(records: list[dict[str, Any]]) -> None:
    """replay folds any list of dict records, with any field types, into a LedgerState."""
    state = replay(records)
    assert isinstance(state, LedgerState)
    assert isinstance(state.spent_usd, float) and isinstance(state.possibly_spent_usd, float)
    for item_id, history in state.items.items():
        assert isinstance(item_id, str)
        assert isinstance(history.attempts, int)


def test_replay_survives_an_astronomic_integer_price() -> None:
    """A price too large for a float counts as 0 (never inf, never a crash) on result and sent
    lines alike; those lines still count as billed, and every other line's price still counts."""
    line = {"fingerprint": "fp", "attempt": 1}
    state = replay(
        [
            {**line, "event": "result", "item": "a", "billed": "yes", "price_usd": 10**400},
            {**line, "event": "result", "item": "b", "billed": "yes", "price_usd": 0.09},
            {**line, "event": "result", "item": "c", "billed": "unknown", "price_usd": -(10**400)},
            {**line, "event": "result", "item": "d", "billed": "unknown", "price_usd": 0.134},
            {**line, "event": "sent", "item": "e", "price_usd": 10**400},
            {**line, "event": "sent", "item": "f", "price_usd": 0.055},
        ]
    )
    assert state.spent_usd == 0.09
    assert state.possibly_spent_usd == round(0.134 + 0.055, 6)
    assert sorted(state.dangling()) == [("e", "fp", 1, 0.0), ("f", "fp", 1, 0.055)]
    # The lines still count as billed, so `run` does not send those items again.
    assert [state.items[item].current().billed for item in "abcd"] == [
        "yes",
        "yes",
        "unknown",
        "unknown",
    ]
