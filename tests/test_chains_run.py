"""Edit chains end to end through the CLI against the simulator: an edit is sent only once the item
it uses is ok, with that item's saved image inlined; a base that fails leaves its edits `blocked`
(billed no, nothing sent); a later `run` (or `retry`) sends them once the base is ok."""

from __future__ import annotations

import base64
import json
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from batchbanana.simulator import RunningSimulator
from tests.conftest import CliResult, RecordingServer, Seen, png_bytes, read_jsonl, results

Cli = Callable[..., CliResult]
Writer = Callable[..., Path]

CHAIN = [
    {"id": "base", "prompt": "a red bicycle", "aspect_ratio": "16:9"},
    {"id": "edit", "prompt": "make it blue", "images": ["item:base"], "aspect_ratio": "1:1"},
    {"id": "edit2", "prompt": "add a basket", "images": ["item:edit"], "aspect_ratio": "3:4"},
    {"id": "branch", "prompt": "make it green", "images": ["item:base"], "aspect_ratio": "9:16"},
]


def _lines(ledger: Path, event: str, item: str) -> list[dict[str, Any]]:
    return [line for line in read_jsonl(ledger) if line["event"] == event and line["item"] == item]


def _forward_to(sim: RunningSimulator, bodies: dict[str, bytes]) -> Callable[..., Any]:
    """A RecordingServer reply that passes each request on to the simulator and keeps, per
    prompt, the bytes of the first image the request carried inline."""

    def reply(seen: Seen, body: bytes) -> tuple[int, dict[str, str], bytes]:
        parts = json.loads(body)["contents"][0]["parts"]
        prompt = next(part["text"] for part in parts if "text" in part)
        inline = [part["inlineData"]["data"] for part in parts if "inlineData" in part]
        if inline:
            bodies[prompt] = base64.b64decode(inline[0])
        headers = {
            k: v for k, v in seen.headers.items() if k.lower() not in ("host", "content-length")
        }
        request = urllib.request.Request(sim.url + seen.target, body, headers, method=seen.method)
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, {"Content-Type": "application/json"}, answer.read()
        except urllib.error.HTTPError as error:
            return error.code, {"Content-Type": "application/json"}, error.read()

    return reply


def test_a_chain_and_a_branch_end_ok_and_each_edit_carries_the_saved_output_it_uses(
    cli: Cli,
    write_manifest: Writer,
    simulator: RunningSimulator,
    recording_server: RecordingServer,
    tmp_path: Path,
) -> None:
    """base -> edit -> edit2 and base -> branch all end ok; each edit's request carries, byte for
    byte, the file its base saved, and is sent only after that base's ok line."""
    bodies: dict[str, bytes] = {}
    recording_server.reply = _forward_to(simulator, bodies)
    manifest = write_manifest(CHAIN, endpoint=recording_server.url)
    result = cli("run", str(manifest), "--no-progress")
    assert result.exit_code == 0, result.stderr
    out = tmp_path / "out"
    ledger = out / "ledger.jsonl"
    assert {line["item"]: line["outcome"] for line in results(ledger)} == dict.fromkeys(
        ("base", "edit", "edit2", "branch"), "ok"
    )
    base, edit = (out / "base.png").read_bytes(), (out / "edit.png").read_bytes()
    assert base != edit  # different ratios: the comparisons below tell the files apart
    assert bodies["make it blue"] == base
    assert bodies["make it green"] == base
    assert bodies["add a basket"] == edit
    assert "a red bicycle" not in bodies
    order = [(line["event"], line["item"]) for line in read_jsonl(ledger) if "item" in line]
    assert order.index(("result", "base")) < order.index(("sent", "edit"))
    assert order.index(("result", "base")) < order.index(("sent", "branch"))
    assert order.index(("result", "edit")) < order.index(("sent", "edit2"))
    spec_image = _lines(ledger, "sent", "edit")[0]["spec"]["images"][0]
    assert spec_image["item"] == "base" and spec_image["path"] == str(out / "base.png")


