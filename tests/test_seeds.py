"""Seeds (contract section 11): `seed` is checked before anything is sent, goes out as
`generationConfig.seed` (seed + k - 1 for variation k of a `repeat`), is part of the spec and the
fingerprint, and the simulator answers the same pixels for the same seed and prompt."""

from __future__ import annotations

import json
import shutil
import textwrap
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from batchbanana.errors import UserError
from batchbanana.plan.build import load_job
from batchbanana.plan.job import fingerprint
from batchbanana.simulator import RunningSimulator
from tests.conftest import CliResult, RecordingServer, read_jsonl, results
from tests.relay import Relay

Cli = Callable[..., CliResult]
Writer = Callable[..., Path]
JOBS = Path(__file__).resolve().parent.parent / "jobs"
PRO = "gemini-3-pro-image-preview"


def _write(tmp_path: Path, text: str, name: str = "job.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(UserError) as caught:
        load_job(path)
    return caught.value.problems


# --- fingerprints and ids of items without a seed do not move ---------------------------------


def test_an_item_without_a_seed_keeps_the_fingerprint_and_id_it_had_before_seeds(
    tmp_path: Path,
) -> None:
    """Values pinned before seeds existed: an old ledger still resumes, nothing is paid twice."""
    assert (
        fingerprint(PRO, "a red fox", "1K", None, None, ("TEXT", "IMAGE"), ())
        == "sha256:9ae21d657011efc34d7a71aaa5884a713f8d4d73a63551a582229744ea0410d7"
    )
    path = _write(
        tmp_path,
        """\
        version: 1
        endpoint: simulate
        items:
          - prompt: "a red fox"
          - prompt: "a blue fox"
            image_size: 2K
            aspect_ratio: "16:9"
            repeat: 2
        """,
    )
    job = load_job(path)
    assert [(item.id, item.fingerprint) for item in job.items] == [
        ("9ae21d6570", "sha256:9ae21d657011efc34d7a71aaa5884a713f8d4d73a63551a582229744ea0410d7"),
        ("3584c7a60d-1", "sha256:2e895aace731af7ff2e03dd9e24ac288009e0171e1a699aa24ae3ffebbe88723"),
        ("3584c7a60d-2", "sha256:2e895aace731af7ff2e03dd9e24ac288009e0171e1a699aa24ae3ffebbe88723"),
    ]
    assert all("seed" not in item.spec() for item in job.items)


def test_a_seed_is_part_of_the_fingerprint_spec_and_derived_id(tmp_path: Path) -> None:
    """Adding a seed makes new work; each repeat variation gets its own seed and fingerprint."""
    path = _write(
        tmp_path,
        """\
        version: 1
        endpoint: simulate
        items:
          - prompt: "a red fox"
            seed: 5
          - prompt: "a red fox"
            seed: 5
            repeat: 3
        """,
    )
    single, *variations = load_job(path).items
    assert single.id != "9ae21d6570" and single.seed == 5 and single.spec()["seed"] == 5
    unseeded = fingerprint(PRO, "a red fox", "1K", None, None, ("TEXT", "IMAGE"), ())
    assert single.fingerprint != unseeded
    assert [item.seed for item in variations] == [5, 6, 7]
    assert variations[0].fingerprint == single.fingerprint  # the same request
    assert len({item.fingerprint for item in variations}) == 3


# --- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        pytest.param("-1", "-1 is out of range", id="negative"),
        pytest.param("2147483648", "2147483648 is out of range", id="past-int32"),
        pytest.param("1.5", "1.5 is not an integer", id="fraction"),
        pytest.param("true", "True is not an integer", id="boolean"),
        pytest.param('"abc"', "'abc' is not an integer", id="text"),
    ],
)
def test_a_bad_seed_is_one_line_at_its_place_naming_the_range(
    tmp_path: Path, written: str, expected: str
) -> None:
    """A seed Google would refuse is exit 2 at file:line, saying what a seed may be."""
    path = _write(
        tmp_path,
        f"""\
        version: 1
        endpoint: simulate
        items:
          - id: a
            prompt: p
            seed: {written}
        """,
    )
    (problem,) = _problems(path)
    assert problem.startswith(f"{path}:6: item 'a': seed: {expected}")
    assert "0 to 2147483647" in problem and "32-bit" in problem


