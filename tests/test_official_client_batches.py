"""The simulator's Batch and Files APIs as Google's own client sees them: google-genai creates,
polls, lists, cancels and downloads against it unchanged."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from google import genai
from google.genai import errors, types

from batchbanana.simulator import RunningSimulator
from tests.conftest import png_size
from tests.simbatch import FAST, PRO, jsonl
from tests.test_official_client import client_for

_DONE = {
    types.JobState.JOB_STATE_SUCCEEDED,
    types.JobState.JOB_STATE_FAILED,
    types.JobState.JOB_STATE_EXPIRED,
    types.JobState.JOB_STATE_CANCELLED,
}


def _inlined(prompts: list[str], size: str = "1K", ratio: str = "1:1") -> list[dict[str, Any]]:
    """Inline requests as google-genai takes them, each with a metadata key."""
    return [
        {
            "contents": [{"role": "user", "parts": [{"text": prompt}]}],
            "config": {
                "response_modalities": ["TEXT", "IMAGE"],
                "image_config": {"image_size": size, "aspect_ratio": ratio},
            },
            "metadata": {"key": f"k{i}"},
        }
        for i, prompt in enumerate(prompts)
    ]


def _wait(client: genai.Client, name: str, timeout: float = 10) -> types.BatchJob:
    deadline = time.monotonic() + timeout
    while True:
        job = client.batches.get(name=name)
        if job.state in _DONE:
            return job
        assert time.monotonic() < deadline, job.state
        time.sleep(0.02)


def _images(response: types.GenerateContentResponse | None) -> list[bytes]:
    assert response is not None and response.candidates
    content = response.candidates[0].content
    assert content is not None and content.parts is not None
    return [p.inline_data.data for p in content.parts if p.inline_data and p.inline_data.data]


@pytest.fixture
def fast_simulator(make_simulator: Callable[..., RunningSimulator]) -> RunningSimulator:
    return make_simulator(seed=1, **FAST)


def test_inline_batch_through_google_genai(fast_simulator: RunningSimulator) -> None:
    """batches.create with inline requests, get until SUCCEEDED, and each inlined response holds
    a PNG of the shape asked, with its metadata key; billed at half the sync price."""
    client = client_for(fast_simulator)
    job = client.batches.create(
        model=PRO,
        src=_inlined(["a red fox", "a grey owl"], size="2K", ratio="16:9"),
        config={"display_name": "foxes"},
    )
    assert job.name is not None and job.name.startswith("batches/")
    assert job.state == types.JobState.JOB_STATE_PENDING and job.display_name == "foxes"
    done = _wait(client, job.name)
    assert done.state == types.JobState.JOB_STATE_SUCCEEDED and done.end_time is not None
    assert done.model == f"models/{PRO}"
    assert done.dest is not None and done.dest.inlined_responses is not None
    keys = []
    for inlined in done.dest.inlined_responses:
        assert inlined.error is None and inlined.metadata is not None
        keys.append(inlined.metadata["key"])
        (image,) = _images(inlined.response)
        assert png_size(image) == (2048, 1152)
    assert keys == ["k0", "k1"]
    bill = fast_simulator.bill()
    assert bill["batch_requests"] == 2 and bill["batch_usd"] == pytest.approx(2 * 0.045)
    assert [b["mode"] for b in fast_simulator.batches()] == ["inline"]


def test_file_batch_through_google_genai(fast_simulator: RunningSimulator, tmp_path: Path) -> None:
    """files.upload of a JSONL file (over 8 MB, so in several chunks), batches.create from its
    name, and files.download of dest.file_name: one line per key, in order."""
    client = client_for(fast_simulator)
    padding = "x" * (9 * 1024 * 1024)  # the client uploads 8 MB chunks
    path = tmp_path / "requests.jsonl"
    path.write_bytes(jsonl([f"a cat {padding}", "[sim:500] a dog", "an owl"], size="1K"))
    uploaded = client.files.upload(file=path, config={"mime_type": "jsonl"})
    assert uploaded.name is not None and uploaded.size_bytes == path.stat().st_size
    assert uploaded.state == types.FileState.ACTIVE
    job = client.batches.create(model=PRO, src=uploaded.name, config={"display_name": "cats"})
    assert job.name is not None
    done = _wait(client, job.name)
    assert done.state == types.JobState.JOB_STATE_SUCCEEDED
    assert done.dest is not None and done.dest.file_name == f"files/batch-{job.name[8:]}"
    info = client.files.get(name=done.dest.file_name)
    assert info.source == types.FileSource.GENERATED and info.download_uri
    data = client.files.download(file=done.dest.file_name)
    lines = [json.loads(line) for line in data.splitlines()]
    assert [line["key"] for line in lines] == ["f0", "f1", "f2"]
    assert lines[1]["error"]["code"] == 500 and "response" not in lines[1]
    for line in (lines[0], lines[2]):
        response = types.GenerateContentResponse.model_validate(line["response"])
        (image,) = _images(response)
        assert png_size(image) == (1024, 1024)
    target = tmp_path / "out.jsonl"
    client.files.download(file=done.dest.file_name, config=None, destination=target)
    assert target.read_bytes() == data
    assert [b["mode"] for b in fast_simulator.batches()] == ["file"]


def test_list_finds_a_batch_by_display_name_across_pages(
    fast_simulator: RunningSimulator,
) -> None:
    """batches.list with page_size 2 pages through all five batches, newest first."""
    client = client_for(fast_simulator)
    for i in range(5):
        client.batches.create(model=PRO, src=_inlined(["x"]), config={"display_name": f"job-{i}"})
    pager = client.batches.list(config={"page_size": 2})
    assert len(pager.page) == 2
    names = [job.display_name for job in pager]
    assert names == ["job-4", "job-3", "job-2", "job-1", "job-0"]
    found = [j for j in client.batches.list(config={"page_size": 2}) if j.display_name == "job-0"]
    assert len(found) == 1 and found[0].name is not None and found[0].name.startswith("batches/")


def test_cancel_and_delete_through_google_genai(
    make_simulator: Callable[..., RunningSimulator],
) -> None:
    """batches.cancel of a pending batch makes it CANCELLED; batches.delete removes it."""
    simulator = make_simulator(batch_pending_s=30)
    client = client_for(simulator)
    job = client.batches.create(model=PRO, src=_inlined(["x"]), config={"display_name": "c"})
    assert job.name is not None
    client.batches.cancel(name=job.name)
    cancelled = client.batches.get(name=job.name)
    assert cancelled.state == types.JobState.JOB_STATE_CANCELLED and cancelled.dest is None
    client.batches.delete(name=job.name)
    with pytest.raises(errors.ClientError) as caught:
        client.batches.get(name=job.name)
    assert caught.value.code == 404
    assert simulator.bill()["batch_requests"] == 0


@pytest.mark.parametrize("how", ["failed", "expired"])
def test_failed_and_expired_batches_by_option_and_by_directive(
    make_simulator: Callable[..., RunningSimulator], how: str
) -> None:
    """batch_end and [sim:batch_failed] / [sim:batch_expired] end batches with no output and no
    bill."""
    state = types.JobState(f"JOB_STATE_{how.upper()}")
    by_option = make_simulator(batch_end=how, **FAST)
    by_directive = make_simulator(**FAST)
    for simulator, prompt in ((by_option, "x"), (by_directive, f"x [sim:batch_{how}]")):
        client = client_for(simulator)
        job = client.batches.create(
            model=PRO, src=_inlined(["a", prompt]), config={"display_name": how}
        )
        assert job.name is not None
        done = _wait(client, job.name)
        assert done.state == state and done.dest is None
        assert simulator.bill()["billed_requests"] == 0


def test_per_line_errors_and_the_bill(fast_simulator: RunningSimulator) -> None:
    """An error directive gives its line an error (code, message) and no bill; a refusal is a
    billed response; only responses are billed, at half price."""
    client = client_for(fast_simulator)
    src = _inlined(["ok", "[sim:429] busy", "[sim:refuse] no", "[sim:400] bad"])
    job = client.batches.create(model=PRO, src=src, config={"display_name": "mixed"})
    assert job.name is not None
    done = _wait(client, job.name)
    assert done.dest is not None and done.dest.inlined_responses is not None
    ok, busy, refused, bad = done.dest.inlined_responses
    assert len(_images(ok.response)) == 1 and ok.error is None
    assert busy.error is not None and busy.error.code == 429 and busy.response is None
    assert bad.error is not None and bad.error.code == 400
    assert refused.response is not None and refused.response.candidates
    assert refused.response.candidates[0].finish_reason == types.FinishReason.IMAGE_SAFETY
    bill = fast_simulator.bill()
    assert bill["batch_requests"] == bill["billed_requests"] == 2
    assert bill["batch_usd"] == pytest.approx(0.09)  # two responses at 0.045, half of 0.09


def test_download_503_then_success(
    make_simulator: Callable[..., RunningSimulator], tmp_path: Path
) -> None:
    """With download_503=1 the first files.download raises a 503 ServerError; the next works."""
    simulator = make_simulator(download_503=1, **FAST)
    client = client_for(simulator)
    path = tmp_path / "in.jsonl"
    path.write_bytes(jsonl(["a", "b"]))
    uploaded = client.files.upload(file=os.fspath(path), config={"mime_type": "jsonl"})
    assert uploaded.name is not None
    job = client.batches.create(model=PRO, src=uploaded.name, config={"display_name": "dl"})
    assert job.name is not None
    done = _wait(client, job.name)
    assert done.dest is not None and done.dest.file_name is not None
    with pytest.raises(errors.ServerError) as caught:
        client.files.download(file=done.dest.file_name)
    assert caught.value.code == 503 and caught.value.status == "UNAVAILABLE"
    data = client.files.download(file=done.dest.file_name)
    assert [json.loads(line)["key"] for line in data.splitlines()] == ["f0", "f1"]
