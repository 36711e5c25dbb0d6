"""Matrices (contract section 11): `matrix` (top level or per item) expands each item to every
combination of its lists, in a documented order, with readable, stable, unique ids; every
combination is checked against the model rules before anything is sent; `plan` shows the
expansion and its cost."""

from __future__ import annotations

import hashlib
import json
import shutil
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from batchbanana.errors import UserError
from batchbanana.plan.build import load_job
from batchbanana.plan.ids import axis_label
from batchbanana.plan.job import Job
from batchbanana.simulator import RunningSimulator
from tests.conftest import CliResult, RecordingServer, results
from tests.relay import Relay

Cli = Callable[..., CliResult]
Writer = Callable[..., Path]
JOBS = Path(__file__).resolve().parent.parent / "jobs"
PRO = "gemini-3-pro-image-preview"
FLASH = "gemini-3.1-flash-image-preview"
PRO_GA = "gemini-3-pro-image"


def _write(tmp_path: Path, text: str, name: str = "job.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(UserError) as caught:
        load_job(path)
    problems = caught.value.problems
    assert all("\n" not in problem for problem in problems)
    return problems


def _ids(job: Job) -> list[str]:
    return [item.id for item in job.items]


# --- the 3-model x 2-size matrix, end to end ---------------------------------------------------


def test_a_three_model_by_two_size_matrix_sends_six_requests_with_documented_ids(
    cli: Cli,
    write_manifest: Writer,
    simulator: RunningSimulator,
    recording_server: RecordingServer,
    tmp_path: Path,
) -> None:
    """One item, 3 models x 2 sizes: six requests, one per combination, each to its model with its
    size, ids `<id>-<model>-<size>` in the matrix's order, every one ok and billed once."""
    relay = Relay(recording_server, simulator)
    item = {"id": "fox", "prompt": "a fox", "matrix": {"model": [PRO, FLASH, PRO_GA]}}
    item["matrix"]["image_size"] = ["1K", "2K"]
    manifest = write_manifest([item], endpoint=recording_server.url)
    result = cli("run", str(manifest), "--no-progress")
    assert result.exit_code == 0, result.stderr
    lines = results(tmp_path / "out" / "ledger.jsonl")
    assert sorted(line["item"] for line in lines) == sorted(
        [
            "fox-3-pro-preview-1K",
            "fox-3-pro-preview-2K",
            "fox-3.1-flash-preview-1K",
            "fox-3.1-flash-preview-2K",
            "fox-3-pro-1K",
            "fox-3-pro-2K",
        ]
    )
    assert {line["outcome"] for line in lines} == {"ok"}
    sent = sorted(
        (model, body["generationConfig"]["imageConfig"]["imageSize"])
        for model, body in zip(relay.models, relay.bodies, strict=True)
    )
    assert sent == sorted((m, s) for m in (PRO, FLASH, PRO_GA) for s in ("1K", "2K"))
    assert simulator.bill()["billed_requests"] == 6
    by_id = {line["item"]: line for line in lines}
    spec = by_id["fox-3.1-flash-preview-2K"]["spec"]
    assert spec["variant_of"] == "fox"
    assert spec["matrix"] == {"model": FLASH, "image_size": "2K"}
    assert (tmp_path / "out" / "fox-3-pro-2K.png").is_file()


def test_a_combination_a_model_does_not_offer_exits_2_naming_it_and_nothing_is_sent(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator
) -> None:
    """Every combination is checked before sending: 512 with the pro model is one line naming
    that combination, exit 2, no request made and nothing billed."""
    item = {"id": "fox", "prompt": "a fox", "matrix": {"model": [PRO, FLASH, PRO_GA]}}
    item["matrix"]["image_size"] = ["512", "1K"]
    manifest = write_manifest([item], endpoint=simulator.url)
    result = cli("run", str(manifest), "--no-progress")
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if ": image_size: " in line]
    assert errors == [
        f"{manifest}:9: item 'fox' (model={PRO}, image_size=512): image_size: 512 is not"
        f" offered by {PRO} (1K, 2K, 4K)",
        f"{manifest}:9: item 'fox' (model={PRO_GA}, image_size=512): image_size: 512 is not"
        f" offered by {PRO_GA} (1K, 2K, 4K)",
    ]
    assert simulator.stats()["requests"] == 0
    assert simulator.bill()["billed_requests"] == 0


