"""Manifest validation (contract sections 2 and 4): every user mistake is one readable line
`file:line: item 'x': field: message`, all reported together, before anything is sent."""

from __future__ import annotations

import json
import re
import struct
import textwrap
import zlib
from pathlib import Path

import pytest

from batchbanana.errors import UserError
from batchbanana.plan.build import load_job
from batchbanana.plan.job import Job


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _png(width: int = 2, height: int = 2, total_bytes: int | None = None) -> bytes:
    """A valid RGB PNG; with `total_bytes`, padded by an ancillary chunk to exactly that size."""
    rows = (b"\x00" + b"\x80\x40\x20" * width) * height
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    head = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
    tail = _chunk(b"IDAT", zlib.compress(rows)) + _chunk(b"IEND", b"")
    if total_bytes is None:
        return head + tail
    padding = total_bytes - len(head) - len(tail) - 12
    return head + _chunk(b"pAdD", b"\x00" * padding) + tail


def _write(tmp_path: Path, text: str, name: str = "job.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(UserError) as caught:
        load_job(path)
    problems = caught.value.problems
    assert problems, "a UserError always carries at least one problem"
    assert all(isinstance(problem, str) and "\n" not in problem for problem in problems)
    return problems


def _one_problem(path: Path) -> str:
    problems = _problems(path)
    assert len(problems) == 1, problems
    return problems[0]


def _ids(job: Job) -> list[str]:
    return [item.id for item in job.items]


@pytest.fixture
def refs(tmp_path: Path) -> Path:
    """A `refs/` folder next to the manifest holding a.png and b.png."""
    folder = tmp_path / "refs"
    folder.mkdir()
    (folder / "a.png").write_bytes(_png(2, 2))
    (folder / "b.png").write_bytes(_png(3, 3))
    return folder


# --- unknown keys -----------------------------------------------------------------------------


def test_unknown_top_level_key_names_its_line_and_suggests_the_right_one(tmp_path: Path) -> None:
    """A typo such as `image_sise` is an error on its own line, with a "did you mean" hint."""
    path = _write(
        tmp_path,
        """\
        version: 1
        model: gemini-3-pro-image-preview
        image_sise: 2K
        items:
          - prompt: a fox
        """,
    )
    problem = _one_problem(path)
    assert problem.startswith(f"{path}:3: image_sise: unknown key")
    assert "did you mean image_size?" in problem


def test_unknown_item_key_names_the_item_and_its_line(tmp_path: Path) -> None:
    """An unknown key inside an item is an error naming the item, the key's line and a hint."""
    path = _write(
        tmp_path,
        """\
        version: 1
        items:
          - id: fox
            prompt: a fox
          - id: otter
            prompt: an otter
            aspect_ratoi: "16:9"
        """,
    )
    problem = _one_problem(path)
    assert problem.startswith(f"{path}:7: item 'otter': aspect_ratoi: unknown key")
    assert "did you mean aspect_ratio?" in problem


# --- image_size and aspect_ratio spelling -----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line"),
    [
        pytest.param("version: 1\nimage_size: 1k\nitems:\n  - prompt: a\n", 2, id="top-level"),
        pytest.param(
            "version: 1\nitems:\n  - id: x\n    image_size: 2k\n    prompt: a\n", 4, id="per-item"
        ),
    ],
)
def test_lowercase_k_is_refused_with_a_hint(tmp_path: Path, text: str, line: int) -> None:
    """`1k` is refused, and the message says to write an uppercase K."""
    problem = _one_problem(_write(tmp_path, text))
    assert f":{line}: " in problem
    assert "image_size" in problem
    assert "uppercase K" in problem


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("version: 1\naspect_ratio: 16:9\nitems:\n  - prompt: a\n", id="top-level"),
        pytest.param(
            "version: 1\nitems:\n  - id: x\n    prompt: a\n    aspect_ratio: 16:9\n", id="per-item"
        ),
    ],
)
def test_unquoted_ratio_gets_the_quoting_hint(tmp_path: Path, text: str) -> None:
    """An unquoted 16:9 (which YAML reads as a number) is refused with a hint to quote it."""
    problem = _one_problem(_write(tmp_path, text))
    assert "aspect_ratio" in problem
    assert "quote it" in problem


