"""The simulator answers like Google's generateContent endpoint, injects faults and bills."""

from __future__ import annotations

import asyncio
import base64
import email.utils
import io
import json
import re
import struct
import subprocess
import sys
import time
import urllib.request
import zlib
from collections.abc import AsyncIterator
from contextlib import nullcontext
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from batchbanana import simulator
from batchbanana.simulator import (
    Directive,
    DirectiveError,
    Plan,
    RunningSimulator,
    SimulatorConfig,
    encode_png,
    parse_directives,
    plan_request,
    run_simulator,
    simulator_in_thread,
)

PRO = "gemini-3-pro-image-preview"
FLASH_31 = "gemini-3.1-flash-image-preview"
FLASH_25 = "gemini-2.5-flash-image"
KEY = {"x-goog-api-key": "sk-test-secret"}
SMALL_PNG = encode_png(30, 10, (0, 0, 0), (255, 255, 255))
NO_BATCHES = {"batch_requests": 0, "batch_usd": 0.0, "batches_created": 0}  # the bill's batch share


# --- helpers ----------------------------------------------------------------------------------


def request_body(
    prompt: str = "a banana",
    *,
    size: str | None = None,
    ratio: str | None = None,
    images: list[dict[str, Any]] | None = None,
    modalities: list[str] | None = None,
) -> dict[str, Any]:
    """A camelCase generateContent body, as the contract's client sends it."""
    parts: list[dict[str, Any]] = [{"text": prompt}, *(images or [])]
    image_config = {k: v for k, v in (("imageSize", size), ("aspectRatio", ratio)) if v}
    generation: dict[str, Any] = {"responseModalities": modalities or ["TEXT", "IMAGE"]}
    if image_config:
        generation["imageConfig"] = image_config
    return {"contents": [{"role": "user", "parts": parts}], "generationConfig": generation}


def inline(data: bytes, mime: str = "image/png") -> dict[str, Any]:
    return {"inlineData": {"mimeType": mime, "data": base64.b64encode(data).decode()}}


class Answer:
    """What came back: status, headers, raw body and the JSON if it parsed."""

    def __init__(self, status: int, headers: Any, raw: bytes) -> None:
        self.status = status
        self.headers = headers
        self.raw = raw
        try:
            self.json: Any = json.loads(raw)
        except ValueError:
            self.json = None

    @property
    def parts(self) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = self.json["candidates"][0]["content"]["parts"]
        return parts

    def images(self) -> list[bytes]:
        return [
            base64.b64decode(p["inlineData"]["data"])
            for p in self.parts
            if "inlineData" in p and not p.get("thought")
        ]


