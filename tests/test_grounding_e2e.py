"""Grounding and thinking level end to end, through the CLI against the simulator (contract section
13): the request carries the search tool and the thinking level, the result line the queries and
sources at a bounded size, in sync and batch mode and again after `retry`; a grounding the model
lacks stops the run before anything is sent."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from batchbanana.rules.grounding import MAX_QUERIES, MAX_SOURCES, MAX_TEXT
from batchbanana.simulator import RunningSimulator
from tests.conftest import CliResult, RecordingServer, results
from tests.relay import Relay

Cli = Callable[..., CliResult]
Writer = Callable[..., Path]
JOBS = Path(__file__).resolve().parent.parent / "jobs"
PRO = "gemini-3-pro-image-preview"
FLASH = "gemini-3.1-flash-image-preview"


def _by_item(ledger: Path) -> dict[str, dict[str, Any]]:
    """The latest result line of each item."""
    return {line["item"]: line for line in results(ledger)}


def test_a_grounded_item_sends_the_search_tool_and_records_its_sources(
    cli: Cli,
    write_manifest: Writer,
    simulator: RunningSimulator,
    recording_server: RecordingServer,
    tmp_path: Path,
) -> None:
    """web+image and a thinking level reach the request as google-genai shapes them; the result
    line carries the queries and each source's title and link; an ungrounded item's request and
    line are as they always were."""
    relay = Relay(recording_server, simulator)
    items = [
        {"id": "weather", "prompt": "today's weather in Paris as an infographic",
         "grounding": "web+image", "thinking_level": "high"},
        {"id": "everest", "prompt": "Everest's height, as a chart", "model": PRO,
         "grounding": "web"},
        {"id": "plain", "prompt": "a fox"},
    ]  # fmt: skip
    manifest = write_manifest(items, model=FLASH, endpoint=recording_server.url)
    result = cli("run", str(manifest), "--no-progress")
    assert result.exit_code == 0, result.stderr
    bodies = {body["contents"][0]["parts"][-1]["text"]: body for body in relay.bodies}
    weather = bodies["today's weather in Paris as an infographic"]
    assert weather["tools"] == [
        {"googleSearch": {"searchTypes": {"webSearch": {}, "imageSearch": {}}}}
    ]
    assert weather["generationConfig"]["thinkingConfig"] == {"thinkingLevel": "HIGH"}
    assert bodies["Everest's height, as a chart"]["tools"] == [{"googleSearch": {}}]
    assert "tools" not in bodies["a fox"]
    assert "thinkingConfig" not in bodies["a fox"]["generationConfig"]

    lines = _by_item(tmp_path / "out" / "ledger.jsonl")
    grounding = lines["weather"]["grounding"]
    assert lines["weather"]["outcome"] == "ok"
    assert grounding["queries"][0] == "today's weather in Paris as an infographic"
    assert grounding["image_queries"] == ["today's weather in Paris as an infographic photo"]
    assert [source["title"] for source in grounding["sources"]] == [
        "example.com",
        "example.org",
        "today's weather in Paris as an infographic - example gallery",
    ]
    assert all(source["uri"].startswith("https://") for source in grounding["sources"])
    assert grounding["sources"][2]["image_uri"].startswith("https://images.example.net/i/")
    assert lines["weather"]["spec"]["grounding"] == "web+image"
    assert lines["weather"]["spec"]["thinking_level"] == "high"
    assert lines["weather"]["usage"]["thoughtsTokenCount"] > 0
    assert "image_queries" not in lines["everest"]["grounding"]
    assert len(lines["everest"]["grounding"]["sources"]) == 2
    assert "grounding" not in lines["plain"] and "grounding" not in lines["plain"]["spec"]


def test_web_image_on_a_model_without_image_search_sends_nothing(
    cli: Cli, write_manifest: Writer, recording_server: RecordingServer
) -> None:
    """Nano Banana Pro has no image search: exit 2 at the item's line, not a byte sent."""
    items = [
        {"id": "ok-one", "prompt": "a fox", "grounding": "web"},
        {"id": "pro-images", "prompt": "a butterfly", "grounding": "web+image"},
    ]
    manifest = write_manifest(items, model=PRO, endpoint=recording_server.url)
    result = cli("run", str(manifest), "--no-progress")
    assert result.exit_code == 2
    line = manifest.read_text().splitlines().index("- id: pro-images") + 1
    assert result.stderr.startswith(
        f"{manifest}:{line}: item 'pro-images': grounding: web+image is not offered by {PRO}"
    )
    assert "HINT:" in result.stderr and "Traceback" not in result.stderr
    assert recording_server.seen == []