def test_unquoted_512_is_accepted_for_flash_31(tmp_path: Path) -> None:
    """`image_size: 512` written unquoted is accepted for gemini-3.1-flash-image-preview."""
    path = _write(
        tmp_path,
        """\
        version: 1
        model: gemini-3.1-flash-image-preview
        image_size: 512
        items:
          - prompt: a small icon
          - prompt: another icon
            image_size: 512
        """,
    )
    assert [item.image_size for item in load_job(path).items] == ["512", "512"]


def test_512_is_refused_for_pro(tmp_path: Path) -> None:
    """`image_size: 512` on gemini-3-pro-image-preview is refused for that item."""
    path = _write(
        tmp_path,
        """\
        version: 1
        model: gemini-3-pro-image-preview
        items:
          - id: tiny
            prompt: a small icon
            image_size: 512
        """,
    )
    problem = _one_problem(path)
    assert "item 'tiny': image_size: 512 is not offered by gemini-3-pro-image-preview" in problem


# --- model rules ------------------------------------------------------------------------------


def test_2k_on_flash_25_is_refused_naming_the_item(tmp_path: Path) -> None:
    """gemini-2.5-flash-image at 2K is an error on that item, saying 1K only."""
    path = _write(
        tmp_path,
        """\
        version: 1
        model: gemini-2.5-flash-image
        items:
          - id: fine
            prompt: a
          - id: big
            prompt: b
            image_size: 2K
        """,
    )
    problem = _one_problem(path)
    assert problem.startswith(f"{path}:6: item 'big': image_size: ")
    assert "1K only" in problem


def test_4k_ratio_1_8_on_pro_is_refused_for_the_ratio(tmp_path: Path) -> None:
    """On pro, 4K is fine but 1:8 is not: one aspect_ratio error naming the item."""
    path = _write(
        tmp_path,
        """\
        version: 1
        model: gemini-3-pro-image-preview
        image_size: 4K
        items:
          - id: tall
            prompt: a tower
            aspect_ratio: "1:8"
        """,
    )
    problem = _one_problem(path)
    assert "item 'tall': aspect_ratio: '1:8' is not offered by gemini-3-pro-image" in problem


def test_1_8_on_flash_31_at_4k_is_accepted(tmp_path: Path) -> None:
    """The same 4K 1:8 item is valid on gemini-3.1-flash-image-preview."""
    path = _write(
        tmp_path,
        """\
        version: 1
        model: gemini-3.1-flash-image-preview
        image_size: 4K
        items:
          - id: tall
            prompt: a tower
            aspect_ratio: "1:8"
        """,
    )
    [item] = load_job(path).items
    assert (item.image_size, item.aspect_ratio) == ("4K", "1:8")


def test_unknown_model_without_pricing_is_refused_with_a_hint(tmp_path: Path) -> None:
    """An unknown model with no `pricing` entry is an error that says to add one."""
    path = _write(tmp_path, "version: 1\nmodel: my-model\nitems:\n  - id: a\n    prompt: p\n")
    problem = _one_problem(path)
    assert "item 'a': model: unknown model 'my-model'" in problem
    assert "HINT" in problem
    assert "pricing" in problem


def test_unknown_model_with_pricing_is_allowed_and_unchecked(tmp_path: Path) -> None:
    """With a `pricing` entry an unknown model is accepted and its sizes are not checked."""
    path = _write(
        tmp_path,
        """\
        version: 1
        model: my-model
        image_size: 512
        aspect_ratio: "8:1"
        pricing:
          my-model: {per_request_usd: 0.5}
        items:
          - prompt: p
        """,
    )
    [item] = load_job(path).items
    assert (item.model, item.image_size, item.aspect_ratio) == ("my-model", "512", "8:1")
    assert item.price.estimate_usd("512") == 0.5


# --- ids --------------------------------------------------------------------------------------


