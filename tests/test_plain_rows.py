"""Plain items_file rows (plan/plain_rows.py, plan/plain.py) against the Item model's way: any
CSV or .jsonl rows plan to the same work items, in the same order, with the same ids and
fingerprints, or to the same problems; and the fingerprint template against `fingerprint`."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import batchbanana.plan.items_file as items_file
from batchbanana.errors import UserError
from batchbanana.plan.build import load_job
from batchbanana.plan.inputs import ImageInput
from batchbanana.plan.job import FingerprintTemplate, fingerprint
from batchbanana.plan.workitems import WorkItems

_MODELS = ["gemini-2.5-flash-image", "gemini-3.1-flash-image-preview", "gemini-3-pro-image"]
_CELLS = {
    "id": st.sampled_from(["a", "b", "a-1", "x.y", "bad id", "{{v}}", "", " ", "a\x00", "b\n"]),
    "prompt": st.sampled_from(["p", "q r", "", " ", "{{v}}", "é ü \\{{", "a\x00", '"quoted"']),
    "model": st.sampled_from(["", "nope", *_MODELS]),
    "image_size": st.sampled_from(["", "1K", "2K", "512", "1k", " 4K", "4K"]),
    "aspect_ratio": st.sampled_from(["", "16:9", "1:1", "4:1", "16/9", "16:9\n"]),
    "system_prompt": st.sampled_from(["", "be kind", "{{v}}", "x\x00"]),
    "seed": st.sampled_from(["", "7", " 8 ", "-1", "2147483647", "2147483648", "1.5", "x"]),
    "repeat": st.sampled_from(["", "2"]),
}
_MANIFESTS = [
    "",
    "model: gemini-3.1-flash-image-preview\nimage_size: 2K\nseed: 3\n",
    "system_prompt: studio light\naspect_ratio: '4:3'\n",
    "model: gemini-2.5-flash-image\n",
    "pricing: {nope: {per_request_usd: 0.01}}\n",
    "grounding: web\nmodel: gemini-3-pro-image-preview\n",
    "grounding: web+image\nthinking_level: high\nmodel: gemini-3.1-flash-image-preview\n",
    "thinking_level: minimal\n",
]


def _plan(folder: Path, fast: bool, monkeypatch: pytest.MonkeyPatch) -> Any:
    with monkeypatch.context() as patch:
        if not fast:
            patch.setattr(items_file, "plain_layout", lambda header: None)
            patch.setattr(items_file, "plain_json_row", lambda *row: None)
        try:
            job = load_job(folder / "job.yaml")
        except UserError as exc:
            return ("problems", exc.problems)
    assert isinstance(job.items, WorkItems)
    return [(item, item.spec()) for item in job.items]


_FIXTURES = [HealthCheck.function_scoped_fixture]


@settings(max_examples=120, deadline=None, suppress_health_check=_FIXTURES)
@given(
    columns=st.lists(st.sampled_from(sorted(_CELLS)), min_size=1, max_size=5, unique=True),
    data=st.data(),
    manifest=st.sampled_from(_MANIFESTS),
)
def test_plain_rows_plan_as_the_item_model_plans_them(
    columns: list[str],
    data: st.DataObject,
    manifest: str,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = tmp_path_factory.mktemp("plain")
    rows = data.draw(
        st.lists(st.fixed_dictionaries({name: _CELLS[name] for name in columns}), max_size=6)
    )
    with (folder / "rows.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([row[name] for name in columns])
    (folder / "job.yaml").write_text(
        f"version: 1\nendpoint: simulate\nitems_file: rows.csv\n{manifest}", encoding="utf-8"
    )
    assert _plan(folder, True, monkeypatch) == _plan(folder, False, monkeypatch)


_JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-1, 9), st.just(7.0), st.just([]))


def _rarely_odd(usual: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the usual text values, sometimes another JSON value (null, a number...)."""
    return st.integers(0, 4).flatmap(lambda pick: _JSON_VALUES if pick == 0 else usual)