async def post(
    http: aiohttp.ClientSession,
    sim: RunningSimulator,
    body: Any,
    *,
    model: str = PRO,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> Answer:
    url = f"{sim.url}/v1beta/models/{model}:generateContent"
    # A stream, not bytes: aiohttp warns about large bytes bodies, and warnings are errors here.
    data = io.BytesIO(body if isinstance(body, bytes) else json.dumps(body).encode())
    async with http.post(
        url, data=data, headers=KEY if headers is None else headers, params=params
    ) as response:
        return Answer(response.status, response.headers, await response.read())


def decode_png(data: bytes) -> tuple[int, int]:
    """(width, height) of a PNG after checking every CRC and inflating the pixel data."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset, chunks = 8, []
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        payload = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert zlib.crc32(kind + payload) == crc, kind
        chunks.append((kind, payload))
        offset += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    width, height, depth, colour = struct.unpack(">IIBB", chunks[0][1][:10])
    assert (depth, colour) == (8, 3)
    pixels = zlib.decompress(b"".join(p for k, p in chunks if k == b"IDAT"))
    assert len(pixels) == height * (1 + width)
    return width, height


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[RunningSimulator]:
    async with run_simulator(SimulatorConfig()) as running:
        yield running


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


# --- pure parts -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        pytest.param("a cat", parse_directives(""), id="none"),
        pytest.param(
            "[sim:429x2] a cat",
            simulator.Directives(faults=(Directive("429", None, 2),)),
            id="counted-429",
        ),
        pytest.param(
            "[sim:503,500x3]",
            simulator.Directives(faults=(Directive("503", None, 1), Directive("500", None, 3))),
            id="two-faults",
        ),
        pytest.param(
            "x [sim:slow:0.5] y [sim:refuse]",
            simulator.Directives(shapes=(Directive("slow", 0.5), Directive("refuse"))),
            id="two-brackets",
        ),
        pytest.param(
            "[sim:retry_after:3]",
            simulator.Directives(faults=(Directive("429", None, 1),), retry_after_s=3.0),
            id="hint-implies-429",
        ),
        pytest.param(
            "[sim:503x2, retry_date:4]",
            simulator.Directives(faults=(Directive("503", None, 2),), retry_date_s=4.0),
            id="hint-on-503",
        ),
        pytest.param(
            "[sim:dropx1]",
            simulator.Directives(shapes=(Directive("drop", None, 1),)),
            id="counted-shape",
        ),
    ],
)
def test_parse_directives(prompt: str, expected: simulator.Directives) -> None:
    """Directives are read from every `[sim:...]` bracket, with counts, seconds and hints."""
    assert parse_directives(prompt) == expected


@pytest.mark.parametrize(
    "prompt",
    [
        "[sim:teapot]",
        "[sim:slow]",
        "[sim:refuse:3]",
        "[sim:retry_after:2x3]",
        "[sim:429x]",
        "[sim:429x0]",
    ],
)
def test_parse_directives_rejects_unknown(prompt: str) -> None:
    """A directive the simulator does not know is an error whose message carries a HINT."""
    with pytest.raises(DirectiveError, match="HINT"):
        parse_directives(prompt)


@pytest.mark.parametrize(
    ("index", "expected"),
    [
        pytest.param(0, Plan(fault="429"), id="first"),
        pytest.param(1, Plan(fault="429"), id="second"),
        pytest.param(2, Plan(fault="503"), id="then-503"),
        pytest.param(3, Plan(shapes=frozenset({"thought", "cut"})), id="then-shapes"),
        pytest.param(4, Plan(shapes=frozenset({"thought"})), id="counted-shape-spent"),
    ],
)
def test_plan_request_walks_faults_then_shapes(index: int, expected: Plan) -> None:
    """Faults are answered in order, each N times; then shapes apply (counted ones N times)."""
    directives = parse_directives("[sim:429x2,503,thought,cutx1]")
    assert plan_request(directives, index) == expected


# --- images -----------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("model", "size", "ratio", "expected"),
    [
        pytest.param(PRO, "1K", "1:1", (1024, 1024), id="pro-1K-square"),
        pytest.param(PRO, "2K", "16:9", (2048, 1152), id="pro-2K-16:9"),
        pytest.param(PRO, "4K", "9:16", (2304, 4096), id="pro-4K-9:16"),
        pytest.param(PRO, None, None, (1024, 1024), id="pro-defaults"),
        pytest.param(FLASH_31, "512", "8:1", (512, 64), id="flash31-512-8:1"),
        pytest.param(FLASH_31, "1K", "1:4", (256, 1024), id="flash31-1K-1:4"),
        pytest.param(FLASH_25, None, "21:9", (1024, 439), id="flash25-21:9"),
    ],
)
async def test_png_size_follows_image_size_and_ratio(
    sim: RunningSimulator,
    http: aiohttp.ClientSession,
    model: str,
    size: str | None,
    ratio: str | None,
    expected: tuple[int, int],
) -> None:
    """A request returns one valid PNG whose long side is set by imageSize and shape by ratio."""
    answer = await post(http, sim, request_body(size=size, ratio=ratio), model=model)
    assert answer.status == 200
    assert answer.json["candidates"][0]["finishReason"] == "STOP"
    assert answer.json["modelVersion"] == model
    (png,) = answer.images()
    assert decode_png(png) == expected


@pytest.mark.asyncio
async def test_ratio_follows_last_input_png(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    """Without aspectRatio, the output takes the shape of the last input PNG (here 3:1)."""
    answer = await post(http, sim, request_body(images=[inline(SMALL_PNG)]))
    assert decode_png(answer.images()[0]) == (1024, 341)


@pytest.mark.asyncio
async def test_image_bytes_pads_the_png() -> None:
    """With image_bytes set, each PNG is about that many bytes and still valid."""
    async with (
        run_simulator(SimulatorConfig(image_bytes=300_000)) as sim,
        aiohttp.ClientSession() as http,
    ):
        answer = await post(http, sim, request_body())
    (png,) = answer.images()
    assert len(png) == 300_000
    assert decode_png(png) == (1024, 1024)


@pytest.mark.asyncio
async def test_modalities_image_only_has_no_text(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    """With responseModalities ["IMAGE"], the answer holds the image and no text part."""
    answer = await post(http, sim, request_body(modalities=["IMAGE"]))
    assert [list(p) for p in answer.parts] == [["inlineData"]]


# --- validation -------------------------------------------------------------------------------

_BIG_JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 7_000_001
_INVALID = [
    pytest.param(request_body(size="512"), PRO, "HINT", id="pro-512"),
    pytest.param(request_body(size="1K"), FLASH_25, "leave imageSize out", id="flash25-any-size"),
    pytest.param(request_body(ratio="1:4"), PRO, "HINT", id="pro-1:4"),
    pytest.param(request_body(size="1k"), FLASH_31, "HINT", id="lowercase-size"),
    pytest.param(
        request_body(images=[{"inlineData": {"mimeType": "image/png", "data": "@@@"}}]),
        PRO,
        "Base64",
        id="bad-base64",
    ),
    pytest.param(
        request_body(images=[inline(SMALL_PNG, "image/jpeg")]),
        PRO,
        "does not match",
        id="mime-mismatch",
    ),
    pytest.param(
        request_body(images=[inline(b"just some text\n", "image/png")]),
        PRO,
        "not png",
        id="text-file",
    ),
    pytest.param(request_body(images=[inline(SMALL_PNG)] * 15), PRO, "at most 14", id="15-images"),
    pytest.param(
        request_body(images=[inline(_BIG_JPEG, "image/jpeg")]), PRO, "7000000", id="over-7MB"
    ),
    pytest.param(
        {"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"candidateCount": 2}},
        PRO,
        "candidates",
        id="candidate-count",
    ),
    pytest.param(b"{not json", PRO, "JSON", id="not-json"),
    pytest.param({"generationConfig": {}}, PRO, "contents", id="no-contents"),
    pytest.param(
        {"contents": [{"role": "user", "parts": [{"text": ""}]}]},
        PRO,
        "empty text",
        id="empty-text",
    ),
    pytest.param(request_body("[sim:teapot]"), PRO, "HINT", id="unknown-directive"),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("body", "model", "message"), _INVALID)
async def test_rejects_what_google_rejects(
    sim: RunningSimulator, http: aiohttp.ClientSession, body: Any, model: str, message: str
) -> None:
    """An invalid request gets 400 INVALID_ARGUMENT with a message that says what is wrong."""
    answer = await post(http, sim, body, model=model)
    assert answer.status == 400
    assert answer.json["error"]["status"] == "INVALID_ARGUMENT"
    assert message in answer.json["error"]["message"]
    assert sim.bill()["billed_requests"] == 0


@pytest.mark.asyncio
async def test_body_over_the_limit_is_refused(
    sim: RunningSimulator, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body at or over the size limit is refused with the error JSON (limit lowered here)."""
    monkeypatch.setattr(simulator.handlers, "MAX_BODY_BYTES", 2_000)
    answer = await post(http, sim, request_body("x" * 3_000))
    assert answer.status == 400
    assert "payload size" in answer.json["error"]["message"]


@pytest.mark.asyncio
@pytest.mark.parametrize("model", ["gemini-9-image", f"{PRO}:streamGenerateContent"])
async def test_unknown_model_or_method_is_404(
    sim: RunningSimulator, http: aiohttp.ClientSession, model: str
) -> None:
    """An unknown model or method gets 404 NOT_FOUND with the error JSON."""
    url = f"{sim.url}/v1beta/models/{model}"
    if ":" not in model:
        url += ":generateContent"
    async with http.post(url, json=request_body(), headers=KEY) as response:
        assert response.status == 404
        assert (await response.json())["error"]["status"] == "NOT_FOUND"


@pytest.mark.asyncio
async def test_snake_case_request_is_accepted(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    """snake_case keys and unpadded URL-safe base64 are read like their camelCase forms."""
    data = base64.urlsafe_b64encode(SMALL_PNG).decode().rstrip("=")
    body = {
        "system_instruction": {"parts": [{"text": "be nice"}]},
        "contents": [{"role": "user", "parts": [
            {"text": "a banana"}, {"inline_data": {"mime_type": "image/png", "data": data}},
            {"file_data": {"mime_type": "image/jpeg", "file_uri": "gs://bucket/a.jpg"}}]}],
        "generation_config": {"response_modalities": ["IMAGE"],
                              "image_config": {"aspect_ratio": "4:5", "image_size": "2K"}},
    }  # fmt: skip
    answer = await post(http, sim, body)
    assert answer.status == 200
    assert decode_png(answer.images()[0]) == (1638, 2048)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("headers", "params"),
    [
        pytest.param({"Authorization": "Bearer sk-1"}, None, id="bearer"),
        pytest.param({"x-goog-api-key": "sk-1"}, None, id="goog-header"),
        pytest.param({}, {"key": "sk-1"}, id="query"),
    ],
)
async def test_any_key_is_accepted(
    sim: RunningSimulator,
    http: aiohttp.ClientSession,
    headers: dict[str, str],
    params: dict[str, str] | None,
) -> None:
    """Either auth header or ?key= with any non-empty key is accepted."""
    answer = await post(http, sim, request_body(), headers=headers, params=params)
    assert answer.status == 200


@pytest.mark.asyncio
async def test_missing_key_is_401(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    """A request without a key gets 401 UNAUTHENTICATED and is not billed."""
    answer = await post(http, sim, request_body(), headers={"Authorization": "Bearer "})
    assert answer.status == 401
    assert answer.json["error"]["status"] == "UNAUTHENTICATED"
    assert sim.bill() == {"billed_requests": 0, "billed_usd": 0.0, "requests": 1, **NO_BATCHES}


# --- fault directives -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_429x2_then_success(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    """`[sim:429x2]` answers 429 twice for that exact prompt, then 200, unbilled until then."""
    statuses = [
        (await post(http, sim, request_body("[sim:429x2] a pear"))).status for _ in range(4)
    ]
    assert statuses == [429, 429, 200, 200]
    assert (await post(http, sim, request_body("[sim:429x2] a plum"))).status == 429
    stats = sim.stats()
    assert stats["by_prompt"] == {"[sim:429x2] a pear": 4, "[sim:429x2] a plum": 1}
    assert stats["by_status"] == {"429": 3, "200": 2}
    assert stats["billed_requests"] == 2


@pytest.mark.asyncio
async def test_retry_hints(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    """retry_after, retry_date and retry_info put the demanded wait where clients look for it."""
    after = await post(http, sim, request_body("[sim:503,retry_after:3]"))
    assert (after.status, after.headers["Retry-After"]) == (503, "3")
    dated = await post(http, sim, request_body("[sim:retry_date:60]"))
    when = email.utils.parsedate_to_datetime(dated.headers["Retry-After"]).timestamp()
    assert dated.status == 429 and 50 < when - time.time() <= 61
    info = await post(http, sim, request_body("[sim:retry_info:53]"))
    assert "Retry-After" not in info.headers
    assert info.json["error"]["details"] == [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "53s"}
    ]


@pytest.mark.asyncio
async def test_quota_failures(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    """quota_day names a PerDay quota; quota_zero has quotaValue "0" and "limit: 0"."""
    day = (await post(http, sim, request_body("[sim:quota_day]"))).json["error"]
    assert day["code"] == 429 and day["status"] == "RESOURCE_EXHAUSTED"
    assert "PerDay" in day["details"][0]["violations"][0]["quotaId"]
    zero = (await post(http, sim, request_body("[sim:quota_zero]"))).json["error"]
    assert zero["details"][0]["violations"][0]["quotaValue"] == "0"
    assert "PerDay" not in zero["details"][0]["violations"][0]["quotaId"]
    assert "limit: 0" in zero["message"]


@pytest.mark.asyncio
async def test_key_is_echoed_only_by_echo_key_403(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    """Error messages never hold the key, except echo_key_403, which echoes it on purpose."""
    for code in ("400", "401", "402", "403", "500", "503", "504"):
        answer = await post(http, sim, request_body(f"[sim:{code}]"))
        assert answer.status == int(code)
        assert "sk-test-secret" not in answer.raw.decode()
    echoed = await post(http, sim, request_body("[sim:echo_key_403]"))
    assert echoed.status == 403 and "sk-test-secret" in echoed.json["error"]["message"]


@pytest.mark.asyncio
async def test_refuse_no_image_and_block(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    """refuse, no_image and block answer 200 in Gemini's three no-image shapes, all billed."""
    refused = await post(http, sim, request_body("[sim:refuse]"))
    assert refused.json["candidates"][0]["finishReason"] == "IMAGE_SAFETY"
    assert [list(p) for p in refused.parts] == [["text"]]
    no_image = await post(http, sim, request_body("[sim:no_image]"))
    assert no_image.json["candidates"][0]["finishReason"] == "STOP"
    assert [list(p) for p in no_image.parts] == [["text"]]
    blocked = await post(http, sim, request_body("[sim:block]"))
    assert "candidates" not in blocked.json
    assert blocked.json["promptFeedback"]["blockReason"] == "SAFETY"
    assert {refused.status, no_image.status, blocked.status} == {200}
    assert sim.bill()["billed_requests"] == 3


@pytest.mark.asyncio
async def test_answer_shapes(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    """snake, urlsafe, escaped_slashes, gzip, thought, two_images and jpeg shape a valid answer."""
    shaped = await post(http, sim, request_body("[sim:snake,urlsafe,nopad,escaped_slashes,gzip]"))
    assert shaped.headers["Content-Encoding"] == "gzip"
    assert "\\/" in shaped.raw.decode() and "usage_metadata" in shaped.json
    data = shaped.json["candidates"][0]["content"]["parts"][1]["inline_data"]["data"]
    assert "+" not in data and "/" not in data and not data.endswith("=")
    decode_png(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))

    drafted = await post(http, sim, request_body("[sim:thought,two_images]"))
    kinds = [
        ("thought" if p.get("thought") else "final") for p in drafted.parts if "inlineData" in p
    ]
    assert kinds == ["thought", "final", "final"]
    assert len(set(drafted.images())) == 2

    jpeg = (await post(http, sim, request_body("[sim:jpeg]", ratio="16:9"))).images()[0]
    assert jpeg.startswith(b"\xff\xd8\xff") and jpeg.endswith(b"\xff\xd9")
    sof = jpeg.index(b"\xff\xc0")
    assert struct.unpack(">HH", jpeg[sof + 5 : sof + 9]) == (576, 1024)


@pytest.mark.asyncio
async def test_broken_bodies(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    """bad_json is a 200 that does not parse; bad_b64 holds image data that is not base64."""
    bad_json = await post(http, sim, request_body("[sim:bad_json]"))
    assert bad_json.status == 200 and bad_json.json is None
    bad_b64 = await post(http, sim, request_body("[sim:bad_b64]"))
    data = bad_b64.parts[1]["inlineData"]["data"]
    with pytest.raises(ValueError):
        base64.b64decode(data, validate=True)
    html = await post(http, sim, request_body("[sim:html503]"))
    assert html.status == 503 and html.headers["Content-Type"].startswith("text/html")


@pytest.mark.asyncio
async def test_drop_closes_the_connection(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    """`drop` reads the request and closes the socket: the client sees a disconnect, and pays."""
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await post(http, sim, request_body("[sim:drop]"))
    assert sim.stats()["by_status"] == {"drop": 1}
    assert sim.bill()["billed_requests"] == 1


@pytest.mark.asyncio
async def test_cut_and_trickle(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    """`cut` ends the body halfway; `trickle:S` delivers the whole body spread over S seconds."""
    with pytest.raises(aiohttp.ClientPayloadError):
        await post(http, sim, request_body("[sim:cut]"))
    started = time.monotonic()
    trickled = await post(http, sim, request_body("[sim:trickle:0.3]"))
    assert time.monotonic() - started >= 0.29
    assert decode_png(trickled.images()[0]) == (1024, 1024)


@pytest.mark.asyncio
async def test_slow_answer_is_billed_when_client_gives_up(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    """A slow answer is billed when generation starts, even if the client disconnects first."""
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(post(http, sim, request_body("[sim:slow:0.4]")), timeout=0.1)
    assert sim.bill()["billed_requests"] == 1


@pytest.mark.asyncio
async def test_max_in_flight(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    """Six concurrent slow requests are all in flight at once, and none is left afterwards."""
    await asyncio.gather(*(post(http, sim, request_body(f"[sim:slow:0.3] {i}")) for i in range(6)))
    stats = sim.stats()
    assert (stats["max_in_flight"], stats["in_flight"], stats["requests"]) == (6, 0, 6)


@pytest.mark.asyncio
async def test_reset(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    """POST /_sim/reset zeroes the bill, the stats and the directive counters."""
    assert (await post(http, sim, request_body("[sim:429]"))).status == 429
    assert (await post(http, sim, request_body("[sim:429]"))).status == 200
    async with http.post(f"{sim.url}/_sim/reset") as response:
        assert response.status == 200
    assert sim.bill() == {"billed_requests": 0, "billed_usd": 0.0, "requests": 0, **NO_BATCHES}
    assert (await post(http, sim, request_body("[sim:429]"))).status == 429


@pytest.mark.asyncio
async def test_random_rates_are_seeded_and_skip_directives() -> None:
    """Config rates fault plain prompts (with Retry-After when set) but never directive prompts."""
    config = SimulatorConfig(rate_429=1.0, retry_after_s=2, seed=7)
    async with run_simulator(config) as sim, aiohttp.ClientSession() as http:
        plain = await post(http, sim, request_body("a plain prompt"))
        directed = await post(http, sim, request_body("[sim:no_image] a prompt"))
    assert (plain.status, plain.headers["Retry-After"]) == (429, "2")
    assert directed.status == 200


@pytest.mark.asyncio
async def test_latency(http: aiohttp.ClientSession) -> None:
    """latency_s is added before every answer."""
    async with run_simulator(SimulatorConfig(latency_s=0.2)) as sim:
        started = time.monotonic()
        await post(http, sim, request_body())
    assert time.monotonic() - started >= 0.19


# --- the bill ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_bill_counts_only_billed_outcomes(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    """Only outcomes where the model ran are billed: 200s, drop, 502 and 504; not 4xx/429/5xx."""
    billed = ["ok", "[sim:refuse]", "[sim:bad_json]", "[sim:502]", "[sim:504]", "[sim:cut]"]
    free = [
        "[sim:400]",
        "[sim:401]",
        "[sim:402]",
        "[sim:403]",
        "[sim:429]",
        "[sim:500]",
        "[sim:503]",
        "[sim:html503]",
        "[sim:quota_day]",
    ]
    for prompt in billed + free:
        with pytest.raises(aiohttp.ClientPayloadError) if "cut" in prompt else nullcontext():
            await post(http, sim, request_body(prompt))
    await post(http, sim, request_body(size="512"))  # invalid for this model: not billed
    expected = {"billed_requests": 6, "billed_usd": 0.54, "requests": 16, **NO_BATCHES}
    assert sim.bill() == expected
    async with http.get(f"{sim.url}/_sim/bill") as response:  # no key needed
        assert await response.json() == expected


@pytest.mark.asyncio
async def test_google_price_book(http: aiohttp.ClientSession) -> None:
    """The google book bills per image by model and size (2.5 Flash at its one 1K price)."""
    async with run_simulator(SimulatorConfig(price_book="google")) as sim:
        await post(http, sim, request_body(size="4K"), model=PRO)
        await post(http, sim, request_body(size="2K"), model="gemini-3-pro-image")
        await post(http, sim, request_body(size="512"), model=FLASH_31)
        await post(http, sim, request_body(), model=FLASH_25)
        assert sim.bill()["billed_usd"] == pytest.approx(0.24 + 0.134 + 0.045 + 0.039, abs=1e-9)
        assert sim.bill()["billed_usd"] == 0.458


@pytest.mark.asyncio
async def test_apiyi_book_and_custom_price(http: aiohttp.ClientSession) -> None:
    """apiyi bills per request by model; a price_usd callable overrides any book."""
    async with run_simulator(SimulatorConfig()) as sim:
        for model in (PRO, FLASH_31, FLASH_25):
            await post(http, sim, request_body(), model=model)
        assert sim.bill()["billed_usd"] == 0.165
    seen: list[tuple[str, str]] = []

    def price(model: str, size: str) -> float:
        seen.append((model, size))
        return 0.1

    async with run_simulator(SimulatorConfig(price_usd=price)) as sim:
        for _ in range(3):
            await post(http, sim, request_body(), model=FLASH_25)
        assert sim.bill()["billed_usd"] == 0.3  # exact: the sum is kept in Decimal
    assert seen == [(FLASH_25, "1K")] * 3


# --- running it -------------------------------------------------------------------------------


def test_simulator_in_thread_from_sync_code() -> None:
    """simulator_in_thread serves a synchronous client; its bill is readable from this thread."""
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # ignore *_proxy vars
    with simulator_in_thread(SimulatorConfig()) as sim:
        request = urllib.request.Request(
            f"{sim.url}/v1beta/models/{PRO}:generateContent",
            data=json.dumps(request_body()).encode(),
            headers={"Authorization": "Bearer sk-1", "Content-Type": "application/json"},
        )
        with direct.open(request, timeout=10) as response:
            assert response.status == 200
        with direct.open(f"{sim.url}/_sim/stats", timeout=10) as response:
            assert json.load(response)["by_status"] == {"200": 1}
        assert sim.bill() == {"billed_requests": 1, "billed_usd": 0.09, "requests": 1, **NO_BATCHES}


def test_serve_prints_its_address() -> None:
    """serve() first prints its real address on stderr, then stops cleanly on SIGTERM."""
    code = (
        "from batchbanana.simulator import SimulatorConfig, serve; serve(SimulatorConfig(), port=0)"
    )
    with subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        second = proc.stderr.readline()
        proc.terminate()
        rest = proc.stderr.read()
        assert proc.wait(timeout=10) == 0
    assert re.fullmatch(r"batchbanana simulator listening on http://127\.0\.0\.1:\d+\n", first)
    assert second.startswith("price book: apiyi")
    assert "Traceback" not in rest