def test_a_failing_base_blocks_its_users_and_a_later_run_sends_them(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """A refused base leaves edit, edit2 and branch `blocked` (billed no, no `sent` line, attempt
    1, not a request: the bill shows the base alone; exit 1); once its prompt is fixed, the next
    run sends the base and then each edit; the run after that sends nothing."""
    items = [dict(item) for item in CHAIN]
    items[0]["prompt"] = "a red bicycle [sim:refuse]"
    manifest = write_manifest(items, endpoint=simulator.url)
    first = cli("run", str(manifest), "--no-progress")
    assert first.exit_code == 1
    ledger = tmp_path / "out" / "ledger.jsonl"
    for item in ("edit", "edit2", "branch"):
        assert _lines(ledger, "sent", item) == []
        (line,) = _lines(ledger, "result", item)
        assert (line["outcome"], line["billed"], line["attempt"]) == ("blocked", "no", 1)
        assert line["spec"]["images"][0]["pending"] is True
    assert (
        "it uses the output of item 'base', which ended refused"
        in (_lines(ledger, "result", "edit")[0]["error"])
    )
    assert (
        "it uses the output of item 'edit', which is blocked"
        in (_lines(ledger, "result", "edit2")[0]["error"])
    )
    assert simulator.stats()["by_prompt"] == {"a red bicycle [sim:refuse]": 1}
    assert simulator.bill()["billed_requests"] == 1
    assert "3 item(s) blocked (not sent, not billed)" in first.stderr
    report = json.loads(cli("report", str(ledger), "--format", "json").stdout)
    assert report["outcomes"] == {"refused": 1, "blocked": 3}
    assert report["spent_usd"] == 0.09
    assert report["runs"][0]["requests"] == 1

    items[0]["prompt"] = "a red bicycle"
    write_manifest(items, endpoint=simulator.url)
    second = cli("run", str(manifest), "--no-progress")
    assert second.exit_code == 0, second.stderr
    for item in ("edit", "edit2", "branch"):
        assert [line["attempt"] for line in _lines(ledger, "sent", item)] == [2]
        assert _lines(ledger, "result", item)[-1]["outcome"] == "ok"
    assert simulator.bill()["billed_requests"] == 5

    third = cli("run", str(manifest), "--no-progress")
    assert third.exit_code == 0, third.stderr
    assert "4 item(s) already ok in the ledger" in third.stderr
    assert simulator.bill()["billed_requests"] == 5


def test_blocked_items_are_blocked_again_while_the_base_is_not_ok(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """A second run with the base still refused (left for `retry`) writes a new `blocked` line
    per edit, at the next attempt number, and sends nothing; so does `retry --only blocked`."""
    items = [dict(item) for item in CHAIN[:2]]
    items[0]["prompt"] = "a red bicycle [sim:refuse]"
    manifest = write_manifest(items, endpoint=simulator.url)
    assert cli("run", str(manifest), "--no-progress").exit_code == 1
    again = cli("run", str(manifest), "--no-progress")
    assert again.exit_code == 1
    assert "whose latest outcome is refused" in again.stderr
    ledger = tmp_path / "out" / "ledger.jsonl"
    retried = cli("retry", str(ledger), "--only", "blocked", "--yes", "--no-progress")
    assert retried.exit_code == 1
    lines = _lines(ledger, "result", "edit")
    assert [(line["attempt"], line["outcome"]) for line in lines] == [
        (1, "blocked"),
        (2, "blocked"),
        (3, "blocked"),
    ]
    assert simulator.bill()["billed_requests"] == 1


def test_retry_sends_the_items_that_waited_for_a_base_it_pays_for_again(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """`retry` rebuilds a refused base and its blocked users from the ledger: the users wait for
    the base within the retry and are sent with its new output; a `run` afterwards finds every
    item ok and sends nothing."""
    items = [dict(item) for item in CHAIN]
    items[0]["prompt"] = "a red bicycle [sim:refusex1]"  # refused once, then an image
    manifest = write_manifest(items, endpoint=simulator.url)
    assert cli("run", str(manifest), "--no-progress").exit_code == 1
    ledger = tmp_path / "out" / "ledger.jsonl"
    retried = cli("retry", str(ledger), "--yes", "--no-progress")
    assert retried.exit_code == 0, retried.stderr
    assert {line["item"]: line["outcome"] for line in results(ledger)} == dict.fromkeys(
        ("base", "edit", "edit2", "branch"), "ok"
    )
    sent = _lines(ledger, "sent", "edit")[0]
    assert sent["spec"]["images"][0]["sha256"]  # the base's output, read once it was ok
    assert simulator.bill()["billed_requests"] == 5
    after = cli("run", str(manifest), "--no-progress")
    assert after.exit_code == 0, after.stderr
    assert simulator.bill()["billed_requests"] == 5


def test_a_new_base_output_makes_its_edits_new_work_and_same_bytes_do_not(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """Editing the base's prompt makes the base new work, and the edits that use it too (their
    input bytes changed); an edit whose input comes back byte for byte as before (the
    simulator answers the same image for the same ratio) is ok already and not sent again."""
    manifest = write_manifest(CHAIN, endpoint=simulator.url)
    assert cli("run", str(manifest), "--no-progress").exit_code == 0
    ledger = tmp_path / "out" / "ledger.jsonl"
    before = {line["item"]: line["fingerprint"] for line in results(ledger)}
    items = [dict(item) for item in CHAIN]
    items[0].update(prompt="a red bicycle, at night", aspect_ratio="4:3")
    write_manifest(items, endpoint=simulator.url)
    result = cli("run", str(manifest), "--no-progress")
    assert result.exit_code == 0, result.stderr
    after = {line["item"]: line["fingerprint"] for line in results(ledger)}
    assert {item for item in before if after[item] != before[item]} == {"base", "edit", "branch"}
    assert len(_lines(ledger, "sent", "edit2")) == 1
    assert simulator.bill()["billed_requests"] == 4 + 3


def test_independent_items_go_on_while_a_chain_waits(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """With two workers, a slow base holds one and its waiting edit holds none: every
    independent item is done before the base, and the edit is sent after it."""
    items: list[dict[str, Any]] = [
        {"id": "base", "prompt": "a slow base [sim:slow:1]"},
        {"id": "edit", "prompt": "edit it", "images": ["item:base"]},
    ] + [{"id": f"free-{n}", "prompt": f"an independent view {n}"} for n in range(8)]
    manifest = write_manifest(items, endpoint=simulator.url, concurrency=2, adaptive=False)
    result = cli("run", str(manifest), "--no-progress")
    assert result.exit_code == 0, result.stderr
    order = [(line["event"], line["item"]) for line in read_jsonl(tmp_path / "out" / "ledger.jsonl")
             if "item" in line]  # fmt: skip
    base_done = order.index(("result", "base"))
    assert all(order.index(("result", f"free-{n}")) < base_done for n in range(8))
    assert order.index(("sent", "edit")) > base_done


def test_an_edit_reserves_its_price_only_when_it_is_sent(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """With room for two requests, the base and the independent item after the edit are sent;
    the edit, judged when its base is ok, is over_budget (its price was never held while it
    waited)."""
    items = [
        {"id": "base", "prompt": "a base"},
        {"id": "edit", "prompt": "edit it", "images": ["item:base"]},
        {"id": "lone", "prompt": "a lone shot"},
    ]
    manifest = write_manifest(items, endpoint=simulator.url, budget_usd=0.18)
    result = cli("run", str(manifest), "--no-progress")
    assert result.exit_code == 1
    outcomes = {
        line["item"]: line["outcome"] for line in results(tmp_path / "out" / "ledger.jsonl")
    }
    assert outcomes == {"base": "ok", "lone": "ok", "edit": "over_budget"}


def test_a_base_output_over_7_mb_blocks_its_user_with_a_clear_error(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """A base output too large to be an input image (over 7 MB) makes its user `blocked` with
    an error that says so and names the item, with no request and no traceback."""
    base = [{"id": "base", "prompt": "a base"}]
    manifest = write_manifest(base, endpoint=simulator.url)
    assert cli("run", str(manifest), "--no-progress").exit_code == 0
    (tmp_path / "out" / "base.png").write_bytes(png_bytes(8, 8, padding=7_100_000))
    write_manifest([*base, {"id": "edit", "prompt": "edit", "images": ["item:base"]}],
                   endpoint=simulator.url)  # fmt: skip
    result = cli("run", str(manifest), "--no-progress")
    assert result.exit_code == 1
    assert "Traceback" not in result.stderr
    ledger = tmp_path / "out" / "ledger.jsonl"
    (line,) = _lines(ledger, "result", "edit")
    assert line["outcome"] == "blocked" and line["billed"] == "no"
    assert "item:base: the output of item 'base' cannot be sent as an input image" in line["error"]
    assert "over the 7 MB limit" in line["error"]
    assert _lines(ledger, "sent", "edit") == []
    assert simulator.bill()["billed_requests"] == 1


def test_the_chain_example_runs_green(cli: Cli, tmp_path: Path) -> None:
    """`jobs/chain.yaml` (a chain and a branch on the built-in simulator) ends with every item
    ok, each edit sent after the item it uses."""
    root = Path(__file__).resolve().parent.parent
    shutil.copytree(root / "jobs", tmp_path / "jobs")
    manifest = tmp_path / "jobs" / "chain.yaml"
    result = cli("run", str(manifest), "--no-progress")
    assert result.exit_code == 0, result.stderr
    ledger = tmp_path / "out" / "chain" / "ledger.jsonl"
    assert {line["outcome"] for line in results(ledger)} == {"ok"}
    uses = {
        item["id"]: item.get("images", []) for item in yaml.safe_load(manifest.read_text())["items"]
    }
    assert sum(1 for images in uses.values() for image in images if image.startswith("item:")) == 3
    assert "chains: 3 item(s)" in cli("plan", str(manifest)).stdout


def test_a_stop_before_the_base_is_sent_leaves_its_edit_owed_not_blocked(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """A job-level stop (a refused key) before the base goes out: the base and its edit are not
    sent and get no line at all; they are owed to the next run, which sends both."""
    items: list[dict[str, Any]] = [
        {"id": "stopper", "prompt": "the key is refused [sim:401]"},
        {"id": "base", "prompt": "a base"},
        {"id": "edit", "prompt": "edit it", "images": ["item:base"]},
    ]
    manifest = write_manifest(items, endpoint=simulator.url, concurrency=1, adaptive=False)
    first = cli("run", str(manifest), "--no-progress")
    assert first.exit_code == 1
    assert "2 item(s) were not sent; running again sends them" in first.stderr
    ledger = tmp_path / "out" / "ledger.jsonl"
    assert [line["item"] for line in results(ledger)] == ["stopper"]
    items[0]["prompt"] = "the key is fine"
    write_manifest(items, endpoint=simulator.url, concurrency=1, adaptive=False)
    second = cli("run", str(manifest), "--no-progress")
    assert second.exit_code == 0, second.stderr
    assert {line["item"] for line in results(ledger) if line["outcome"] == "ok"} == {
        "stopper",
        "base",
        "edit",
    }
