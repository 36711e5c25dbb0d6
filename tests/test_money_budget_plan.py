"""Spending is predictable: plan's estimate is exact, and the budget is never exceeded."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest

from batchbanana.simulator import RunningSimulator
from tests.conftest import FAKE_KEY, CliResult, results

Cli = Callable[..., CliResult]
Writer = Callable[..., Path]


@pytest.mark.parametrize("concurrency", [1, 16])
def test_budget_is_never_exceeded_at_any_concurrency(
    cli: Cli,
    write_manifest: Writer,
    simulator: RunningSimulator,
    tmp_path: Path,
    concurrency: int,
) -> None:
    """40 items at $0.09 with a $1.00 cap: at most $1.00 is billed, the rest is over_budget."""
    items = [{"id": f"b{n}", "prompt": f"slowish {n} [sim:slow:0.05]"} for n in range(40)]
    manifest = write_manifest(
        items, endpoint=simulator.url, budget_usd=1.0, concurrency=concurrency
    )
    result = cli("run", str(manifest), "--no-progress")
    assert result.exit_code == 1
    lines = results(tmp_path / "out" / "ledger.jsonl")
    spent = sum(line["price_usd"] for line in lines if line["billed"] == "yes")
    assert spent <= 1.0 + 1e-9
    assert simulator.bill()["billed_usd"] <= 1.0 + 1e-9
    assert simulator.bill()["billed_requests"] == 11  # floor(1.00 / 0.09)
    over = [line for line in lines if line["outcome"] == "over_budget"]
    assert len(over) == 29 and all(line["billed"] == "no" for line in over)
    assert "budget" in result.stderr


def test_budget_counts_what_earlier_runs_spent(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """The cap covers the whole ledger: a second run with more items spends only what is left."""
    manifest = write_manifest(
        [{"id": f"a{n}", "prompt": f"a{n}"} for n in range(5)],
        endpoint=simulator.url,
        budget_usd=0.5,
    )
    assert cli("run", str(manifest), "--no-progress").exit_code == 0  # $0.45
    write_manifest(
        [{"id": f"a{n}", "prompt": f"a{n}"} for n in range(10)],
        endpoint=simulator.url,
        budget_usd=0.5,
    )
    assert cli("run", str(manifest), "--no-progress").exit_code == 1
    assert simulator.bill()["billed_requests"] == 5
    assert cli("run", str(manifest), "--no-progress", "--budget", "0.9").exit_code == 0
    assert simulator.bill()["billed_requests"] == 10


@pytest.mark.parametrize(
    ("book", "model", "size", "price"),
    [
        pytest.param("apiyi", "gemini-3-pro-image-preview", "4K", 0.09, id="apiyi-pro"),
        pytest.param("apiyi", "gemini-3.1-flash-image-preview", "512", 0.055, id="apiyi-flash"),
        pytest.param("apiyi", "gemini-2.5-flash-image", "1K", 0.02, id="apiyi-2.5"),
        pytest.param("google", "gemini-3-pro-image-preview", "2K", 0.134, id="google-pro-2K"),
        pytest.param("google", "gemini-3-pro-image-preview", "4K", 0.24, id="google-pro-4K"),
        pytest.param("google", "gemini-3.1-flash-image", "512", 0.045, id="google-flash-512"),
        pytest.param("google", "gemini-3.1-flash-image", "1K", 0.067, id="google-flash-1K"),
        pytest.param("google", "gemini-3.1-flash-image", "2K", 0.101, id="google-flash-2K"),
        pytest.param("google", "gemini-3.1-flash-image", "4K", 0.151, id="google-flash-4K"),
        pytest.param("google", "gemini-2.5-flash-image", "1K", 0.039, id="google-2.5"),
    ],
)
def test_plan_gives_the_exact_total_and_sends_nothing(
    cli: Cli,
    write_manifest: Writer,
    simulator: RunningSimulator,
    book: str,
    model: str,
    size: str,
    price: float,
) -> None:
    """plan prints count x price for each model and size, and sends no request."""
    manifest = write_manifest(
        [{"prompt": f"p{n}"} for n in range(7)],
        endpoint=simulator.url,
        model=model,
        image_size=size,
        price_book=book,
    )
    result = cli("plan", str(manifest))
    assert result.exit_code == 0
    assert f"${price:.4f}" in result.stdout
    assert f"${7 * price:.4f}" in result.stdout
    assert simulator.stats()["requests"] == 0
    assert result.stderr == ""


def test_plan_reports_invalid_manifests_like_run(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator
) -> None:
    """plan exits 2 with the same one-line errors as run."""
    manifest = write_manifest([{"prompt": "p", "image_size": "2K"}], model="gemini-2.5-flash-image")
    result = cli("plan", str(manifest))
    assert result.exit_code == 2 and "1K only" in result.stderr and result.stdout == ""


def pillow_image(fmt: str) -> bytes:
    """A small real image in the given Pillow format."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (40, 20), (200, 30, 60)).save(out, format=fmt)
    return out.getvalue()


