"""The morning report's contact sheet, end to end: a job with a matrix, an edit chain with a
branch and a refused item runs on the simulator; the HTML groups the matrix's variants side by
side, shows the chain in sequence, and filters by outcome without scripts. Where headless
Chromium is installed, the page is also rendered and the screenshot checked."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import run_subprocess

JOB = """
version: 1
job: morning
endpoint: simulate
model: gemini-3.1-flash-image-preview
output_dir: out
items:
  - id: fox
    prompt: "a fox in a raincoat"
    matrix: {model: [gemini-3.1-flash-image-preview, gemini-3-pro-image-preview],
             aspect_ratio: ["1:1", "16:9"]}
  - {id: base, prompt: "a white canvas sneaker", aspect_ratio: "1:1"}
  - {id: red, prompt: "make it red", images: ["item:base"]}
  - {id: beach, prompt: "on a beach", images: ["item:red"]}
  - {id: otter, prompt: "an otter sniffing it", images: ["item:base"], aspect_ratio: "3:2"}
  - {id: nope, prompt: "refuse this [sim:refuse]"}
"""


@pytest.fixture
def page(tmp_path: Path) -> tuple[str, Path]:
    manifest = tmp_path / "job.yaml"
    manifest.write_text(JOB)
    done = run_subprocess("run", str(manifest), "--no-progress")
    assert done.returncode == 1, done.stderr  # the refused item
    output = tmp_path / "report.html"
    made = run_subprocess(
        "report", str(tmp_path / "out" / "ledger.jsonl"), "--format", "html", "--output",
        str(output),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    return output.read_text(), output


def test_a_matrix_is_one_row_of_its_variants_and_a_chain_a_sequence(page: tuple[str, Path]) -> None:
    html, _ = page
    rows = re.findall(r'<div class=row><b>(.*?)</b>(.*?)</div>(?=<div class=row>|<details|</div>)',
                      html, re.S)  # fmt: skip
    titles = [title for title, _ in rows]
    assert "matrix fox" in titles
    matrix_row = dict(rows)["matrix fox"]
    assert matrix_row.count("<figure") == 4
    assert "model=gemini-3-pro-image-preview, aspect_ratio=16:9" in matrix_row
    assert "chain base → red → beach" in titles and "chain base → otter" in titles
    chain = dict(rows)["chain base → red → beach"]
    assert chain.index('alt="base"') < chain.index('alt="red"') < chain.index('alt="beach"')
    assert chain.count("class=arrow") == 2


def test_the_outcome_filter_needs_no_script(page: tuple[str, Path]) -> None:
    html, _ = page
    assert "<script" not in html
    assert 'id="o-ok"' in html and 'id="o-refused"' in html
    assert '#o-refused:checked~.cards figure:not([data-o="refused"]){display:none}' in html
    assert html.count('<figure data-o="refused"') == 1
    assert html.count('<figure data-o="ok"') == 9  # the base heads both of its chains


@pytest.mark.skipif(shutil.which("chromium") is None, reason="headless Chromium not installed")
def test_the_page_renders_in_a_real_browser(page: tuple[str, Path], tmp_path: Path) -> None:
    _, path = page
    shot = tmp_path / "shot.png"
    subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,2000",
         f"--screenshot={shot}", path.as_uri()],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    from PIL import Image

    with Image.open(shot) as image:
        assert image.size == (1280, 2000)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50  # text, tables, thumbnails: not a blank page