def test_the_matrix_example_job_runs_green(cli: Cli, tmp_path: Path) -> None:
    """jobs/matrix.yaml runs on the simulator through the CLI: 14 items, all ok, ids as its
    comments say."""
    shutil.copytree(JOBS, tmp_path / "jobs")
    result = cli("run", str(tmp_path / "jobs" / "matrix.yaml"), "--no-progress")
    assert result.exit_code == 0, result.stderr
    lines = results(tmp_path / "out" / "matrix" / "ledger.jsonl")
    assert len(lines) == 14 and {line["outcome"] for line in lines} == {"ok"}
    ids = {line["item"] for line in lines}
    assert {"fox-3-pro-preview-1K", "fox-3-pro-2K", "poster-512-Kyoto-risograph"} <= ids
    assert {"mug-red-1x1", "mug-forest-green-4x5"} <= ids
    prompts = {line["item"]: line["spec"]["prompt"] for line in lines}
    assert prompts["poster-512-Lisbon-flat-vector"] == "a travel poster of Lisbon, flat vector"


# --- expansion order, merging and ids ----------------------------------------------------------


def test_the_top_level_matrix_merges_with_an_items_key_by_key(tmp_path: Path) -> None:
    """An item's own key replaces the top-level key in its place; its other keys follow; a key the
    item sets itself is pinned; a top-level variable the item does not use is left out."""
    path = _write(
        tmp_path,
        f"""\
        version: 1
        endpoint: simulate
        model: {FLASH}
        matrix:
          aspect_ratio: ["1:1", "16:9"]
          style: [ink, oil]
          image_size: [1K]
        items:
          - id: a
            prompt: "a cat, {{{{style}}}}"
            matrix: {{style: [chalk], seed: [7, 8]}}
          - id: b
            prompt: "a dog"
            aspect_ratio: "3:2"
          - id: c
            prompt: "a {{{{style}}}} owl"
            vars: {{style: pencil}}
        """,
    )
    assert _ids(load_job(path)) == [
        "a-1x1-chalk-1K-seed7",
        "a-1x1-chalk-1K-seed8",
        "a-16x9-chalk-1K-seed7",
        "a-16x9-chalk-1K-seed8",
        "b-1K",
        "c-1x1-1K",
        "c-16x9-1K",
    ]


def test_a_matrix_over_variables_fills_the_templates(tmp_path: Path) -> None:
    """Each combination's variable values fill the prompt, system prompt and id; a variable the
    id shows is not added to it again; the fingerprint follows the filled prompt."""
    path = _write(
        tmp_path,
        """\
        version: 1
        endpoint: simulate
        system_prompt: "Light: {{light}}"
        items:
          - id: "{{animal}}-shot"
            prompt: "a {{animal}} at {{light}}"
            matrix: {animal: [fox, owl], light: [dawn, dusk]}
        """,
    )
    job = load_job(path)
    assert [(item.id, item.prompt, item.system_prompt) for item in job.items] == [
        ("fox-shot-dawn", "a fox at dawn", "Light: dawn"),
        ("fox-shot-dusk", "a fox at dusk", "Light: dusk"),
        ("owl-shot-dawn", "a owl at dawn", "Light: dawn"),
        ("owl-shot-dusk", "a owl at dusk", "Light: dusk"),
    ]
    assert len({item.fingerprint for item in job.items}) == 4
    assert {item.variant_of for item in job.items} == {"{{animal}}-shot"}


def test_a_seed_matrix_with_repeat_numbers_the_variations_and_seeds_each(tmp_path: Path) -> None:
    """A combination's repeat variations follow it, `-1..-N`, seeded seed + k - 1."""
    path = _write(
        tmp_path,
        """\
        version: 1
        endpoint: simulate
        items:
          - id: fox
            prompt: a fox
            repeat: 2
            matrix: {seed: [10, 20]}
        """,
    )
    job = load_job(path)
    assert [(item.id, item.seed) for item in job.items] == [
        ("fox-seed10-1", 10),
        ("fox-seed10-2", 11),
        ("fox-seed20-1", 20),
        ("fox-seed20-2", 21),
    ]


def test_adding_a_value_to_a_matrix_keeps_the_ids_already_made(tmp_path: Path) -> None:
    """Ids depend on a combination's values, not on the lists: a second run after adding a value
    owes only the new combinations (derived ids included)."""
    text = """\
        version: 1
        endpoint: simulate
        items:
          - id: fox
            prompt: a fox
            matrix: {image_size: [1K, 2K]}
          - prompt: an owl
            matrix: {image_size: [1K, 2K]}
        """
    before = _ids(load_job(_write(tmp_path, text)))
    after = _ids(load_job(_write(tmp_path, text.replace("[1K, 2K]", "[4K, 1K, 2K]"))))
    assert set(before) < set(after) and len(after) == 6


