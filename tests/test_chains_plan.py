"""Edit chains before anything is sent: `item:<id>` references checked at file:line (unknown ids,
cycles, a repeated item named without its variation), `plan` showing the chains, and the
fingerprints that make a regenerated base's edits new work."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from batchbanana.plan.build import load_job
from batchbanana.plan.chains import bases, chain_fingerprint, chain_order, resolve
from batchbanana.plan.inputs import inspect_file
from batchbanana.simulator import RunningSimulator
from tests.conftest import CliResult, png_bytes

Cli = Callable[..., CliResult]
Writer = Callable[..., Path]


def test_an_unknown_id_and_a_cycle_are_reported_together_and_nothing_is_sent(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """An unknown id, a cycle and a self-reference each get a file:line problem naming the item
    and the reference, all in one pass; exit 2 and not a single request."""
    manifest = write_manifest(
        [
            {"id": "a", "prompt": "a", "images": ["item:b"]},
            {"id": "b", "prompt": "b", "images": ["item:a"]},
            {"id": "c", "prompt": "c", "images": ["item:c"]},
            {"id": "d", "prompt": "d", "images": ["item:nowhere"]},
            {"id": "e", "prompt": "e", "images": ["item:bb"]},
        ],
        endpoint=simulator.url,
    )
    result = cli("run", str(manifest), "--no-progress")
    assert result.exit_code == 2
    problems = [line for line in result.stderr.splitlines() if line.startswith(str(manifest))]
    assert len(problems) == 4, result.stderr
    cycle, itself, unknown, close = problems
    assert ":13: item 'b': images[0]: item:a: a cycle: b -> a -> b" in cycle
    assert ":17: item 'c': images[0]: item:c: an item cannot use its own output" in itself
    assert ":21: item 'd': images[0]: item:nowhere: no item of this job has the id" in unknown
    assert "did you mean item:b?" in close
    assert "nothing was sent" in result.stderr
    assert simulator.bill()["requests"] == 0
    assert not (tmp_path / "out" / "ledger.jsonl").exists()


def test_a_longer_cycle_is_found_once(cli: Cli, write_manifest: Writer) -> None:
    """A cycle through three items is one problem, told from the item holding the reference
    that closes it."""
    manifest = write_manifest(
        [
            {"id": "x", "prompt": "x", "images": ["item:z"]},
            {"id": "y", "prompt": "y", "images": ["item:x"]},
            {"id": "z", "prompt": "z", "images": ["item:y"]},
        ],
        endpoint="simulate",
    )
    result = cli("plan", str(manifest))
    assert result.exit_code == 2
    assert result.stderr.count("a cycle") == 1, result.stderr
    assert "item 'y': images[0]: item:x: a cycle: y -> x -> z -> y" in result.stderr


def test_a_repeated_item_is_named_by_its_variation(cli: Cli, write_manifest: Writer) -> None:
    """`item:shot` for an item with `repeat` is an error whose hint names a variation id;
    `item:shot-2` is a valid reference."""
    items = [
        {"id": "shot", "prompt": "a shot", "repeat": 3},
        {"id": "bad", "prompt": "edit it", "images": ["item:shot"]},
        {"id": "good", "prompt": "edit it", "images": ["item:shot-2"]},
    ]
    result = cli("plan", str(write_manifest(items, endpoint="simulate")))
    assert result.exit_code == 2
    assert "item 'bad': images[0]: item:shot: no item of this job has the id 'shot'" in (
        result.stderr
    )
    assert "HINT: an item with `repeat` has one id per variation" in result.stderr
    assert "item:shot-1" in result.stderr
    assert "'good'" not in result.stderr


def test_a_reference_must_be_a_plain_string_with_a_valid_id(
    cli: Cli, write_manifest: Writer
) -> None:
    """`{path: item:x}` and `item:` with an id that cannot be one are refused with a hint."""
    items = [
        {"id": "x", "prompt": "x"},
        {"id": "y", "prompt": "y", "images": [{"path": "item:x"}, "item:not an id"]},
    ]
    result = cli("plan", str(write_manifest(items, endpoint="simulate")))
    assert result.exit_code == 2
    assert "images[0]: write another item's output as a plain string: images: [item:x]" in (
        result.stderr
    )
    assert "images[1]: 'item:not an id': 'not an id' is not an item id; HINT" in result.stderr


def test_an_items_file_row_may_use_an_item_and_its_mistakes_name_the_row(
    cli: Cli, write_manifest: Writer, tmp_path: Path
) -> None:
    """items_file image cells take `item:<id>` too; a bad one is reported at the file's line."""
    (tmp_path / "rows.csv").write_text(
        "id,prompt,images\nrow-a,edit the base,item:base\nrow-b,edit it,item:missing\n"
    )
    manifest = write_manifest(
        [{"id": "base", "prompt": "a base"}], endpoint="simulate", items_file="rows.csv"
    )
    result = cli("plan", str(manifest))
    assert result.exit_code == 2
    assert "rows.csv:3: item 'row-b': images[0]: item:missing: no item of this job" in (
        result.stderr
    )
    assert "row-a" not in result.stderr