def test_a_repeat_that_would_pass_the_largest_seed_is_refused(tmp_path: Path) -> None:
    """seed + repeat - 1 must stay a valid seed; the hint says how variations are seeded."""
    path = _write(
        tmp_path,
        """\
        version: 1
        endpoint: simulate
        items:
          - id: a
            prompt: p
            seed: 2147483646
            repeat: 3
        """,
    )
    (problem,) = _problems(path)
    assert f"{path}:4: item 'a': seed: 2147483646 + 2 (repeat: 3) passes 2147483647" in problem
    assert "HINT:" in problem and "seed + k - 1" in problem


def test_an_items_file_seed_column_seeds_each_row(tmp_path: Path) -> None:
    """A CSV `seed` column is read as an integer per row; an empty cell takes the default."""
    (tmp_path / "rows.csv").write_text("id,prompt,seed\na,one,11\nb,two,\nc,three,x\n")
    path = _write(
        tmp_path,
        """\
        version: 1
        endpoint: simulate
        seed: 99
        items_file: rows.csv
        """,
    )
    (problem,) = _problems(path)
    assert problem.startswith("rows.csv:4: item 'c': seed: 'x' is not an integer")
    (tmp_path / "rows.csv").write_text("id,prompt,seed\na,one,11\nb,two,\n")
    assert [(item.id, item.seed) for item in load_job(path).items] == [("a", 11), ("b", 99)]


# --- on the wire and in the simulator ----------------------------------------------------------


def test_repeat_with_a_seed_sends_seed_then_seed_plus_one(
    cli: Cli,
    write_manifest: Writer,
    simulator: RunningSimulator,
    recording_server: RecordingServer,
    tmp_path: Path,
) -> None:
    """Variation k of `repeat: N` goes out with generationConfig.seed = seed + k - 1; an item
    without a seed sends none; the ledger's spec records each seed."""
    relay = Relay(recording_server, simulator)
    items = [
        {"id": "fox", "prompt": "a fox", "seed": 40, "repeat": 3},
        {"id": "owl", "prompt": "an owl"},
    ]
    manifest = write_manifest(items, endpoint=recording_server.url)
    result = cli("run", str(manifest), "--no-progress")
    assert result.exit_code == 0, result.stderr
    assert relay.sent() == [("a fox", 40), ("a fox", 41), ("a fox", 42), ("an owl", None)]
    assert all(isinstance(body["generationConfig"].get("seed", 0), int) for body in relay.bodies)
    specs = {line["item"]: line["spec"] for line in results(tmp_path / "out" / "ledger.jsonl")}
    assert {item: spec.get("seed") for item, spec in specs.items()} == {
        "fox-1": 40,
        "fox-2": 41,
        "fox-3": 42,
        "owl": None,
    }


def test_retry_sends_the_seed_the_ledger_recorded(
    cli: Cli,
    write_manifest: Writer,
    simulator: RunningSimulator,
    recording_server: RecordingServer,
    tmp_path: Path,
) -> None:
    """`retry` rebuilds a failed item from its spec, seed included, and keeps its fingerprint."""
    relay = Relay(recording_server, simulator)
    manifest = write_manifest(
        [{"id": "fox", "prompt": "a fox [sim:500]", "seed": 77}], endpoint=recording_server.url
    )
    assert cli("run", str(manifest), "--no-progress").exit_code == 1
    ledger = tmp_path / "out" / "ledger.jsonl"
    # the directive answers the first request only: the paid-again attempt is ok
    assert cli("retry", str(ledger), "--yes", "--no-progress").exit_code == 0
    assert [body["generationConfig"]["seed"] for body in relay.bodies] == [77, 77]
    sent = [line for line in read_jsonl(ledger) if line["event"] == "sent"]
    assert len({line["fingerprint"] for line in sent}) == 1