@pytest.mark.parametrize(
    ("axis", "value", "label"),
    [
        pytest.param("model", PRO, "3-pro-preview", id="pro-preview"),
        pytest.param("model", "gemini-2.5-flash-image", "2.5-flash", id="flash-25"),
        pytest.param("model", "my-own/model v2", "my-own-model-v2", id="unknown-model"),
        pytest.param("image_size", "512", "512", id="size"),
        pytest.param("aspect_ratio", "21:9", "21x9", id="ratio"),
        pytest.param("seed", 42, "seed42", id="seed"),
        pytest.param("style", "oil paint (thick)", "oil-paint-thick", id="variable"),
        pytest.param(
            "style", "水彩", "h" + hashlib.sha256("水彩".encode()).hexdigest()[:6], id="non-ascii"
        ),
    ],
)
def test_each_value_is_labelled_id_safe(axis: str, value: str | int, label: str) -> None:
    """Labels keep letters, digits, '.' and '_'; other runs become '-'; nothing left: a hash."""
    assert axis_label(axis, value) == label


def test_colliding_and_long_ids_stay_unique_and_valid(tmp_path: Path) -> None:
    """Values that label alike get a hash of their exact values each; an id past 128 characters
    (room kept for a repeat's -N) is cut and ends with a hash of the whole."""
    long_value = "x" * 150
    path = _write(
        tmp_path,
        f"""\
        version: 1
        endpoint: simulate
        items:
          - id: a
            prompt: "{{{{v}}}}"
            matrix: {{v: ["red apple", red-apple, plain]}}
          - id: b
            prompt: "{{{{v}}}}"
            repeat: 3
            matrix: {{v: [{long_value}1, {long_value}2]}}
        """,
    )
    ids = _ids(load_job(path))
    assert ids[0].startswith("a-red-apple-") and ids[1].startswith("a-red-apple-")
    assert ids[0] != ids[1] and len(ids[0]) == len("a-red-apple-") + 6
    assert ids[2] == "a-plain"
    assert len(set(ids)) == len(ids) == 9
    assert all(len(item_id) <= 128 for item_id in ids)
    assert ids[3].endswith("-1") and ids[3][:-2] != ids[6][:-2]


def test_an_item_without_a_matrix_under_no_matrix_is_unchanged(tmp_path: Path) -> None:
    """No matrix: no combination, no `variant_of`, the spec as it was."""
    path = _write(
        tmp_path,
        """\
        version: 1
        endpoint: simulate
        items:
          - id: a
            prompt: p
        """,
    )
    (item,) = load_job(path).items
    assert item.matrix == () and item.variant_of is None
    assert set(item.spec()) == {
        "prompt",
        "images",
        "model",
        "image_size",
        "aspect_ratio",
        "response_modalities",
    }


# --- problems ----------------------------------------------------------------------------------


def test_matrix_mistakes_are_each_one_line_at_their_place(tmp_path: Path) -> None:
    """Contradictions, unused variables (with a guess), bad values, repeats and too many requests
    are all reported in one pass."""
    path = _write(
        tmp_path,
        f"""\
        version: 1
        endpoint: simulate
        seed: 3
        matrix:
          seed: [1, 2]
          colr: [red]
        items:
          - id: a
            prompt: "a {{{{colour}}}} fox"
            vars: {{colour: red}}
            model: {FLASH}
            matrix: {{model: [{PRO}], imag_size: [1K]}}
          - id: b
            prompt: b
            matrix: {{image_size: ["1k"], aspect_ratio: ["1:1", "1:1"], style: oops}}
          - id: c
            prompt: "c {{{{z}}}}"
            repeat: 5000
            matrix: {{z: [a, b, c]}}
        """,
    )
    problems = _problems(path)
    assert problems == [
        f"{path}:5: matrix.seed: seed is also given; keep one of the two",
        f"{path}:6: matrix.colr: no {{{{colr}}}} in the prompt, system_prompt or id uses it;"
        " HINT: did you mean colour? a matrix varies model, image_size, aspect_ratio, seed,"
        " grounding, thinking_level and variables the item's texts use",
        f"{path}:8: item 'a': matrix.model: the item also sets model; keep one of the two",
        f"{path}:8: item 'a': matrix.imag_size: no {{{{imag_size}}}} in the prompt,"
        " system_prompt or id uses it; HINT: did you mean image_size? a matrix varies model,"
        " image_size, aspect_ratio, seed, grounding, thinking_level and variables the item's"
        " texts use",
        f"{path}:15: item 'b': matrix.image_size[0]: '1k': write '1K' (uppercase K)",
        f"{path}:15: item 'b': matrix.aspect_ratio: 1:1 listed more than once",
        f"{path}:15: item 'b': matrix.style: Input should be a valid list",
        f"{path}:16: item 'c': matrix: seed 2 x z 3 x repeat 5000 makes 30000 requests; at"
        " most 10000 per item; HINT: split it into several items",
    ]


