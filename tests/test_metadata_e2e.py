"""Images that carry their making (contract section 11), end to end through the CLI on the
simulator: `metadata: sidecar` (the default) writes `<id>.json` beside each image, `none` nothing,
`embed` also writes the record into the image; `retry` keeps the job's setting."""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from batchbanana import __version__
from batchbanana.simulator import RunningSimulator
from tests.conftest import CliResult, png_bytes, read_jsonl, results

Cli = Callable[..., CliResult]
Writer = Callable[..., Path]
ROOT = Path(__file__).resolve().parent.parent


def sidecar(path: Path) -> dict[str, Any]:
    """A sidecar, read as UTF-8 JSON."""
    return dict(json.loads(path.read_text(encoding="utf-8")))


def png_text(path: Path) -> dict[str, str]:
    """A PNG's text chunks, as Pillow reads them."""
    with Image.open(path) as image:
        return dict(image.text)  # type: ignore[attr-defined]


def xmp_of(path: Path) -> bytes:
    """A JPEG's or WebP's XMP packet, as Pillow reads it."""
    with Image.open(path) as image:
        return bytes(image.info["xmp"])


def pixels(source: Path | bytes) -> bytes:
    """Decoded pixels of an image file or of image bytes."""
    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
        return image.tobytes()


def without_record_chunks(png: bytes) -> bytes:
    """A PNG with its `iTXt` chunks taken out (what embedding adds), every other byte kept."""
    kept, offset = [png[:8]], 8
    while offset < len(png):
        length = int.from_bytes(png[offset : offset + 4], "big")
        end = offset + 12 + length
        if png[offset + 4 : offset + 8] != b"iTXt":
            kept.append(png[offset:end])
        offset = end
    return b"".join(kept)