def test_plan_shows_how_many_items_wait_on_others(cli: Cli, write_manifest: Writer) -> None:
    """`plan` counts the items that use another's output and the items they use."""
    items = [
        {"id": "base", "prompt": "a base"},
        {"id": "edit", "prompt": "edit", "images": ["item:base"]},
        {"id": "edit2", "prompt": "edit again", "images": ["item:edit"]},
        {"id": "branch", "prompt": "another edit", "images": ["item:base"]},
    ]
    result = cli("plan", str(write_manifest(items, endpoint="simulate")))
    assert result.exit_code == 0, result.stderr
    assert "chains: 3 item(s) use the output of 2 other item(s)" in result.stdout
    assert "4 item(s)" in result.stdout


def test_the_chain_order_puts_every_base_first(write_manifest: Writer) -> None:
    """Items listed before the items they use are ordered after them; the rest keep their order."""
    job = load_job(
        write_manifest(
            [
                {"id": "edit2", "prompt": "e2", "images": ["item:edit"]},
                {"id": "edit", "prompt": "e", "images": ["item:base"]},
                {"id": "lone", "prompt": "l"},
                {"id": "base", "prompt": "b"},
            ],
            endpoint="simulate",
        )
    )
    assert [item.id for item in chain_order(job.items)] == ["base", "edit", "edit2", "lone"]
    assert [bases(item) for item in job.items] == [("edit",), ("base",), (), ()]


def test_the_real_fingerprint_holds_the_used_output_bytes(
    write_manifest: Writer, tmp_path: Path
) -> None:
    """A dependent's pending fingerprint depends on its meaning only; once resolved, its
    fingerprint changes with the base output's bytes and with nothing else, and the request
    takes the output file, sniffed and digested like any local image."""
    manifest = write_manifest(
        [
            {"id": "base", "prompt": "b"},
            {"id": "edit", "prompt": "e", "images": ["item:base", "ref.png"]},
        ],
        endpoint="simulate",
    )
    (tmp_path / "ref.png").write_bytes(png_bytes(4, 4))
    edit = load_job(manifest).items[1]
    assert edit.fingerprint == load_job(manifest).items[1].fingerprint
    assert edit.spec()["images"][0] == {"item": "base", "pending": True}
    output = tmp_path / "base.png"
    output.write_bytes(png_bytes(8, 8))
    first = resolve(edit, {"base": str(output)}.get)
    assert first.images[0].kind == "file"
    assert first.images[0].sha256 == inspect_file(output).sha256
    assert first.spec()["images"][0]["item"] == "base"
    assert first.fingerprint == chain_fingerprint(edit.fingerprint, [first.images[0]])
    assert resolve(edit, {"base": str(output)}.get).fingerprint == first.fingerprint
    output.write_bytes(png_bytes(9, 8))
    assert resolve(edit, {"base": str(output)}.get).fingerprint != first.fingerprint
    assert first.fingerprint != edit.fingerprint