def test_an_items_file_row_follows_the_top_level_matrix_unless_its_cells_pin_it(
    tmp_path: Path,
) -> None:
    """Rows expand like items; a row's own cell pins a key; a CSV cannot hold a matrix (a .jsonl
    row can)."""
    (tmp_path / "rows.csv").write_text("id,prompt,image_size\nr1,one,\nr2,two,2K\n")
    path = _write(
        tmp_path,
        """\
        version: 1
        endpoint: simulate
        matrix: {image_size: [1K, 4K]}
        items_file: rows.csv
        """,
    )
    assert _ids(load_job(path)) == ["r1-1K", "r1-4K", "r2"]
    (tmp_path / "rows.jsonl").write_text('{"id": "j", "prompt": "p", "matrix": {"seed": [1]}}\n')
    path.write_text(path.read_text().replace("rows.csv", "rows.jsonl"))
    assert _ids(load_job(path)) == ["j-1K-seed1", "j-4K-seed1"]
    (tmp_path / "rows.csv").write_text("id,prompt,matrix\nr1,one,x\n")
    path.write_text(path.read_text().replace("rows.jsonl", "rows.csv"))
    (problem,) = _problems(path)
    assert problem.startswith("rows.csv:1: unknown column(s) matrix;")


# --- plan and schema ---------------------------------------------------------------------------


def test_plan_shows_each_expansion_and_the_cost_of_each_combination(
    cli: Cli, tmp_path: Path
) -> None:
    """`plan` lists the items a matrix expanded, with their lists, combinations, items and cost,
    and a line per combination of the fields it varies; stdout only, exit 0."""
    shutil.copytree(JOBS, tmp_path / "jobs")
    result = cli("plan", str(tmp_path / "jobs" / "matrix.yaml"))
    assert result.exit_code == 0 and result.stderr == ""
    lines = result.stdout.splitlines()
    assert "matrices: 3 item(s) expanded into 14 item(s)" in lines
    assert "fox: model 3 x image_size 2 = 6 combination(s), 6 item(s), $0.4700" in lines
    rows = [line.split() for line in lines if line.startswith("  model=")]
    assert [f"model={PRO}", "image_size=2K", "1", "$0.0900"] in rows and len(rows) == 6
    assert "poster: image_size 1 x city 2 x style 2 = 4 combination(s), 4 item(s), $0.2200" in (
        lines
    )


def test_the_schema_describes_seed_vars_and_matrix(cli: Cli) -> None:
    """`batchbanana schema` offers the new fields for editor completion, at the top and per item."""
    schema = json.loads(cli("schema").stdout)
    for fields in (schema["properties"], schema["$defs"]["Item"]["properties"]):
        assert {"seed", "vars", "matrix"} <= set(fields)
    matrix = schema["$defs"]["Matrix"]
    assert {"model", "image_size", "aspect_ratio", "seed"} <= set(matrix["properties"])
    assert matrix["additionalProperties"]["type"] == "array"


def test_an_edit_names_one_combination_of_a_matrix_item(tmp_path: Path) -> None:
    """`item:<id>` names a combination's id; the item's own id is not one, and the hint names a
    combination to use instead."""
    path = _write(
        tmp_path,
        """\
        version: 1
        endpoint: simulate
        items:
          - id: fox
            prompt: a fox
            matrix: {image_size: [1K, 2K]}
          - id: edit
            prompt: add a hat
            images: ["item:fox-2K"]
        """,
    )
    edit = load_job(path).items[-1]
    assert [image.reference for image in edit.images] == ["fox-2K"]
    path.write_text(path.read_text().replace("item:fox-2K", "item:fox"))
    (problem,) = _problems(path)
    assert "no item of this job has the id 'fox'" in problem
    assert "HINT: an item with a matrix has one id per combination" in problem
    assert "item:fox-1K" in problem