def test_a_sidecar_beside_each_image_tells_how_it_was_made(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """By default each image has `<id>.json` beside it: job, item, prompt, model, size, ratio,
    seed, inputs by name and digest, price, response id, the model's words and the version; the
    image itself is saved exactly as received (no text chunk added)."""
    (tmp_path / "otter.png").write_bytes(png_bytes(16, 16))
    items = [{"id": "fox", "prompt": "a fox, 狐狸", "images": ["otter.png"], "aspect_ratio": "3:2"}]
    manifest = write_manifest(items, endpoint=simulator.url, job="shots", image_size="2K")
    assert cli("run", str(manifest), "--no-progress").exit_code == 0
    out = tmp_path / "out"
    (line,) = results(out / "ledger.jsonl")
    raw = (out / "fox.json").read_bytes()
    assert raw.endswith(b"}\n") and "狐狸".encode() in raw  # readable UTF-8, not \u escapes
    record = sidecar(out / "fox.json")
    spec_image = line["spec"]["images"][0]
    assert record == {
        "batchbanana": __version__,
        "job": "shots",
        "item": "fox",
        "file": "fox.png",
        "index": 1,
        "images_in_answer": 1,
        "prompt": "a fox, 狐狸",
        "system_prompt": None,
        "model": "gemini-3-pro-image-preview",
        "model_version": line.get("model_version"),
        "image_size": "2K",
        "aspect_ratio": "3:2",
        "seed": None,
        "inputs": [
            {"file": "otter.png", "sha256": spec_image["sha256"], "mime_type": "image/png"}
        ],
        "price_usd": line["price_usd"],
        "attempt": 1,
        "fingerprint": line["fingerprint"],
        "response_id": line["response_id"],
        "text": line.get("text"),
        "created": record["created"],
    }
    assert record["response_id"] and record["created"].endswith("Z")
    assert png_text(out / "fox.png") == {}  # no record in the image itself
    assert line["bytes"] == (out / "fox.png").stat().st_size


def test_an_answer_with_two_images_gets_two_sidecars_sharing_its_price(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """`<id>.json` and `<id>+2.json`, each naming its image; each image's `price_usd` is its
    share of the answer's, so the sidecars add up to what the ledger says was spent."""
    items = [{"id": "pair", "prompt": "p [sim:two_images]"}]
    manifest = write_manifest(items, endpoint=simulator.url)
    assert cli("run", str(manifest), "--no-progress").exit_code == 0
    out = tmp_path / "out"
    first, second = sidecar(out / "pair.json"), sidecar(out / "pair+2.json")
    assert (first["file"], first["index"]) == ("pair.png", 1)
    assert (second["file"], second["index"]) == ("pair+2.png", 2)
    assert first["images_in_answer"] == second["images_in_answer"] == 2
    (line,) = results(out / "ledger.jsonl")
    assert first["price_usd"] + second["price_usd"] == pytest.approx(line["price_usd"])


def test_metadata_none_writes_nothing_but_the_images(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """`metadata: none`: the folder holds the images and the ledger, nothing else."""
    items = [{"id": "a", "prompt": "a"}, {"id": "b", "prompt": "b [sim:two_images]"}]
    manifest = write_manifest(items, endpoint=simulator.url, metadata="none")
    assert cli("run", str(manifest), "--no-progress").exit_code == 0
    names = sorted(path.name for path in (tmp_path / "out").iterdir())
    assert names == ["a.png", "b+2.png", "b.png", "ledger.jsonl"]


def test_embed_writes_the_record_into_the_png_and_changes_nothing_else(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """With `embed`, Pillow reads the sidecar's record back from the PNG's `batchbanana` iTXt
    chunk; without its iTXt chunks the file is byte for byte the one `sidecar` saves."""
    items = [{"id": "fox", "prompt": "a fox"}]
    plain = write_manifest(items, endpoint=simulator.url, output_dir="plain", name="plain.yaml")
    embedded = write_manifest(items, endpoint=simulator.url, metadata="embed", name="embed.yaml")
    assert cli("run", str(plain), "--no-progress").exit_code == 0
    assert cli("run", str(embedded), "--no-progress").exit_code == 0
    out = tmp_path / "out"
    text = png_text(out / "fox.png")
    assert json.loads(text["batchbanana"]) == sidecar(out / "fox.json")
    assert b"<batchbanana:record>" in text["XML:com.adobe.xmp"].encode()
    received = (tmp_path / "plain" / "fox.png").read_bytes()
    assert without_record_chunks((out / "fox.png").read_bytes()) == received
    assert pixels(out / "fox.png") == pixels(received)


def test_embed_into_a_large_streamed_png_and_a_jpeg(
    cli: Cli, write_manifest: Writer, make_simulator: Callable[..., RunningSimulator],
    tmp_path: Path,
) -> None:  # fmt: skip
    """An image streamed to a temporary file (over 256 KB) is copied with its record, not read
    whole; a JPEG answer gets its record as XMP. No temporary file is left."""
    simulator = make_simulator(image_bytes=900_000, seed=1)
    items = [{"id": "big", "prompt": "big"}, {"id": "photo", "prompt": "photo [sim:jpeg]"}]
    manifest = write_manifest(items, endpoint=simulator.url, metadata="embed")
    assert cli("run", str(manifest), "--no-progress").exit_code == 0
    out = tmp_path / "out"
    assert (out / "big.png").stat().st_size > 900_000
    assert json.loads(png_text(out / "big.png")["batchbanana"])["item"] == "big"
    assert pixels(out / "big.png")  # the whole file still decodes
    assert b'"item":"photo"' in xmp_of(out / "photo.jpg")
    assert not list(out.glob(".*.tmp"))


def test_retry_keeps_the_jobs_metadata_setting(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """`retry` rebuilds the job from the ledger: `none` stays none, `embed` stays embed."""
    for mode in ("none", "embed"):
        manifest = write_manifest(
            [{"id": "r", "prompt": f"{mode} [sim:refusex1]"}],
            endpoint=simulator.url, metadata=mode, output_dir=mode, name=f"{mode}.yaml",
        )  # fmt: skip
        assert cli("run", str(manifest), "--no-progress").exit_code == 1
        ledger = tmp_path / mode / "ledger.jsonl"
        assert cli("retry", str(ledger), "--yes", "--no-progress").exit_code == 0
        jobs = [line for line in read_jsonl(ledger) if line["event"] == "job"]
        assert [job["settings"]["metadata"] for job in jobs] == [mode, mode]
        has_sidecar = (tmp_path / mode / "r.json").exists()
        embedded = "batchbanana" in png_text(tmp_path / mode / "r.png")
        assert (has_sidecar, embedded) == (mode == "embed", mode == "embed")


def test_a_default_jobs_line_is_unchanged_and_its_retry_writes_sidecars(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """A job with the default `sidecar` writes its `job` line as before the setting existed, and
    `retry` of such a line (from any version) writes sidecars, as a run of its manifest would."""
    manifest = write_manifest([{"id": "r", "prompt": "old [sim:refusex1]"}], endpoint=simulator.url)
    assert cli("run", str(manifest), "--no-progress").exit_code == 1
    ledger = tmp_path / "out" / "ledger.jsonl"
    (job,) = [line for line in read_jsonl(ledger) if line["event"] == "job"]
    assert "metadata" not in job["settings"]
    assert cli("retry", str(ledger), "--yes", "--no-progress").exit_code == 0
    assert sidecar(tmp_path / "out" / "r.json")["item"] == "r"


def test_a_regenerated_item_replaces_its_own_sidecar(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """A sidecar batchbanana wrote is no foreign file: editing the prompt regenerates the image
    and its sidecar tells the new prompt."""
    for prompt in ("first", "second"):
        manifest = write_manifest([{"id": "x", "prompt": prompt}], endpoint=simulator.url)
        assert cli("run", str(manifest), "--no-progress").exit_code == 0
        assert sidecar(tmp_path / "out" / "x.json")["prompt"] == prompt


def test_the_report_shows_images_not_sidecars(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """The contact sheet of a sidecar job shows each image once and never a `.json` file."""
    items = [{"id": "a", "prompt": "a"}, {"id": "b", "prompt": "b [sim:two_images]"}]
    manifest = write_manifest(items, endpoint=simulator.url, metadata="embed")
    assert cli("run", str(manifest), "--no-progress").exit_code == 0
    page = tmp_path / "report.html"
    ledger = str(tmp_path / "out" / "ledger.jsonl")
    assert cli("report", ledger, "--format", "html", "--output", str(page)).exit_code == 0
    html = page.read_text()
    assert html.count("<img") == 3 and not re.search(r"\.json\b", html)


def test_the_schema_offers_metadata_with_its_choices_and_default(cli: Cli) -> None:
    """`batchbanana schema` lists `metadata` (none, sidecar, embed; default sidecar)."""
    schema = json.loads(cli("schema").stdout)
    field = schema["properties"]["metadata"]
    assert field["enum"] == ["none", "sidecar", "embed"] and field["default"] == "sidecar"


def test_an_unknown_metadata_mode_is_refused_before_anything_is_sent(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator
) -> None:
    """`metadata: xmp` is a validation error naming the choices: exit 2, nothing sent."""
    manifest = write_manifest([{"prompt": "p"}], endpoint=simulator.url, metadata="xmp")
    result = cli("run", str(manifest), "--no-progress")
    assert result.exit_code == 2 and "metadata" in result.stderr and "embed" in result.stderr
    assert simulator.stats()["requests"] == 0


def test_the_example_manifest_embeds_its_records(cli: Cli, tmp_path: Path) -> None:
    """`jobs/metadata.yaml` runs green on the simulator; each image carries its record."""
    shutil.copytree(ROOT / "jobs", tmp_path / "jobs")
    result = cli("run", str(tmp_path / "jobs" / "metadata.yaml"), "--no-progress")
    assert result.exit_code == 0, result.stderr
    out = tmp_path / "out" / "metadata"
    lines = results(out / "ledger.jsonl")
    assert lines and {line["outcome"] for line in lines} == {"ok"}
    for line in lines:
        image = Path(line["output"])
        record = sidecar(image.with_suffix(".json"))
        assert record["item"] == line["item"] and record["file"] == image.name
        if image.suffix == ".png":
            assert json.loads(png_text(image)["batchbanana"]) == record
        else:
            assert json.dumps(line["item"]).encode() in xmp_of(image)


@pytest.mark.parametrize("batch_input", ["inline", "file"])
def test_batch_mode_results_carry_their_making_too(
    cli: Cli, write_manifest: Writer, make_simulator: Callable[..., RunningSimulator],
    tmp_path: Path, batch_input: str,
) -> None:  # fmt: skip
    """Images collected from a batch (inline results, or a downloaded responses file) get the
    same sidecars, at the batch price, and with `embed` the same record inside."""
    simulator = make_simulator(
        price_book="google", batch_pending_s=0.05, batch_running_s=0.05, image_bytes=400_000
    )  # images past 256 KB are decoded to temporary files, and embedded by copying those
    items = [
        {"id": "a", "prompt": "a"},
        {"id": "b", "prompt": "b [sim:two_images]"},
        {"id": "c", "prompt": "c [sim:jpeg]"},
    ]
    manifest = write_manifest(
        items, endpoint=simulator.url, auth="google", mode="batch", price_book="google",
        batch={"poll_s": 0.05, "max_poll_s": 0.2, "input": batch_input}, metadata="embed",
    )  # fmt: skip
    result = cli("run", str(manifest), "--no-progress")
    assert result.exit_code == 0, result.stderr
    out = tmp_path / "out"
    lines = {line["item"]: line for line in results(out / "ledger.jsonl")}
    assert {line["mode"] for line in lines.values()} == {"batch"}
    record = sidecar(out / "a.json")
    assert (record["item"], record["price_usd"]) == ("a", lines["a"]["price_usd"])
    assert record["response_id"] == lines["a"].get("response_id")
    assert json.loads(png_text(out / "a.png")["batchbanana"]) == record
    assert (out / "a.png").stat().st_size > 400_000 and pixels(out / "a.png")
    assert sidecar(out / "b+2.json")["file"] == "b+2.png"
    assert b'"item":"c"' in xmp_of(out / "c.jpg")
    assert not list(out.glob(".*.tmp"))


def test_a_seeded_matrix_item_records_its_seed_and_combination_fields(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """Each variation's sidecar holds the seed it was sent with (seed + k - 1 for `repeat`), and
    a matrix combination's record names its own model and size."""
    items = [{"id": "fox", "prompt": "a fox", "seed": 40, "repeat": 2}]
    matrix = {"image_size": ["1K", "2K"]}
    manifest = write_manifest(items, endpoint=simulator.url, matrix=matrix)
    assert cli("run", str(manifest), "--no-progress").exit_code == 0, "run failed"
    out = tmp_path / "out"
    records = [sidecar(path) for path in sorted(out.glob("*.json"))]
    assert sorted((r["image_size"], r["seed"]) for r in records) == [
        ("1K", 40), ("1K", 41), ("2K", 40), ("2K", 41)
    ]
    lines = {line["item"]: line for line in results(out / "ledger.jsonl")}
    assert all(r["seed"] == lines[r["item"]]["spec"]["seed"] for r in records)


def test_an_edit_records_the_base_image_it_was_sent_with(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """An edit chain's edit names its input by the base's file and the sha256 of the base image
    as saved (with `embed`, the base's record is part of those bytes) and by the base's id."""
    items = [
        {"id": "base", "prompt": "a sneaker"},
        {"id": "edit", "prompt": "make it red", "images": ["item:base"]},
    ]
    manifest = write_manifest(items, endpoint=simulator.url, metadata="embed")
    assert cli("run", str(manifest), "--no-progress").exit_code == 0, "run failed"
    out = tmp_path / "out"
    (used,) = sidecar(out / "edit.json")["inputs"]
    digest = hashlib.sha256((out / "base.png").read_bytes()).hexdigest()
    assert used == {"file": "base.png", "sha256": digest, "mime_type": "image/png", "item": "base"}


def test_a_grounded_image_records_what_was_searched_and_cited(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """A grounded item's record names its grounding and thinking level and carries the searches
    and sources of its result line (to credit wherever the image goes); an ungrounded one has
    neither key."""
    items = [
        {"id": "card", "prompt": "this week's weather", "grounding": "web+image",
         "thinking_level": "high"},
        {"id": "plain", "prompt": "a fox"},
    ]  # fmt: skip
    manifest = write_manifest(
        items, endpoint=simulator.url, model="gemini-3.1-flash-image-preview", metadata="embed"
    )
    assert cli("run", str(manifest), "--no-progress").exit_code == 0, "run failed"
    out = tmp_path / "out"
    lines = {line["item"]: line for line in results(out / "ledger.jsonl")}
    card = sidecar(out / "card.json")
    assert (card["grounding"], card["thinking_level"]) == ("web+image", "high")
    assert card["grounding_metadata"] == lines["card"]["grounding"]
    assert card["grounding_metadata"]["sources"]
    assert json.loads(png_text(out / "card.png")["batchbanana"]) == card
    plain = sidecar(out / "plain.json")
    assert not {"grounding", "thinking_level", "grounding_metadata"} & set(plain)
