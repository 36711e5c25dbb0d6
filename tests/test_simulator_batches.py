"""The simulator's Batch API spoken by hand: the Operation it answers at each state, validation,
paging, cancel and delete, endings by option and by directive, per-line errors, the responses file
and its downloads, and the bill at batch prices."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from batchbanana import simulator
from batchbanana.simulator import (
    RunningSimulator,
    SimulatorConfig,
    parse_directives,
    run_simulator,
)
from batchbanana.simulator.directives import Directive, DirectiveError
from tests.conftest import CliResult, png_size
from tests.simbatch import (
    FAST,
    FLASH_31,
    KEY,
    PRO,
    call,
    create,
    gen_request,
    inline_batch,
    jsonl,
    upload,
    wait_done,
)

_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[RunningSimulator]:
    async with run_simulator(SimulatorConfig(**FAST)) as running:
        yield running


def _responses(operation: dict[str, Any]) -> list[dict[str, Any]]:
    output = operation["metadata"]["output"]
    output_type = (
        "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput"
    )
    assert operation["response"] == {"@type": output_type, **output}
    return list(output["inlinedResponses"]["inlinedResponses"])


def _image(response: dict[str, Any]) -> bytes | None:
    for part in response["candidates"][0]["content"]["parts"]:
        data = part.get("inlineData") or part.get("inline_data")
        if data:
            return base64.b64decode(data["data"])
    return None


# --- directives ---------------------------------------------------------------------------------


def test_batch_directives_parse_and_leave_sync_plans_alone() -> None:
    """Batch-wide directives are kept apart: a prompt with only them plans like a plain one."""
    directives = parse_directives("[sim:batch_failed,download503x2] a cat [sim:429]")
    assert directives.batch == (
        Directive("batch_failed", None, 1),
        Directive("download503", None, 2),
    )
    assert [f.name for f in directives.faults] == ["429"]
    assert parse_directives("[sim:batch_stuck]").empty
    for bad in ("[sim:batch_failedx2]", "[sim:batch_exploded]"):
        with pytest.raises(DirectiveError, match="HINT"):
            parse_directives(bad)


def test_config_checks_batch_settings() -> None:
    """batch_end must be a known ending; times and counts must not be negative."""
    with pytest.raises(ValueError, match="batch_end"):
        SimulatorConfig(batch_end="exploded")
    with pytest.raises(ValueError, match="negative"):
        SimulatorConfig(download_503=-1)


# --- the Operation ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_inline_batch_goes_pending_running_succeeded(http: aiohttp.ClientSession) -> None:
    """Create answers a PENDING Operation (int64 counts as strings); GET sees RUNNING, then
    SUCCEEDED with endTime, the counts and each response with its metadata, as PNGs of the shape
    asked; the same output is under `response`."""
    async with run_simulator(SimulatorConfig(batch_pending_s=0.2, batch_running_s=0.8)) as sim:
        body = inline_batch(["a fox", "an owl"], "my-batch", size="2K", ratio="16:9")
        created = await create(http, sim, body)
        assert created.status == 200, created.raw
        operation = created.json
        name = operation["name"]
        assert re.fullmatch(r"batches/[a-z0-9]+", name)
        metadata = operation["metadata"]
        assert operation["done"] is False
        assert metadata["@type"] == (
            "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch"
        )
        assert metadata["name"] == name and metadata["model"] == f"models/{PRO}"
        assert metadata["displayName"] == "my-batch" and metadata["state"] == "BATCH_STATE_PENDING"
        assert _RFC3339.fullmatch(metadata["createTime"])
        assert _RFC3339.fullmatch(metadata["updateTime"])
        assert metadata["batchStats"] == {"requestCount": "2", "pendingRequestCount": "2"}
        seen = set()
        while not (reply := await call(http, "GET", f"{sim.url}/v1beta/{name}")).json["done"]:
            seen.add(reply.json["metadata"]["state"])
            await asyncio.sleep(0.02)
        assert seen == {"BATCH_STATE_PENDING", "BATCH_STATE_RUNNING"}
        done = reply.json
    metadata = done["metadata"]
    assert metadata["state"] == "BATCH_STATE_SUCCEEDED" and _RFC3339.fullmatch(metadata["endTime"])
    assert metadata["batchStats"] == {
        "requestCount": "2",
        "successfulRequestCount": "2",
        "failedRequestCount": "0",
        "pendingRequestCount": "0",
    }
    responses = _responses(done)
    assert [r["metadata"] for r in responses] == [{"key": "k0"}, {"key": "k1"}]
    for response in responses:
        image = _image(response["response"])
        assert image is not None and png_size(image) == (2048, 1152)


@pytest.mark.asyncio
async def test_snake_case_keys_are_read(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    """input_config, display_name and snake_case request keys work as the camelCase ones."""
    body = {
        "batch": {
            "display_name": "snake",
            "model": f"models/{FLASH_31}",
            "input_config": {
                "requests": {
                    "requests": [{"request": gen_request("x", size="512", ratio="8:1", snake=True)}]
                }
            },
        }
    }
    created = await create(http, sim, body, model=FLASH_31)
    assert created.status == 200, created.raw
    assert created.json["metadata"]["displayName"] == "snake"
    (response,) = _responses(await wait_done(http, sim, created.json["name"]))
    assert "metadata" not in response  # none was sent
    image = _image(response["response"])
    assert image is not None and png_size(image) == (512, 64)


_BAD = [
    pytest.param(inline_batch(["x"]), "gemini-9-image", "not found", id="unknown-model"),
    pytest.param(inline_batch(["x"], size="512"), PRO, "imageSize", id="bad-size"),
    pytest.param(inline_batch(["x"], ratio="8:1"), PRO, "aspectRatio", id="bad-ratio"),
    pytest.param(inline_batch(["[sim:teapot]"]), PRO, "HINT", id="unknown-directive"),
    pytest.param({"batch": {"displayName": "x"}}, PRO, "input_config", id="no-input"),
    pytest.param({}, PRO, "batch", id="no-batch"),
    pytest.param(b"{nope", PRO, "JSON", id="not-json"),
    pytest.param(
        {"batch": {"inputConfig": inline_batch(["x"])["batch"]["inputConfig"]}},
        PRO,
        "display_name",
        id="no-display-name",
    ),
    pytest.param(
        {"batch": {"displayName": "x", "inputConfig": {"fileName": "files/nosuchfile"}}},
        PRO,
        "not an uploaded file",
        id="unknown-file",
    ),
    pytest.param(
        {"batch": {"displayName": "x", "inputConfig": {"requests": {"requests": []}}}},
        PRO,
        "no requests",
        id="empty",
    ),
    pytest.param(
        {
            "batch": {
                "displayName": "x",
                "inputConfig": {
                    "requests": {
                        "requests": [
                            {"request": {**gen_request("x"), "model": f"models/{FLASH_31}"}}
                        ]
                    }
                },
            }
        },
        PRO,
        "one model per batch",
        id="other-model",
    ),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("body", "model", "message"), _BAD)
async def test_bad_batches_are_400_and_create_nothing(
    sim: RunningSimulator, http: aiohttp.ClientSession, body: Any, model: str, message: str
) -> None:
    """What Google refuses is 400 INVALID_ARGUMENT with the error JSON; no batch, no bill."""
    reply = await create(http, sim, body, model=model)
    assert reply.status == 400, reply.raw
    assert reply.json["error"]["status"] == "INVALID_ARGUMENT"
    assert message in reply.json["error"]["message"]
    assert sim.batches() == [] and sim.bill()["batches_created"] == 0


@pytest.mark.asyncio
async def test_an_inline_body_over_20_mb_is_400(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    """Inline requests are limited to 20 MB in all; the answer says so and names the Files API."""
    reply = await create(http, sim, inline_batch(["x" * 20_000_001]))
    assert reply.status == 400
    message = reply.json["error"]["message"]
    assert "20000000 bytes" in message and "Files API" in message


@pytest.mark.asyncio
async def test_a_key_is_needed(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    """Every batch method wants a key, in either header; any key will do."""
    url = f"{sim.url}/v1beta/models/{PRO}:batchGenerateContent"
    assert (await call(http, "POST", url, inline_batch(["x"]), headers={})).status == 401
    assert (await call(http, "GET", f"{sim.url}/v1beta/batches", headers={})).status == 401
    bearer = {"Authorization": "Bearer sk-other"}
    assert (await call(http, "POST", url, inline_batch(["x"]), headers=bearer)).status == 200


# --- list, cancel, delete -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_list_pages_through_every_batch_newest_first(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    """pageSize=2 over 5 batches gives 2, 2, 1, newest first, each batch once, even with one
    created between pages; a token that is not ours is 400."""
    names = [(await create(http, sim, inline_batch(["x"], f"b{i}"))).json["name"] for i in range(5)]
    seen: list[str] = []
    token = ""
    sizes = []
    while True:
        url = f"{sim.url}/v1beta/batches?pageSize=2" + (f"&pageToken={token}" if token else "")
        page = (await call(http, "GET", url)).json
        sizes.append(len(page["operations"]))
        seen += [op["metadata"]["displayName"] for op in page["operations"]]
        if not seen[2:]:
            await create(http, sim, inline_batch(["x"], "late"))
        if "nextPageToken" not in page:
            break
        token = page["nextPageToken"]
    assert sizes == [2, 2, 1] and seen == ["b4", "b3", "b2", "b1", "b0"]
    everything = (await call(http, "GET", f"{sim.url}/v1beta/batches")).json["operations"]
    assert [op["name"] for op in everything][1:] == names[::-1]
    bad = await call(http, "GET", f"{sim.url}/v1beta/batches?pageToken=zzz")
    assert bad.status == 400


@pytest.mark.asyncio
async def test_cancel_while_pending_ends_cancelled_without_output(
    http: aiohttp.ClientSession,
) -> None:
    """A pending batch cancelled is CANCELLED (done, no output, nothing billed); cancelling again
    or cancelling a finished batch changes nothing."""
    async with run_simulator(SimulatorConfig(batch_pending_s=30)) as sim:
        name = (await create(http, sim, inline_batch(["x", "y"]))).json["name"]
        reply = await call(http, "POST", f"{sim.url}/v1beta/{name}:cancel")
        assert reply.status == 200 and reply.json == {}
        operation = (await call(http, "GET", f"{sim.url}/v1beta/{name}")).json
        assert operation["done"] and operation["metadata"]["state"] == "BATCH_STATE_CANCELLED"
        assert "output" not in operation["metadata"] and "response" not in operation
        assert (await call(http, "POST", f"{sim.url}/v1beta/{name}:cancel")).status == 200
        assert sim.bill()["billed_requests"] == 0


@pytest.mark.asyncio
async def test_cancel_while_running_keeps_the_lines_made(http: aiohttp.ClientSession) -> None:
    """Cancelled mid-run, a batch keeps (and bills) the responses already made, no more."""
    async with run_simulator(SimulatorConfig(batch_pending_s=0, batch_running_s=2)) as sim:
        name = (await create(http, sim, inline_batch([f"p{i}" for i in range(8)]))).json["name"]
        while True:
            stats = (await call(http, "GET", f"{sim.url}/v1beta/{name}")).json["metadata"]
            if int(stats["batchStats"].get("successfulRequestCount", "0")) >= 1:
                break
            await asyncio.sleep(0.02)
        await call(http, "POST", f"{sim.url}/v1beta/{name}:cancel")
        done = (await call(http, "GET", f"{sim.url}/v1beta/{name}")).json
        made = _responses(done)
        assert done["metadata"]["state"] == "BATCH_STATE_CANCELLED"
        assert 1 <= len(made) < 8
        assert [r["metadata"]["key"] for r in made] == [f"k{i}" for i in range(len(made))]
        assert done["metadata"]["batchStats"]["pendingRequestCount"] == str(8 - len(made))
        assert sim.bill()["batch_requests"] == len(made)


@pytest.mark.asyncio
async def test_delete_forgets_a_batch(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    """DELETE answers {}; the batch is gone from get and list (404), but /_sim/batches still
    counts it, marked deleted. Unknown ids are 404 NOT_FOUND for every method."""
    name = (await create(http, sim, inline_batch(["x"]))).json["name"]
    assert (await call(http, "DELETE", f"{sim.url}/v1beta/{name}")).json == {}
    assert (await call(http, "GET", f"{sim.url}/v1beta/{name}")).status == 404
    assert (await call(http, "GET", f"{sim.url}/v1beta/batches")).json["operations"] == []
    (summary,) = sim.batches()
    assert summary["deleted"] is True and summary["name"] == name
    for method, path in [("GET", ""), ("DELETE", ""), ("POST", ":cancel")]:
        reply = await call(http, method, f"{sim.url}/v1beta/batches/nosuchbatch{path}")
        assert reply.status == 404 and reply.json["error"]["status"] == "NOT_FOUND"


# --- endings ------------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("how", "state", "lines"),
    [
        ("failed", "BATCH_STATE_FAILED", 0),
        ("expired", "BATCH_STATE_EXPIRED", 0),
        ("cancelled", "BATCH_STATE_CANCELLED", 2),
    ],
)
async def test_batches_end_as_the_option_or_a_directive_says(
    http: aiohttp.ClientSession, how: str, state: str, lines: int
) -> None:
    """batch_end (for every batch) or [sim:batch_X] (in any prompt of one batch) ends it X:
    FAILED and EXPIRED without output or bill, CANCELLED with the first half of the lines."""
    prompts = ["a", "b", "c", "d", "e"]
    async with run_simulator(SimulatorConfig(**FAST, batch_end=how)) as sim:
        name = (await create(http, sim, inline_batch(prompts))).json["name"]
        by_option = await wait_done(http, sim, name)
    async with run_simulator(SimulatorConfig(**FAST)) as sim:
        marked = [*prompts[:3], f"d [sim:batch_{how}]", "e"]
        name = (await create(http, sim, inline_batch(marked))).json["name"]
        by_directive = await wait_done(http, sim, name)
        assert sim.bill()["batch_requests"] == lines
    for operation in (by_option, by_directive):
        assert operation["metadata"]["state"] == state
        if lines:
            assert len(_responses(operation)) == lines
        else:
            assert "output" not in operation["metadata"] and "response" not in operation


@pytest.mark.asyncio
async def test_a_stuck_batch_stays_pending_until_cancelled(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    """[sim:batch_stuck] keeps a batch PENDING however long one waits."""
    name = (await create(http, sim, inline_batch(["x [sim:batch_stuck]"]))).json["name"]
    await asyncio.sleep(0.5)
    operation = (await call(http, "GET", f"{sim.url}/v1beta/{name}")).json
    assert operation["metadata"]["state"] == "BATCH_STATE_PENDING" and not operation["done"]
    await call(http, "POST", f"{sim.url}/v1beta/{name}:cancel")
    assert (await wait_done(http, sim, name))["metadata"]["state"] == "BATCH_STATE_CANCELLED"


# --- lines and the bill -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_each_line_gets_the_answer_sync_would_give(http: aiohttp.ClientSession) -> None:
    """HTTP errors become error lines {code, message, status} (not billed; live-connection faults
    are 500 INTERNAL); refusals and answers without an image are billed responses; the price is
    half the sync price."""
    prompts = {
        "ok": "ok",
        "429": "[sim:429]",
        "500": "[sim:500]",
        "quota": "[sim:quota_day]",
        "502": "[sim:502]",
        "drop": "[sim:drop]",
        "refuse": "[sim:refuse]",
        "none": "[sim:no_image]",
        "block": "[sim:block]",
    }
    async with run_simulator(SimulatorConfig(**FAST)) as sim:
        name = (await create(http, sim, inline_batch(list(prompts.values())))).json["name"]
        done = await wait_done(http, sim, name)
        bill = sim.bill()
    lines = dict(zip(prompts, _responses(done), strict=True))
    errors = {k: v["error"] for k, v in lines.items() if "error" in v}
    assert errors == {
        "429": {"code": 429, "message": errors["429"]["message"], "status": "RESOURCE_EXHAUSTED"},
        "500": {"code": 500, "message": errors["500"]["message"], "status": "INTERNAL"},
        "quota": {
            "code": 429,
            "message": errors["quota"]["message"],
            "status": "RESOURCE_EXHAUSTED",
        },
        "502": {"code": 502, "message": "Bad Gateway", "status": "UNAVAILABLE"},
        "drop": {"code": 500, "message": errors["drop"]["message"], "status": "INTERNAL"},
    }
    assert _image(lines["ok"]["response"]) is not None
    refusal = lines["refuse"]["response"]["candidates"][0]
    assert refusal["finishReason"] == "IMAGE_SAFETY" and _image(lines["refuse"]["response"]) is None
    assert _image(lines["none"]["response"]) is None
    assert lines["block"]["response"]["promptFeedback"]["blockReason"] == "SAFETY"
    stats = done["metadata"]["batchStats"]
    assert (stats["successfulRequestCount"], stats["failedRequestCount"]) == ("4", "5")
    assert bill["batch_requests"] == bill["billed_requests"] == 4
    assert bill["batch_usd"] == bill["billed_usd"] == pytest.approx(4 * 0.045)
    assert bill["requests"] == 0  # no generateContent call was made


@pytest.mark.asyncio
async def test_counted_directives_count_batch_and_sync_requests_alike(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    """[sim:429x1]: the batch line gets the 429; the same prompt sent again (sync) gets an image."""
    name = (await create(http, sim, inline_batch(["[sim:429x1] a cat"]))).json["name"]
    (line,) = _responses(await wait_done(http, sim, name))
    assert line["error"]["code"] == 429
    again = await call(
        http,
        "POST",
        f"{sim.url}/v1beta/models/{PRO}:generateContent",
        gen_request("[sim:429x1] a cat"),
    )
    assert again.status == 200


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("settings", "prompt", "expected"),
    [
        pytest.param({"price_book": "google"}, "x", 0.12, id="google-4K-half"),
        pytest.param({"price_book": "google"}, "[sim:two_images]", 0.24, id="google-per-image"),
        pytest.param({"price_usd": lambda m, s: 0.5}, "x", 0.25, id="half-of-price_usd"),
        pytest.param(
            {"price_usd": lambda m, s: 0.5, "batch_price_usd": lambda m, s: 0.1},
            "x",
            0.1,
            id="batch_price_usd",
        ),
    ],
)
async def test_batch_prices(
    http: aiohttp.ClientSession, settings: dict[str, Any], prompt: str, expected: float
) -> None:
    """A batch response costs half what sync would bill for it, unless batch_price_usd says."""
    async with run_simulator(SimulatorConfig(**FAST, **settings)) as sim:
        name = (await create(http, sim, inline_batch([prompt], size="4K"))).json["name"]
        await wait_done(http, sim, name)
        assert sim.bill()["batch_usd"] == pytest.approx(expected)


# --- file input, the responses file and its downloads --------------------------------------------


@pytest.mark.asyncio
async def test_file_batch_writes_a_responses_file(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    """A batch from an uploaded JSONL file ends with responsesFile files/batch-<id>: a GENERATED
    file, downloadable at both paths, one {key, response|error} line per request, in order."""
    uploaded = await upload(http, sim, jsonl(["a cat", "[sim:503] a dog", "an owl"], ratio="3:2"))
    file_name = uploaded.json["file"]["name"]
    body = {"batch": {"displayName": "from-file", "inputConfig": {"fileName": file_name}}}
    created = await create(http, sim, body)
    assert created.json["metadata"]["inputConfig"] == {"fileName": file_name}
    done = await wait_done(http, sim, created.json["name"])
    batch_id = created.json["name"].removeprefix("batches/")
    output = done["metadata"]["output"]
    assert output == {"responsesFile": f"files/batch-{batch_id}"}
    assert done["response"]["responsesFile"] == output["responsesFile"]
    info = (await call(http, "GET", f"{sim.url}/v1beta/{output['responsesFile']}")).json
    assert info["source"] == "GENERATED" and info["state"] == "ACTIVE"
    path = f"{output['responsesFile']}:download?alt=media"
    assert info["downloadUri"] == f"{sim.url}/download/v1beta/{path}"
    google_path = await call(http, "GET", f"{sim.url}/download/v1beta/{path}")
    short_path = await call(http, "GET", f"{sim.url}/v1beta/{path}")
    assert google_path.status == short_path.status == 200
    assert google_path.raw == short_path.raw
    assert info["sizeBytes"] == str(len(google_path.raw))
    digest = hashlib.sha256(google_path.raw).hexdigest()
    assert base64.b64decode(info["sha256Hash"]).decode() == digest
    lines = [json.loads(line) for line in google_path.raw.decode().splitlines()]
    assert [line["key"] for line in lines] == ["f0", "f1", "f2"]
    assert lines[1]["error"]["code"] == 503 and lines[1]["error"]["status"] == "UNAVAILABLE"
    image = _image(lines[2]["response"])
    assert image is not None and png_size(image) == (1024, 683)
    no_alt = await call(http, "GET", f"{sim.url}/v1beta/{output['responsesFile']}:download")
    assert no_alt.status == 400


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("settings", "prompt"),
    [({"download_503": 2}, "x"), ({}, "x [sim:download503x2]")],
    ids=["option", "directive"],
)
async def test_the_first_downloads_answer_503(
    http: aiohttp.ClientSession, settings: dict[str, Any], prompt: str
) -> None:
    """download_503=N (each responses file) or [sim:download503xN] (that batch's file): the first
    N downloads are 503 UNAVAILABLE, then the bytes come."""
    async with run_simulator(SimulatorConfig(**FAST, **settings)) as sim:
        file_name = (await upload(http, sim, jsonl([prompt]))).json["file"]["name"]
        body = {"batch": {"displayName": "d", "inputConfig": {"fileName": file_name}}}
        name = (await create(http, sim, body)).json["name"]
        responses_file = (await wait_done(http, sim, name))["metadata"]["output"]["responsesFile"]
        url = f"{sim.url}/download/v1beta/{responses_file}:download?alt=media"
        statuses = [(await call(http, "GET", url)).status for _ in range(3)]
        assert statuses == [503, 503, 200]
        first = await call(http, "GET", url)
        assert first.status == 200 and json.loads(first.raw)["key"] == "f0"


@pytest.mark.asyncio
async def test_sim_batches_and_reset(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    """GET /_sim/batches (no key) lists every batch with its mode; reset zeroes the batch bill
    and the count of batches created, and leaves the batches alone."""
    await create(http, sim, inline_batch(["x"], "one"))
    file_name = (await upload(http, sim, jsonl(["y", "z"]))).json["file"]["name"]
    body = {"batch": {"displayName": "two", "inputConfig": {"fileName": file_name}}}
    name = (await create(http, sim, body)).json["name"]
    await wait_done(http, sim, name)
    listed = await call(http, "GET", f"{sim.url}/_sim/batches", headers={})
    assert [(b["displayName"], b["mode"], b["requestCount"]) for b in listed.json] == [
        ("one", "inline", 1),
        ("two", "file", 2),
    ]
    assert listed.json[1]["state"] == "BATCH_STATE_SUCCEEDED"
    assert listed.json[1]["model"] == f"models/{PRO}" and listed.json[1]["name"] == name
    assert sim.bill()["batches_created"] == 2
    await call(http, "POST", f"{sim.url}/_sim/reset", headers={})
    bill = sim.bill()
    assert (bill["batches_created"], bill["batch_requests"], bill["batch_usd"]) == (0, 0, 0.0)
    assert len(sim.batches()) == 2


@pytest.mark.asyncio
async def test_generateContent_answers_while_a_batch_runs(http: aiohttp.ClientSession) -> None:
    """Answering a batch's 4K lines leaves the server free to answer other requests meanwhile
    (the server stops with the batch still running: its work is ended with it)."""
    async with run_simulator(SimulatorConfig(batch_pending_s=0, batch_running_s=3)) as sim:
        name = (await create(http, sim, inline_batch(["x"] * 6, size="4K"))).json["name"]
        await asyncio.sleep(0.1)  # into RUNNING
        started = time.monotonic()
        url = f"{sim.url}/v1beta/models/{PRO}:generateContent"
        reply = await call(http, "POST", url, gen_request("meanwhile"))
        assert reply.status == 200 and time.monotonic() - started < 1.5
        operation = (await call(http, "GET", f"{sim.url}/v1beta/{name}")).json
        assert operation["metadata"]["state"] == "BATCH_STATE_RUNNING"


def test_simulate_cli_takes_the_batch_options(
    cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`batchbanana simulate` hands its batch options to the SimulatorConfig it serves."""
    served: list[SimulatorConfig] = []
    monkeypatch.setattr(simulator, "serve", lambda config, **_: served.append(config))
    args = ["--batch-pending", "2", "--batch-running", "3.5", "--batch-end", "expired"]
    result = cli("simulate", *args, "--download-503", "2")
    assert result.exit_code == 0, result.stderr
    (config,) = served
    assert (config.batch_pending_s, config.batch_running_s) == (2.0, 3.5)
    assert (config.batch_end, config.download_503) == ("expired", 2)
    assert cli("simulate", "--batch-end", "exploded").exit_code == 2


@pytest.mark.asyncio
async def test_a_poller_that_hangs_up_mid_answer_is_no_error(
    http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    """A finished inline batch's Operation is streamed from disk; a client that stops reading
    after the state and hangs up leaves the server quiet (nothing logged) and serving."""
    async with run_simulator(SimulatorConfig(**FAST, image_bytes=2_000_000)) as sim:
        name = (await create(http, sim, inline_batch(["x"] * 4))).json["name"]
        await wait_done(http, sim, name)
        for _ in range(3):
            async with http.get(f"{sim.url}/v1beta/{name}", headers=KEY) as response:
                assert response.content_length is not None and response.content_length > 10e6
                await response.content.read(4096)
                response.close()
        await asyncio.sleep(0.1)
        assert (await call(http, "GET", f"{sim.url}/v1beta/{name}")).json["done"]
    assert [r for r in caplog.records if r.levelname == "ERROR"] == []