def test_duplicate_ids_are_refused(tmp_path: Path) -> None:
    """Two items with the same id are an error on the second, pointing at the first."""
    path = _write(
        tmp_path,
        """\
        version: 1
        items:
          - id: fox
            prompt: a fox
          - id: fox
            prompt: another fox
        """,
    )
    problem = _one_problem(path)
    assert problem.startswith(f"{path}:5: item 'fox': id: ")
    assert "duplicate id 'fox'" in problem
    assert f"{path}:3" in problem


def test_repeat_expansion_colliding_with_an_id_is_refused(tmp_path: Path) -> None:
    """`repeat: 2` on `fox` makes fox-1 and fox-2, so a separate item `fox-2` is a duplicate."""
    path = _write(
        tmp_path,
        """\
        version: 1
        items:
          - id: fox
            prompt: a fox
            repeat: 2
          - id: fox-2
            prompt: the other fox
        """,
    )
    assert "duplicate id 'fox-2'" in _one_problem(path)


@pytest.mark.parametrize(
    "bad_id",
    [
        pytest.param("../x", id="parent-dir"),
        pytest.param("a/b", id="slash"),
        pytest.param(".hidden", id="leading-dot"),
        pytest.param("-x", id="leading-dash"),
        pytest.param("a+b", id="plus"),
        pytest.param("x" * 129, id="too-long"),
    ],
)
def test_invalid_ids_are_refused(tmp_path: Path, bad_id: str) -> None:
    """An id that could escape output_dir, hide a file or clash with `+N` names is refused."""
    path = _write(tmp_path, f"version: 1\nitems:\n  - id: '{bad_id}'\n    prompt: p\n")
    problem = _one_problem(path)
    assert f"{path}:3: item '{bad_id}': id: " in problem
    assert "not a valid id" in problem


def test_longest_valid_id_is_accepted(tmp_path: Path) -> None:
    """An id of 128 allowed characters is valid."""
    item_id = "A" + "b.c_d-9" * 18 + "x" * 1
    assert len(item_id) == 128
    path = _write(tmp_path, f"version: 1\nitems:\n  - id: '{item_id}'\n    prompt: p\n")
    assert _ids(load_job(path)) == [item_id]


def test_unknown_key_in_an_image_mapping_is_one_readable_problem(tmp_path: Path) -> None:
    """A typo inside `{url: ..., mime_type: ...}` is one readable line naming images[0].mime."""
    path = _write(
        tmp_path,
        """\
        version: 1
        items:
          - id: x
            prompt: p
            images: [{url: "https://example.com/x", mime: image/png}]
        """,
    )
    problem = _one_problem(path)
    assert problem.startswith(f"{path}:5: item 'x': images[0].mime: unknown key")
    assert "did you mean images" not in problem


# --- endpoint ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "endpoint",
    [
        pytest.param(
            "https://api.apiyi.com/v1beta/models/gemini-3-pro-image-preview:generateContent",
            id="full-url",
        ),
        pytest.param("https://api.apiyi.com?key=sk-SECRET-in-url", id="key-in-query"),
        pytest.param("https://api.apiyi.com/v1beta?key=sk-SECRET-in-url", id="both"),
    ],
)
def test_endpoint_must_be_a_base_url(tmp_path: Path, endpoint: str) -> None:
    """A full :generateContent URL or a ?key= endpoint is refused, without echoing the key."""
    path = _write(tmp_path, f"version: 1\nendpoint: '{endpoint}'\nitems:\n  - prompt: p\n")
    problem = _one_problem(path)
    assert problem.startswith(f"{path}:2: endpoint: ")
    assert "sk-SECRET-in-url" not in problem


def test_plain_http_to_a_remote_host_is_refused(tmp_path: Path) -> None:
    """http://example.com is refused, with a hint naming allow_insecure_http."""
    path = _write(tmp_path, "version: 1\nendpoint: http://example.com\nitems:\n  - prompt: p\n")
    problem = _one_problem(path)
    assert problem.startswith(f"{path}:2: endpoint: ")
    assert "allow_insecure_http" in problem