def test_seeds_reproduce_in_the_example_job(cli: Cli, tmp_path: Path) -> None:
    """jobs/seeds.yaml runs green on the simulator; the same seed and prompt give byte-identical
    images, another seed other pixels."""
    shutil.copytree(JOBS, tmp_path / "jobs")
    result = cli("run", str(tmp_path / "jobs" / "seeds.yaml"), "--no-progress")
    assert result.exit_code == 0, result.stderr
    out = tmp_path / "out" / "seeds"
    lines = results(out / "ledger.jsonl")
    assert {line["outcome"] for line in lines} == {"ok"} and len(lines) == 5
    image = {line["item"]: Path(line["output"]).read_bytes() for line in lines}
    assert image["lantern-2"] == image["lantern-again"]
    assert image["lantern-1"] != image["lantern-2"] != image["lantern-3"]
    assert {line["item"]: line["spec"]["seed"] for line in lines}["teacup"] == 7


# --- the simulator -----------------------------------------------------------------------------


def _post(simulator: RunningSimulator, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"{simulator.url}/v1beta/models/{PRO}:generateContent",
        data=json.dumps(body).encode(),
        headers={"x-goog-api-key": "k", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _image(answer: dict[str, Any]) -> str:
    parts = answer["candidates"][0]["content"]["parts"]
    return next(part["inlineData"]["data"] for part in parts if "inlineData" in part)


def _body(prompt: str, config: dict[str, Any]) -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": [{"text": prompt}]}], **config}


def test_the_simulator_answers_the_same_pixels_for_the_same_seed_and_prompt(
    simulator: RunningSimulator,
) -> None:
    """Same seed and prompt: the same image (camelCase or snake_case); another seed or another
    prompt: another image; no seed: the simulator's usual image."""

    def image(prompt: str, config: dict[str, Any]) -> str:
        status, answer = _post(simulator, _body(prompt, config))
        assert status == 200, answer
        return _image(answer)

    first = image("a fox", {"generationConfig": {"seed": 3}})
    assert image("a fox", {"generation_config": {"seed": 3}}) == first
    assert image("a fox", {"generationConfig": {"seed": "3"}}) == first  # protobuf JSON int32
    assert image("a fox", {"generationConfig": {"seed": 4}}) != first
    assert image("an owl", {"generationConfig": {"seed": 3}}) != first
    assert image("a fox", {}) == image("an owl", {}) != first


@pytest.mark.parametrize(
    "seed",
    [
        pytest.param("abc", id="text"),
        pytest.param(1.5, id="fraction"),
        pytest.param(True, id="boolean"),
        pytest.param(2**31, id="past-int32"),
        pytest.param([1], id="list"),
    ],
)
def test_the_simulator_refuses_a_seed_that_is_not_an_int32(
    simulator: RunningSimulator, seed: Any
) -> None:
    """A seed that is not a 32-bit integer is Google's 400 INVALID_ARGUMENT, and not billed."""
    status, answer = _post(simulator, _body("a fox", {"generationConfig": {"seed": seed}}))
    assert status == 400
    assert answer["error"]["status"] == "INVALID_ARGUMENT"
    assert "generation_config.seed" in answer["error"]["message"]
    assert simulator.bill()["billed_requests"] == 0


def test_the_request_body_carries_the_seed_in_generation_config_only_when_set() -> None:
    """build_request puts `seed` beside responseModalities (camelCase JSON), and leaves it out
    when the item has none, so unseeded bodies are byte for byte what they were."""
    from batchbanana.rules.wire import build_request

    fields: dict[str, Any] = {
        "model": PRO,
        "prompt": "p",
        "image_parts": [],
        "image_size": "1K",
        "aspect_ratio": None,
        "system_prompt": None,
        "response_modalities": ["IMAGE"],
    }
    assert build_request(**fields, seed=0)["generationConfig"]["seed"] == 0
    assert "seed" not in build_request(**fields)["generationConfig"]