def test_a_flood_of_grounding_is_kept_to_a_bounded_size(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """Forty queries and forty-two sources (one not a link, one too long) come back: the line
    keeps the first few, cut, counts the rest and never keeps a link that is not http(s)."""
    items = [{"id": "flood", "prompt": "many [sim:many_sources]", "grounding": "web"}]
    result = cli("run", str(write_manifest(items, endpoint=simulator.url)), "--no-progress")
    assert result.exit_code == 0, result.stderr
    grounding = _by_item(tmp_path / "out" / "ledger.jsonl")["flood"]["grounding"]
    assert len(grounding["queries"]) == MAX_QUERIES and grounding["more_queries"] == 32
    assert len(grounding["sources"]) == MAX_SOURCES
    assert grounding["more_sources"] == 2 + 40 - (MAX_SOURCES - 2)
    assert all(len(text) <= MAX_TEXT for text in grounding["queries"])
    assert all(len(source["title"]) <= MAX_TEXT for source in grounding["sources"])
    assert not any("javascript" in source["uri"] for source in grounding["sources"])
    line = (tmp_path / "out" / "ledger.jsonl").read_text().splitlines()[-1]
    assert len(line) < 10_000


def test_retry_sends_the_grounding_and_thinking_level_again(
    cli: Cli,
    write_manifest: Writer,
    simulator: RunningSimulator,
    recording_server: RecordingServer,
    tmp_path: Path,
) -> None:
    """A grounded item that failed is rebuilt from the ledger's spec with its tool and level."""
    relay = Relay(recording_server, simulator)
    items = [{"id": "chart", "prompt": "a chart [sim:500x1]", "grounding": "web",
              "thinking_level": "minimal"}]  # fmt: skip
    manifest = write_manifest(items, model=FLASH, endpoint=recording_server.url)
    assert cli("run", str(manifest), "--no-progress").exit_code == 1
    retried = cli("retry", str(tmp_path / "out" / "ledger.jsonl"), "--yes", "--no-progress")
    assert retried.exit_code == 0, retried.stderr
    assert len(relay.bodies) == 2 and relay.bodies[0] == relay.bodies[1]
    assert relay.bodies[1]["tools"] == [{"googleSearch": {}}]
    assert relay.bodies[1]["generationConfig"]["thinkingConfig"] == {"thinkingLevel": "MINIMAL"}
    first, second = results(tmp_path / "out" / "ledger.jsonl")
    assert first["outcome"] == "server_error" and second["outcome"] == "ok"
    assert first["fingerprint"] == second["fingerprint"]
    assert second["grounding"]["sources"]


def test_batch_mode_records_the_grounding_of_each_response(
    cli: Cli,
    write_manifest: Writer,
    make_simulator: Callable[..., RunningSimulator],
    tmp_path: Path,
) -> None:
    """A grounded item sent through Google's Batch API gets the same grounding on its line."""
    sim = make_simulator(price_book="google", batch_pending_s=0.05, batch_running_s=0.05)
    items = [
        {"id": "g", "prompt": "the tallest building in 2026", "grounding": "web+image"},
        {"id": "p", "prompt": "a plain fox"},
    ]
    manifest = write_manifest(
        items, model=FLASH, endpoint=sim.url, auth="google", mode="batch", price_book="google",
        batch={"poll_s": 0.05, "max_poll_s": 0.2},
    )  # fmt: skip
    result = cli("run", str(manifest), "--no-progress")
    assert result.exit_code == 0, result.stderr
    lines = _by_item(tmp_path / "out" / "ledger.jsonl")
    assert lines["g"]["mode"] == "batch" and lines["g"]["outcome"] == "ok"
    assert lines["g"]["grounding"]["image_queries"] == ["the tallest building in 2026 photo"]
    assert len(lines["g"]["grounding"]["sources"]) == 3
    assert "grounding" not in lines["p"]


def test_the_html_report_shows_each_grounded_images_sources_beside_it(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """The contact sheet credits a grounded image's sources (linked, escaped) and its searches;
    an ungrounded image has none; a link that is not http(s), even one written into the ledger
    by hand, is never a link."""
    items = [
        {"id": "chart", "prompt": "Everest <b>height</b>", "grounding": "web+image"},
        {"id": "plain", "prompt": "a fox"},
    ]
    manifest = write_manifest(items, model=FLASH, endpoint=simulator.url)
    assert cli("run", str(manifest), "--no-progress").exit_code == 0
    ledger = tmp_path / "out" / "ledger.jsonl"
    text = ledger.read_text().replace(
        "https://www.example.com/articles/everest-b-height-b", "javascript:alert(1)"
    )
    ledger.write_text(text)
    page = tmp_path / "report.html"
    assert cli("report", str(ledger), "--format", "html", "--output", str(page)).exit_code == 0
    html = page.read_text()
    chart = html[html.index('alt="chart"') : html.index("</figure>", html.index('alt="chart"'))]
    plain = html[html.index('alt="plain"') : html.index("</figure>", html.index('alt="plain"'))]
    assert "Sources (Google Search):" in chart and "Sources" not in plain
    assert '<a href="https://example.org/wiki/everest-b-height-b-' in chart
    assert 'rel="noopener noreferrer nofollow"' in chart
    assert ">Everest &lt;b&gt;height&lt;/b&gt; - example gallery</a>" in chart
    assert "searched: Everest &lt;b&gt;height&lt;/b&gt;; Everest" in chart
    assert "javascript:" not in html and "<b>height</b>" not in html


def test_the_example_job_runs_green_and_plan_says_what_it_does_not_count(
    cli: Cli, tmp_path: Path
) -> None:
    """jobs/grounding.yaml runs on the simulator, every item ok, the grounded ones with their
    sources; `plan` says the search charges are not in the estimate."""
    shutil.copytree(JOBS, tmp_path / "jobs")
    manifest = tmp_path / "jobs" / "grounding.yaml"
    planned = cli("plan", str(manifest))
    assert planned.exit_code == 0, planned.stderr
    assert (
        "grounding: 3 item(s) search Google (web 2, web+image 1); search charges are not in the"
        " estimate" in planned.stdout
    )
    assert "thinking_level: 1 item(s) think high" in planned.stdout
    result = cli("run", str(manifest), "--no-progress")
    assert result.exit_code == 0, result.stderr
    lines = _by_item(tmp_path / "out" / "grounding" / "ledger.jsonl")
    assert {line["outcome"] for line in lines.values()} == {"ok"}
    assert {item for item, line in lines.items() if "grounding" in line} == {
        "weather-card",
        "butterfly",
        "summit",
    }
    assert lines["butterfly"]["grounding"]["image_queries"]