@pytest.mark.parametrize(
    ("endpoint", "allow"),
    [
        pytest.param("http://example.com", True, id="remote-allowed-explicitly"),
        pytest.param("http://127.0.0.1:8000", False, id="loopback-ipv4"),
        pytest.param("http://localhost:8000", False, id="localhost"),
        pytest.param("http://[::1]:8000", False, id="loopback-ipv6"),
        pytest.param("https://api.apiyi.com/", False, id="https-trailing-slash"),
        pytest.param("simulate", False, id="simulator"),
    ],
)
def test_acceptable_endpoints(tmp_path: Path, endpoint: str, allow: bool) -> None:
    """Loopback http, https, `simulate`, and http with allow_insecure_http: true are accepted."""
    flag = "allow_insecure_http: true\n" if allow else ""
    path = _write(tmp_path, f"version: 1\nendpoint: '{endpoint}'\n{flag}items:\n  - prompt: p\n")
    assert load_job(path).endpoint == endpoint.rstrip("/")


# --- input images -----------------------------------------------------------------------------


def _item_with_images(tmp_path: Path, item_id: str, images: list[str]) -> Path:
    listed = ", ".join(images)
    return _write(
        tmp_path,
        f"version: 1\nitems:\n  - id: {item_id}\n    prompt: p\n    images: [{listed}]\n",
    )


def test_missing_local_image_names_the_item(tmp_path: Path) -> None:
    """A local image that does not exist is an error naming the item and the image."""
    problem = _one_problem(_item_with_images(tmp_path, "gone", ["refs/nowhere.png"]))
    expected = f"{tmp_path / 'job.yaml'}:3: item 'gone': images[0]: "
    assert problem.startswith(expected)
    assert "nowhere.png" in problem
    assert "no such file" in problem


def test_text_file_named_png_names_the_item(tmp_path: Path) -> None:
    """A text file with a .png name is refused by its bytes, naming the item."""
    (tmp_path / "notes.png").write_text("these are notes, not pixels")
    problem = _one_problem(_item_with_images(tmp_path, "fake", ["notes.png"]))
    assert "item 'fake': images[0]: " in problem
    assert "not a PNG" in problem


def test_image_over_7_mb_names_the_item(tmp_path: Path) -> None:
    """An image of 7,000,001 bytes (over 7 MB, MB being 10^6 bytes) is refused for its item."""
    (tmp_path / "huge.png").write_bytes(_png(total_bytes=7_000_001))
    problem = _one_problem(_item_with_images(tmp_path, "huge", ["huge.png"]))
    assert "item 'huge': images[0]: " in problem
    assert "7 MB" in problem


def test_image_of_exactly_7_mb_is_accepted(tmp_path: Path) -> None:
    """An image of exactly 7,000,000 bytes is within the limit."""
    (tmp_path / "edge.png").write_bytes(_png(total_bytes=7_000_000))
    [item] = load_job(_item_with_images(tmp_path, "edge", ["edge.png"])).items
    assert item.images[0].size_bytes == 7_000_000


def test_15_images_name_the_item(tmp_path: Path, refs: Path) -> None:
    """Fifteen images on one item are refused (at most 14 per request), naming the item."""
    problem = _one_problem(_item_with_images(tmp_path, "crowd", ["refs/a.png"] * 15))
    assert "item 'crowd': images: " in problem
    assert "14" in problem


def test_14_images_are_accepted(tmp_path: Path, refs: Path) -> None:
    """Fourteen images on one item are within the limit."""
    [item] = load_job(_item_with_images(tmp_path, "crowd", ["refs/a.png"] * 14)).items
    assert len(item.images) == 14


# --- every problem at once --------------------------------------------------------------------


def test_several_problems_are_reported_together(tmp_path: Path) -> None:
    """Schema, endpoint, model-rule and file problems all come in one UserError, in line order."""
    path = _write(
        tmp_path,
        """\
        version: 1
        endpoint: https://api.apiyi.com?key=abc
        model: gemini-2.5-flash-image
        items:
          - id: a
            prompt: p
            image_size: 2K
          - id: b
            prompt: p
            images: [missing.png]
          - id: ../c
            prompt: p
          - id: d
            prompt: p
            colour: red
          - id: e
            prompt: p
            aspect_ratio: "8:1"
        """,
    )
    problems = _problems(path)
    assert len(problems) == 6, problems
    lines = [int(problem.split(":")[1]) for problem in problems]
    assert lines == sorted(lines)