@pytest.mark.parametrize(
    ("fmt", "name"), [("JPEG", "ref.jpg"), ("WEBP", "ref.webp"), ("PNG", "ref.png")]
)
def test_real_jpeg_webp_and_png_inputs_are_inlined_and_accepted(
    cli: Cli,
    write_manifest: Writer,
    simulator: RunningSimulator,
    tmp_path: Path,
    fmt: str,
    name: str,
) -> None:
    """Real JPEG, WebP and PNG files are sent inline with their sniffed type; the simulator
    decodes and checks them and accepts the request."""
    (tmp_path / name).write_bytes(pillow_image(fmt))
    manifest = write_manifest(
        [{"id": "r", "prompt": "edit", "images": [name]}], endpoint=simulator.url
    )
    result = cli("run", str(manifest), "--no-progress")
    assert result.exit_code == 0, result.stderr
    spec = results(tmp_path / "out" / "ledger.jsonl")[0]["spec"]
    assert (
        spec["images"][0]["mime_type"]
        == {"JPEG": "image/jpeg", "WEBP": "image/webp", "PNG": "image/png"}[fmt]
    )


def test_key_is_in_no_report_and_no_help(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """Reports in every format and every --help text are free of the key."""
    manifest = write_manifest(
        [{"id": "e", "prompt": "p [sim:echo_key_403]"}, {"id": "o", "prompt": "q"}],
        endpoint=simulator.url,
    )
    cli("run", str(manifest), "--no-progress")
    ledger = str(tmp_path / "out" / "ledger.jsonl")
    outputs = [cli("report", ledger, "--format", fmt).stdout for fmt in ("table", "json", "csv")]
    cli("report", ledger, "--format", "html", "--output", str(tmp_path / "r.html"))
    outputs.append((tmp_path / "r.html").read_text())
    for command in ([], ["run"], ["plan"], ["retry"], ["report"], ["simulate"], ["schema"]):
        outputs.append(cli(*command, "--help").stdout)
    assert all(FAKE_KEY not in text for text in outputs)


def test_a_symlinked_output_folder_keeps_everything_inside_it(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """With output_dir a symlink to another folder, images land in that folder and nowhere else."""
    target = tmp_path / "real-out"
    target.mkdir()
    (tmp_path / "out").symlink_to(target)
    manifest = write_manifest([{"id": "s", "prompt": "p"}], endpoint=simulator.url)
    assert cli("run", str(manifest), "--no-progress").exit_code == 0
    assert (target / "s.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.yaml", "out", "real-out"]


def test_google_book_prices_each_output_image_and_the_ledger_matches_the_bill(
    cli: Cli,
    write_manifest: Writer,
    make_simulator: Callable[..., RunningSimulator],
    tmp_path: Path,
) -> None:
    """Google's list prices are per output image: an answer with two images costs two, a refusal
    (billed, no image) one; the ledger's spent equals the provider's bill."""
    sim = make_simulator(price_book="google", seed=1)
    manifest = write_manifest(
        [
            {"id": "one", "prompt": "a"},
            {"id": "two", "prompt": "b [sim:two_images]"},
            {"id": "nope", "prompt": "c [sim:refuse]"},
        ],
        endpoint=sim.url,
        model="gemini-3.1-flash-image-preview",
        image_size="1K",
        price_book="google",
    )
    cli("run", str(manifest), "--no-progress")
    prices = {r["item"]: r["price_usd"] for r in results(tmp_path / "out" / "ledger.jsonl")}
    assert prices == {"one": 0.067, "two": 0.134, "nope": 0.067}
    assert sim.bill()["billed_usd"] == pytest.approx(sum(prices.values()), abs=1e-9)
