"""An items_file not saved as UTF-8 (a CSV from Excel in a Chinese locale is GBK) is one readable
line naming the file, line and byte, exit 2 and nothing sent; `items_file_encoding` reads it as it
is, and the prompt sent and recorded is the right text."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from batchbanana.errors import UserError
from batchbanana.plan.build import load_job
from batchbanana.simulator import RunningSimulator
from tests.conftest import CliResult, read_jsonl

Cli = Callable[..., CliResult]
Writer = Callable[..., Path]

OTTER = "你好，水獭在河里游泳"  # in GBK its first byte, 0xc4, cannot start a UTF-8 character
PROMPTS = {"fox": "a red fox", "otter": OTTER}
SUFFIXES = [pytest.param(".csv", id="csv"), pytest.param(".jsonl", id="jsonl")]


def _items_text(suffix: str, prompts: dict[str, str]) -> str:
    """The items as a CSV (with its header) or JSONL file's text."""
    if suffix == ".csv":
        return "id,prompt\n" + "".join(f"{key},{value}\n" for key, value in prompts.items())
    return "".join(
        json.dumps({"id": key, "prompt": value}, ensure_ascii=False) + "\n"
        for key, value in prompts.items()
    )


def _write_items(
    tmp_path: Path, suffix: str, encoding: str, prompts: dict[str, str] = PROMPTS
) -> str:
    """Write data/prompts<suffix> in `encoding`; returns its path as the manifest names it."""
    (tmp_path / "data").mkdir(exist_ok=True)
    text = _items_text(suffix, prompts)
    (tmp_path / "data" / f"prompts{suffix}").write_bytes(text.encode(encoding))
    return f"data/prompts{suffix}"


def _place_of(suffix: str, text: str) -> tuple[int, int]:
    """(line, column), 1-based, where `text` first appears in the items file."""
    for number, line in enumerate(_items_text(suffix, PROMPTS).splitlines(), start=1):
        if text in line:
            return number, line.index(text) + 1
    raise AssertionError(f"{text!r} is not in the items file")


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("command", ["plan", "run"])
def test_gbk_items_file_is_one_line_exit_2_and_nothing_sent(
    cli: Cli,
    write_manifest: Writer,
    simulator: RunningSimulator,
    tmp_path: Path,
    suffix: str,
    command: str,
) -> None:
    """A GBK items file read as UTF-8 is one line naming file, line, byte and column, with the
    hint to save it as UTF-8 or set items_file_encoding; exit 2, no request, no ledger."""
    items_file = _write_items(tmp_path, suffix, "gbk")
    manifest = write_manifest(endpoint=simulator.url, items_file=items_file)
    result = cli(command, str(manifest), *(["--no-progress"] if command == "run" else []))
    assert result.exit_code == 2
    line, column = _place_of(suffix, OTTER)
    assert result.stderr.splitlines() == [
        f"{items_file}:{line}: not UTF-8 (byte 0xc4 at column {column}); HINT: save it as"
        " UTF-8, or name the encoding it was saved in, e.g. items_file_encoding: gb18030"
        " (Chinese Excel), shift_jis or cp1252"
    ]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert simulator.stats()["requests"] == 0
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_items_file_encoding_gb18030_sends_and_records_the_chinese_prompt(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path, suffix: str
) -> None:
    """With `items_file_encoding: gb18030` the GBK file plans and runs, and the prompt the
    simulator receives and the ledger records is the Chinese text."""
    items_file = _write_items(tmp_path, suffix, "gbk")
    manifest = write_manifest(
        endpoint=simulator.url, items_file=items_file, items_file_encoding="gb18030"
    )
    planned = cli("plan", str(manifest))
    assert planned.exit_code == 0, planned.stderr
    assert "2 item(s)" in planned.stdout
    result = cli("run", str(manifest), "--no-progress")
    assert result.exit_code == 0, result.stderr
    assert simulator.stats()["by_prompt"] == {"a red fox": 1, OTTER: 1}
    ledger = read_jsonl(tmp_path / "out" / "ledger.jsonl")
    recorded = {
        record["item"]: record["spec"]["prompt"]
        for record in ledger
        if record["event"] in ("sent", "result")
    }
    assert recorded == PROMPTS
    assert [record["outcome"] for record in ledger if record["event"] == "result"] == ["ok"] * 2


@pytest.mark.parametrize(
    ("encoding", "prompt"),
    [
        pytest.param("gbk", OTTER, id="gbk"),
        pytest.param("shift_jis", "川で泳ぐカワウソ", id="shift_jis"),
        pytest.param("cp1252", "une loutre à l'été", id="cp1252"),
        pytest.param("UTF-8", OTTER, id="utf-8-spelt-otherwise"),
    ],
)
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_items_file_is_read_in_the_encoding_named(
    write_manifest: Writer, tmp_path: Path, suffix: str, encoding: str, prompt: str
) -> None:
    """Any text encoding Python knows may be named, in any spelling of its name."""
    items_file = _write_items(tmp_path, suffix, encoding, {"otter": prompt})
    manifest = write_manifest(items_file=items_file, items_file_encoding=encoding)
    assert [item.prompt for item in load_job(manifest).items] == [prompt]


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_utf8_byte_order_mark_is_read_as_plain_utf8(
    write_manifest: Writer, tmp_path: Path, suffix: str
) -> None:
    """A UTF-8 file that starts with a byte-order mark (Excel's "CSV UTF-8") reads as UTF-8."""
    items_file = _write_items(tmp_path, suffix, "utf-8-sig")
    manifest = write_manifest(items_file=items_file)
    assert [item.prompt for item in load_job(manifest).items] == list(PROMPTS.values())


def test_a_file_not_in_the_encoding_named_says_so(write_manifest: Writer, tmp_path: Path) -> None:
    """A file that does not decode in the encoding the manifest names is one line naming that
    encoding, with the hint to check the setting."""
    items_file = _write_items(tmp_path, ".csv", "utf-8", {"otter": "une loutre à l'été"})
    manifest = write_manifest(items_file=items_file, items_file_encoding="ascii")
    with pytest.raises(UserError) as caught:
        load_job(manifest)
    assert caught.value.problems == [
        f"{items_file}:2: not ascii (byte 0xc3 at column 18); HINT: is ascii the encoding it was"
        " saved in? check items_file_encoding, or save the file as UTF-8 and remove the setting"
    ]


@pytest.mark.parametrize("name", ["gbk2", "base64", "undefined", ""])
def test_unknown_encoding_is_a_manifest_error_at_its_line(tmp_path: Path, name: str) -> None:
    """A name that is not a text encoding is a problem at its manifest line, with a hint."""
    path = tmp_path / "job.yaml"
    path.write_text(
        f"version: 1\nitems:\n  - prompt: a fox\nitems_file_encoding: {json.dumps(name)}\n",
        encoding="utf-8",
    )
    with pytest.raises(UserError) as caught:
        load_job(path)
    [problem] = caught.value.problems
    assert problem.startswith(f"{path}:4: items_file_encoding: {name!r} is not a text encoding")
    assert re.search(r"HINT: .*gb18030", problem)


def test_schema_offers_items_file_encoding_with_its_default(cli: Cli) -> None:
    """`batchbanana schema` lists the setting, so an editor completes it."""
    result = cli("schema")
    assert result.exit_code == 0
    setting = json.loads(result.stdout)["properties"]["items_file_encoding"]
    assert (setting["type"], setting["default"]) == ("string", "utf-8")