def test_every_problem_has_the_contract_format(tmp_path: Path) -> None:
    """Each problem reads `file:line: item 'x': field: message`."""
    path = _write(
        tmp_path,
        """\
        version: 1
        model: gemini-2.5-flash-image
        items:
          - id: a
            prompt: p
            image_size: 4K
          - id: b
            prompt: p
            images: [missing.png]
        """,
    )
    pattern = re.compile(rf"^{re.escape(str(path))}:\d+: item '[ab]': [a-z_\[\]0-9]+: \S.*$")
    problems = _problems(path)
    assert len(problems) == 2
    assert all(pattern.match(problem) for problem in problems), problems


def test_top_level_typo_does_not_hide_file_problems(tmp_path: Path) -> None:
    """A top-level typo and a missing image file are both reported in the same pass."""
    path = _write(
        tmp_path,
        """\
        version: 1
        image_sise: 2K
        items:
          - id: a
            prompt: p
            images: [missing.png]
        """,
    )
    problems = _problems(path)
    assert len(problems) == 2, problems


# --- derived ids, repeat and fingerprints -----------------------------------------------------

THREE_ITEMS = """\
version: 1
items:
  - prompt: a red fox in snow
  - prompt: an otter with dogs
    aspect_ratio: "16:9"
  - prompt: a lighthouse at dusk
"""


def test_derived_ids_are_stable_across_loads(tmp_path: Path) -> None:
    """Loading the same manifest twice gives the same derived ids."""
    path = _write(tmp_path, THREE_ITEMS)
    first, second = _ids(load_job(path)), _ids(load_job(path))
    assert first == second
    assert len(set(first)) == 3


def test_inserting_an_item_shifts_no_derived_id(tmp_path: Path) -> None:
    """Inserting an item before the others leaves every other derived id unchanged."""
    before = _ids(load_job(_write(tmp_path, THREE_ITEMS)))
    inserted = THREE_ITEMS.replace("items:\n", "items:\n  - prompt: a brand new first item\n")
    after = _ids(load_job(_write(tmp_path, inserted, name="other/job.yaml")))
    assert len(after) == 4
    assert after[1:] == before


def test_derived_ids_are_valid_ids(tmp_path: Path) -> None:
    """Derived ids obey the id rule, so they are safe file names."""
    for item_id in _ids(load_job(_write(tmp_path, THREE_ITEMS))):
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", item_id)


def test_exact_duplicates_get_numbered_ids(tmp_path: Path) -> None:
    """Exact duplicate items without ids get the derived id, then -2, -3."""
    path = _write(
        tmp_path, "version: 1\nitems:\n  - prompt: same\n  - prompt: same\n  - prompt: same\n"
    )
    first, second, third = _ids(load_job(path))
    assert (second, third) == (f"{first}-2", f"{first}-3")


def test_derived_ids_never_collide_with_repeat_variations(tmp_path: Path) -> None:
    """Items without ids never fail as duplicates, even when one repeats and one does not."""
    text = "version: 1\nitems:\n  - prompt: same\n    repeat: 2\n  - prompt: same\n"
    path = _write(tmp_path, text)
    ids = _ids(load_job(path))
    assert len(ids) == len(set(ids)) == 3


def test_repeat_gives_numbered_ids_with_one_fingerprint(tmp_path: Path) -> None:
    """`repeat: 3` on `x` gives x-1, x-2, x-3 in order, all with the same fingerprint."""
    text = "version: 1\nitems:\n  - id: x\n    prompt: p\n    repeat: 3\n  - id: y\n    prompt: q\n"
    path = _write(tmp_path, text)
    job = load_job(path)
    assert _ids(job) == ["x-1", "x-2", "x-3", "y"]
    assert len({item.fingerprint for item in job.items[:3]}) == 1
    assert job.items[3].fingerprint != job.items[0].fingerprint


def test_fingerprint_changes_with_the_prompt(tmp_path: Path) -> None:
    """Editing an item's prompt changes its fingerprint (a new piece of work), not its id."""
    template = "version: 1\nitems:\n  - id: x\n    prompt: {}\n"
    [before] = load_job(_write(tmp_path, template.format("a fox"))).items
    [after] = load_job(_write(tmp_path, template.format("a cat"))).items
    assert before.id == after.id == "x"
    assert before.fingerprint != after.fingerprint