@settings(max_examples=120, deadline=None, suppress_health_check=_FIXTURES)
@given(
    columns=st.lists(st.sampled_from([*_CELLS, "colour"]), min_size=1, max_size=5, unique=True),
    data=st.data(),
    manifest=st.sampled_from([*_MANIFESTS, "vars: {colour: red}\n"]),
)
def test_plain_jsonl_rows_plan_as_the_item_model_plans_them(
    columns: list[str],
    data: st.DataObject,
    manifest: str,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = tmp_path_factory.mktemp("plain")
    colour = st.sampled_from(["blue", ""])
    columns = ["prompt", *(name for name in columns if name != "prompt")]
    cell = {name: _rarely_odd(_CELLS.get(name, colour)) for name in columns}
    rows = data.draw(
        st.lists(st.fixed_dictionaries({name: cell[name] for name in columns}), max_size=6)
    )
    lines = [json.dumps(row) for row in rows]
    (folder / "rows.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "job.yaml").write_text(
        f"version: 1\nendpoint: simulate\nitems_file: rows.jsonl\n{manifest}", encoding="utf-8"
    )
    assert _plan(folder, True, monkeypatch) == _plan(folder, False, monkeypatch)


def test_a_million_rows_worth_of_kinds_share_their_shapes(tmp_path: Path) -> None:
    rows = "".join(f"r{n},prompt {n},{'2K' if n % 2 else ''}\n" for n in range(200))
    (tmp_path / "rows.csv").write_text("id,prompt,image_size\n" + rows)
    (tmp_path / "job.yaml").write_text("version: 1\nendpoint: simulate\nitems_file: rows.csv\n")
    items = load_job(tmp_path / "job.yaml").items
    assert isinstance(items, WorkItems)
    assert [count for _, count in items.shape_counts()] == [100, 100]
    assert [item.id for item in items[:3]] == ["r0", "r1", "r2"]


_TEXT = st.text(max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    model=_TEXT,
    size=_TEXT,
    ratio=st.none() | _TEXT,
    system=st.none() | _TEXT,
    modalities=st.lists(_TEXT, max_size=2).map(tuple),
    prompt=st.text(max_size=30),
    seed=st.none() | st.integers(0, 2**31),
    images=st.lists(st.sampled_from(["file", "url", "item"]), max_size=2),
    grounding=st.sampled_from(["none", "web", "web+image"]),
    thinking=st.none() | st.sampled_from(["minimal", "high"]),
)
def test_the_fingerprint_template_gives_the_fingerprint(
    model: str,
    size: str,
    ratio: str | None,
    system: str | None,
    modalities: tuple[str, ...],
    prompt: str,
    seed: int | None,
    images: list[str],
    grounding: str,
    thinking: str | None,
) -> None:
    inputs = tuple(
        ImageInput(kind, f"ref-{kind}-é", "image/png", sha256="ab" * 32)  # type: ignore[arg-type]
        for kind in images
    )
    template = FingerprintTemplate.of(
        model, size, ratio, system, modalities, inputs, grounding, thinking
    )
    expected = fingerprint(
        model, prompt, size, ratio, system, modalities, inputs, seed, grounding, thinking
    )
    assert "sha256:" + template.digest(prompt, seed).hex() == expected


def test_jsonl_rows_of_every_plain_field_plan_the_same_both_ways(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [
        {"prompt": "a fox"},
        {"id": "b", "prompt": "a fox", "seed": 3, "model": ""},
        {"id": "c", "prompt": " ", "system_prompt": "", "aspect_ratio": "16:9", "seed": " 4 "},
        {"id": "d", "prompt": "x", "image_size": "2K", "model": "gemini-3.1-flash-image-preview"},
        {"prompt": "a fox"},  # the same meaning again: its derived id gets -2
        {"id": "b", "prompt": "a duplicate"},
    ]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (tmp_path / "job.yaml").write_text("version: 1\nendpoint: simulate\nitems_file: rows.jsonl\n")
    fast = _plan(tmp_path, True, monkeypatch)
    assert fast == _plan(tmp_path, False, monkeypatch)
    assert fast[0] == "problems" and "duplicate id 'b' (first used at rows.jsonl:2)" in fast[1][0]
    del rows[-1]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    fast = _plan(tmp_path, True, monkeypatch)
    assert fast == _plan(tmp_path, False, monkeypatch)
    assert [item.id for item, _ in fast][1:4] == ["b", "c", "d"]
    assert fast[4][0].id == fast[0][0].id + "-2"