def test_fingerprint_is_stable_and_follows_image_bytes(tmp_path: Path, refs: Path) -> None:
    """The fingerprint is the same across loads and changes when an input image's bytes change."""
    path = _item_with_images(tmp_path, "x", ["refs/a.png"])
    first = load_job(path).items[0].fingerprint
    assert load_job(path).items[0].fingerprint == first
    (refs / "a.png").write_bytes(_png(5, 5))
    assert load_job(path).items[0].fingerprint != first


# --- items_file -------------------------------------------------------------------------------

CSV_MANIFEST = """\
version: 1
image_size: 2K
items:
  - id: first
    prompt: from the manifest
items_file: data/prompts.csv
"""


def test_items_file_csv(tmp_path: Path, refs: Path) -> None:
    """CSV rows keep quoted commas and unicode, split images on `;` relative to the manifest,
    take the default for an empty cell, and follow the manifest's own items."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "prompts.csv").write_text(
        "id,prompt,images,image_size,aspect_ratio\n"
        'r1,"a fox, a hen, and a goose",refs/a.png;refs/b.png,4K,"16:9"\n'
        "r2,ünïcødé 狐狸 🦊,,,\n",
        encoding="utf-8",
    )
    job = load_job(_write(tmp_path, CSV_MANIFEST))
    assert _ids(job) == ["first", "r1", "r2"]
    _, r1, r2 = job.items
    assert r1.prompt == "a fox, a hen, and a goose"
    assert [image.reference for image in r1.images] == [
        str((refs / "a.png").resolve()),
        str((refs / "b.png").resolve()),
    ]
    assert (r1.image_size, r1.aspect_ratio) == ("4K", "16:9")
    assert r2.prompt == "ünïcødé 狐狸 🦊"
    assert (r2.image_size, r2.aspect_ratio, r2.images) == ("2K", None, ())


def test_items_file_csv_empty_id_cell_gets_a_derived_id(tmp_path: Path) -> None:
    """An empty id cell takes the default: a derived id, as for an item written without one."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "prompts.csv").write_text("id,prompt,repeat\n,a cat,\n,a dog,2\n")
    job = load_job(_write(tmp_path, CSV_MANIFEST))
    first, cat, dog1, dog2 = _ids(job)
    assert first == "first"
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", cat)
    assert (dog1, dog2) == (f"{dog1[:-2]}-1", f"{dog1[:-2]}-2")


def test_items_file_unknown_column_names_line_1(tmp_path: Path) -> None:
    """An unknown CSV column is an error on line 1 of the CSV, naming the column."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "prompts.csv").write_text("id,prompt,colour\nr1,a,red\n")
    problem = _one_problem(_write(tmp_path, CSV_MANIFEST))
    assert "prompts.csv:1: " in problem
    assert "colour" in problem


def test_items_file_bad_row_names_its_line(tmp_path: Path) -> None:
    """A bad CSV row is an error naming its physical line, even after a multi-line cell."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "prompts.csv").write_text(
        'id,prompt,image_size\nr1,a,1K\nr2,"two\nlines",2K\nr3,b,1k\n'
    )
    problem = _one_problem(_write(tmp_path, CSV_MANIFEST))
    assert "prompts.csv:5: item 'r3': image_size: " in problem
    assert "uppercase K" in problem


def test_items_file_rows_are_checked_against_model_rules(tmp_path: Path) -> None:
    """A CSV row asking a model for a size it lacks is an error naming the item."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "prompts.csv").write_text(
        "id,prompt,model,image_size\nok,a,,\nbad,b,gemini-2.5-flash-image,4K\n"
    )
    manifest = CSV_MANIFEST.replace("image_size: 2K\n", "")
    problem = _one_problem(_write(tmp_path, manifest))
    assert "item 'bad': image_size: 4K is not offered by gemini-2.5-flash-image" in problem


@pytest.mark.parametrize(
    "csv_text",
    [
        pytest.param(
            "id,prompt,model,image_size\nok,a,,\nbad,b,gemini-2.5-flash-image,4K\n", id="model-rule"
        ),
        pytest.param("id,prompt,images\nok,a,\nbad,b,refs/missing.png\n", id="missing-image"),
    ],
)
def test_items_file_row_problems_name_the_items_file(tmp_path: Path, csv_text: str) -> None:
    """A problem found in an items_file row is placed at that file's line, not the manifest's."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "prompts.csv").write_text(csv_text)
    manifest = CSV_MANIFEST.replace("image_size: 2K\n", "")
    problem = _one_problem(_write(tmp_path, manifest))
    assert re.match(r"^data/prompts\.csv:3: item 'bad': ", problem), problem


def test_items_file_id_colliding_with_an_item_is_a_duplicate(tmp_path: Path) -> None:
    """Ids are unique across `items` and `items_file` rows together."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "prompts.csv").write_text("id,prompt\nfirst,again\n")
    assert "duplicate id 'first'" in _one_problem(_write(tmp_path, CSV_MANIFEST))


@pytest.mark.parametrize(
    ("name", "message"),
    [
        pytest.param(
            "data/prompts.csv",
            "no such file; HINT: the path is relative to the manifest's folder",
            id="missing",
        ),
        pytest.param("data/prompts.txt", "use a .csv or .jsonl file", id="not-csv-or-jsonl"),
    ],
)
def test_items_file_that_cannot_be_read_names_the_manifest_line(
    tmp_path: Path, name: str, message: str
) -> None:
    """An items_file that is missing, or neither .csv nor .jsonl, is a problem at the line of the
    manifest that names it, like every other manifest problem."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "prompts.txt").write_text("id,prompt\nr1,a\n")
    path = _write(tmp_path, CSV_MANIFEST.replace("data/prompts.csv", name))
    assert _one_problem(path) == f"{path}:6: items_file: {name}: {message}"


def test_items_file_csv_with_a_byte_order_mark(tmp_path: Path) -> None:
    """A CSV saved by Excel as UTF-8 (with a byte-order mark) is read like any other."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "prompts.csv").write_text("id,prompt\nr1,a\n", encoding="utf-8-sig")
    assert _ids(load_job(_write(tmp_path, CSV_MANIFEST))) == ["first", "r1"]


JSONL_MANIFEST = CSV_MANIFEST.replace("prompts.csv", "prompts.jsonl")


def test_items_file_jsonl(tmp_path: Path, refs: Path) -> None:
    """JSONL rows are items: keys as in `items`, images relative to the manifest, blanks skipped."""
    (tmp_path / "data").mkdir()
    rows = [
        {"id": "j1", "prompt": "a fox, 狐狸", "images": ["refs/a.png"], "image_size": "4K"},
        {"id": "j2", "prompt": "b", "aspect_ratio": "9:16", "repeat": 2},
    ]
    text = json.dumps(rows[0], ensure_ascii=False) + "\n\n" + json.dumps(rows[1]) + "\n"
    (tmp_path / "data" / "prompts.jsonl").write_text(text, encoding="utf-8")
    job = load_job(_write(tmp_path, JSONL_MANIFEST))
    assert _ids(job) == ["first", "j1", "j2-1", "j2-2"]
    j1 = job.items[1]
    assert (j1.prompt, j1.image_size) == ("a fox, 狐狸", "4K")
    assert [image.reference for image in j1.images] == [str((refs / "a.png").resolve())]
    assert (job.items[2].image_size, job.items[2].aspect_ratio) == ("2K", "9:16")


def test_items_file_jsonl_bad_lines_name_their_line(tmp_path: Path) -> None:
    """A JSONL line that is not JSON, or has an unknown key, is an error naming its line."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "prompts.jsonl").write_text(
        '{"id": "j1", "prompt": "a"}\n{not json\n{"id": "j3", "prompt": "c", "colour": 1}\n'
    )
    problems = _problems(_write(tmp_path, JSONL_MANIFEST))
    assert len(problems) == 2, problems
    assert "prompts.jsonl:2: " in problems[0]
    assert "prompts.jsonl:3: item 'j3': colour: " in problems[1]
