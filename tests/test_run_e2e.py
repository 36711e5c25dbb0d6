"""`batchbanana run` end to end through the CLI against the real simulator on 127.0.0.1."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from batchbanana.simulator import RunningSimulator
from tests.conftest import (
    FAKE_KEY,
    CliResult,
    RecordingServer,
    Seen,
    png_bytes,
    png_size,
    read_jsonl,
    results,
)

Cli = Callable[..., CliResult]
Writer = Callable[..., Path]


def by_item(path: Path) -> dict[str, list[dict[str, Any]]]:
    """Result lines grouped by item id, in ledger order."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for record in results(path):
        grouped.setdefault(record["item"], []).append(record)
    return grouped


def test_happy_path_writes_one_image_and_one_ok_line_per_item(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """N items give N images of the requested pixel size, N `ok` lines and exit 0."""
    items = [
        {"id": "wide", "prompt": "a wide fox", "image_size": "2K", "aspect_ratio": "16:9"},
        {"id": "tall", "prompt": "a tall tower", "aspect_ratio": "9:16"},
        {"id": "square", "prompt": "a square tile", "aspect_ratio": "1:1"},
        {"id": "big", "prompt": "a big map", "image_size": "4K", "aspect_ratio": "4:3"},
    ]
    manifest = write_manifest(items, endpoint=simulator.url)
    result = cli("run", str(manifest), "--no-progress")
    assert result.exit_code == 0, result.stderr
    expected_long_side = {"wide": 2048, "tall": 1024, "square": 1024, "big": 4096}
    ratios = {"wide": 16 / 9, "tall": 9 / 16, "square": 1.0, "big": 4 / 3}
    for item_id, long_side in expected_long_side.items():
        width, height = png_size((tmp_path / "out" / f"{item_id}.png").read_bytes())
        assert max(width, height) == long_side
        assert width / height == pytest.approx(ratios[item_id], rel=0.02)
    lines = results(tmp_path / "out" / "ledger.jsonl")
    assert [line["outcome"] for line in lines] == ["ok"] * 4
    assert all(line["billed"] == "yes" and line["price_usd"] == 0.09 for line in lines)
    assert simulator.bill()["billed_requests"] == 4
    assert result.stdout == ""


def test_ledger_has_job_sent_and_result_lines_in_contract_order(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """Each request has a `sent` line before its `result`, after one `job` line; all fields."""
    manifest = write_manifest([{"id": "a", "prompt": "a cat"}], endpoint=simulator.url)
    assert cli("run", str(manifest), "--no-progress").exit_code == 0
    records = read_jsonl(tmp_path / "out" / "ledger.jsonl")
    assert [record["event"] for record in records] == ["job", "sent", "result"]
    job, sent, result = records
    assert job["command"] == "run" and len(job["manifest_sha256"]) == 64
    assert sent["attempt"] == 1 and sent["fingerprint"].startswith("sha256:")
    assert sent["spec"]["prompt"] == "a cat"
    for key in (
        "item",
        "attempt",
        "fingerprint",
        "outcome",
        "billed",
        "price_usd",
        "http_status",
        "latency_s",
        "output",
        "bytes",
        "finish_reason",
        "error",
        "usage",
        "model",
        "image_size",
        "aspect_ratio",
        "spec",
        "ts",
    ):
        assert key in result, key
    assert result["fingerprint"] == sent["fingerprint"]
    assert Path(result["output"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result["bytes"] == Path(result["output"]).stat().st_size


def test_429_twice_then_ok_is_retried_without_charge(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """Two 429s are retried at no charge and the third attempt delivers the image."""
    manifest = write_manifest(
        [{"id": "t", "prompt": "a harbour [sim:429x2]"}], endpoint=simulator.url
    )
    result = cli("run", str(manifest), "--no-progress")
    assert result.exit_code == 0, result.stderr
    lines = by_item(tmp_path / "out" / "ledger.jsonl")["t"]
    assert [(line["outcome"], line["billed"], line["attempt"]) for line in lines] == [
        ("rate_limited", "no", 1),
        ("rate_limited", "no", 2),
        ("ok", "yes", 3),
    ]
    assert simulator.bill()["billed_requests"] == 1
    assert simulator.stats()["requests"] == 3


def test_503_with_retry_after_waits_at_least_that_long(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """A 503 with `Retry-After: 1` is retried no sooner than 1 s later, and is not billed."""
    manifest = write_manifest(
        [{"id": "busy", "prompt": "a hut [sim:503x1,retry_after:1]"}], endpoint=simulator.url
    )
    assert cli("run", str(manifest), "--no-progress").exit_code == 0
    records = [
        record
        for record in read_jsonl(tmp_path / "out" / "ledger.jsonl")
        if record.get("item") == "busy"
    ]
    first_result = next(r for r in records if r["event"] == "result")
    second_sent = [r for r in records if r["event"] == "sent"][1]
    assert first_result["outcome"] == "unavailable" and first_result["billed"] == "no"
    assert first_result["retry_in_s"] >= 1.0
    from datetime import datetime

    def at(record: dict[str, Any]) -> float:
        return datetime.fromisoformat(record["ts"].replace("Z", "+00:00")).timestamp()

    assert at(second_sent) - at(first_result) >= 0.95
    assert simulator.bill()["billed_requests"] == 1


@pytest.mark.parametrize(
    ("directive", "outcome", "billed", "status"),
    [
        pytest.param("refuse", "refused", "yes", 200, id="refusal"),
        pytest.param("block", "refused", "yes", 200, id="prompt-blocked"),
        pytest.param("no_image", "no_image", "yes", 200, id="no-image"),
        pytest.param("500", "server_error", "unknown", 500, id="server-error"),
        pytest.param("400", "http_error", "no", 400, id="bad-request"),
        pytest.param("bad_json", "bad_response", "yes", 200, id="bad-json"),
    ],
)
def test_failures_that_may_have_cost_money_are_never_retried(
    cli: Cli,
    write_manifest: Writer,
    simulator: RunningSimulator,
    tmp_path: Path,
    directive: str,
    outcome: str,
    billed: str,
    status: int,
) -> None:
    """Refusals, no-image answers, 500s and 4xx: classified, billed as the table says, sent once."""
    manifest = write_manifest(
        [{"id": "x", "prompt": f"p [sim:{directive}]"}], endpoint=simulator.url
    )
    result = cli("run", str(manifest), "--no-progress")
    assert result.exit_code == 1
    lines = results(tmp_path / "out" / "ledger.jsonl")
    assert [(line["outcome"], line["billed"], line["http_status"]) for line in lines] == [
        (outcome, billed, status)
    ]
    assert simulator.stats()["requests"] == 1
    assert not list((tmp_path / "out").glob("x*.png"))
    assert "x" in result.stderr and outcome in result.stderr


def test_timeout_is_billed_and_not_retried(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """An answer slower than the size's timeout is a billed `timeout`, sent once."""
    manifest = write_manifest(
        [{"id": "slow", "prompt": "p [sim:slow:3]"}],
        endpoint=simulator.url,
        timeouts={"1K": 0.5},
    )
    assert cli("run", str(manifest), "--no-progress").exit_code == 1
    lines = results(tmp_path / "out" / "ledger.jsonl")
    assert [(line["outcome"], line["billed"]) for line in lines] == [("timeout", "yes")]
    assert 0.4 <= lines[0]["latency_s"] < 2.5
    assert simulator.stats()["by_prompt"] == {"p [sim:slow:3]": 1}


def test_connection_refused_is_retried_then_given_up_unbilled(
    cli: Cli, write_manifest: Writer, tmp_path: Path
) -> None:
    """A server that is not there gives `connect_error` (not billed), retried up to max_attempts."""
    manifest = write_manifest(
        [{"id": "a", "prompt": "p"}],
        endpoint="http://127.0.0.1:9",
        retry={"max_attempts": 3, "base_delay_s": 0.01, "max_delay_s": 0.02},
    )
    result = cli("run", str(manifest), "--no-progress")
    assert result.exit_code == 1
    lines = results(tmp_path / "out" / "ledger.jsonl")
    assert [(line["outcome"], line["billed"]) for line in lines] == [("connect_error", "no")] * 3


def test_bill_invariant_holds_on_a_mixed_fault_job(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """Ledger spent <= simulator bill <= spent + possibly spent, whatever the faults."""
    directives = [
        "",
        "[sim:429x1]",
        "[sim:503x2]",
        "[sim:refuse]",
        "[sim:no_image]",
        "[sim:500]",
        "[sim:drop]",
        "[sim:502]",
        "[sim:bad_json]",
        "[sim:400]",
    ]
    items = [
        {"id": f"i{n}", "prompt": f"prompt {n} {directives[n % len(directives)]}"}
        for n in range(30)
    ]
    manifest = write_manifest(items, endpoint=simulator.url, concurrency=6)
    cli("run", str(manifest), "--no-progress")
    lines = results(tmp_path / "out" / "ledger.jsonl")
    spent = sum(line["price_usd"] for line in lines if line["billed"] == "yes")
    possibly = sum(line["price_usd"] for line in lines if line["billed"] == "unknown")
    bill = simulator.bill()["billed_usd"]
    assert spent - 1e-9 <= bill <= spent + possibly + 1e-9
    assert {line["item"] for line in lines} == {f"i{n}" for n in range(30)}


def test_never_more_requests_in_flight_than_concurrency(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator
) -> None:
    """With concurrency 4 and slow answers the simulator sees at most 4 in flight, and reaches 4."""
    items = [{"id": f"s{n}", "prompt": f"slow {n} [sim:slow:0.3]"} for n in range(12)]
    manifest = write_manifest(items, endpoint=simulator.url, concurrency=4)
    assert cli("run", str(manifest), "--no-progress").exit_code == 0
    assert simulator.stats()["max_in_flight"] == 4


@pytest.mark.parametrize(
    ("items", "settings", "expected"),
    [
        pytest.param(
            [{"prompt": "p", "image_sise": "2K"}], {}, "did you mean image_size", id="unknown-key"
        ),
        pytest.param(
            [{"prompt": "p", "image_size": "2K"}],
            {"model": "gemini-2.5-flash-image"},
            "1K only",
            id="size-for-model",
        ),
        pytest.param(
            [{"id": "a", "prompt": "p"}, {"id": "a", "prompt": "q"}],
            {},
            "duplicate id",
            id="duplicate-ids",
        ),
        pytest.param([{"id": "../x", "prompt": "p"}], {}, "not a valid id", id="escaping-id"),
        pytest.param(
            [{"prompt": "p", "images": ["missing.png"]}], {}, "no such file", id="missing-image"
        ),
    ],
)
def test_invalid_manifest_exits_2_with_one_line_and_sends_nothing(
    cli: Cli,
    write_manifest: Writer,
    simulator: RunningSimulator,
    tmp_path: Path,
    items: list[dict[str, Any]],
    settings: dict[str, Any],
    expected: str,
) -> None:
    """A manifest mistake is exit 2, a `file:line:` message naming it, and zero requests."""
    manifest = write_manifest(items, endpoint=simulator.url, **settings)
    result = cli("run", str(manifest), "--no-progress")
    assert result.exit_code == 2
    assert expected in result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"{manifest}:")
    assert "Traceback" not in result.stderr
    assert simulator.stats()["requests"] == 0
    assert not (tmp_path / "out" / "ledger.jsonl").exists()


def test_missing_key_is_exit_2_before_anything_is_sent(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unset key variable stops the run before a request, naming the variable."""
    monkeypatch.delenv("BATCHBANANA_API_KEY")
    manifest = write_manifest([{"prompt": "p"}], endpoint=simulator.url)
    result = cli("run", str(manifest))
    assert result.exit_code == 2
    assert "BATCHBANANA_API_KEY" in result.stderr
    assert simulator.stats()["requests"] == 0


def test_api_key_never_appears_in_any_output(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """The key is in no ledger line, image, stdout or stderr, even when the server echoes it."""
    items = [
        {"id": "ok", "prompt": "p"},
        {"id": "echo", "prompt": "q [sim:echo_key_403]"},
    ]
    manifest = write_manifest(items, endpoint=simulator.url, concurrency=1)
    result = cli("run", str(manifest))
    assert FAKE_KEY not in result.stdout + result.stderr
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            assert FAKE_KEY.encode() not in path.read_bytes(), path
    echoed = by_item(tmp_path / "out" / "ledger.jsonl")["echo"]
    assert echoed[0]["http_status"] == 403 and "***" in echoed[0]["error"]


@pytest.mark.parametrize(
    ("auth", "header", "value"),
    [
        pytest.param("bearer", "Authorization", f"Bearer {FAKE_KEY}", id="bearer"),
        pytest.param("google", "x-goog-api-key", FAKE_KEY, id="google"),
    ],
)
def test_request_url_never_carries_the_key(
    cli: Cli,
    write_manifest: Writer,
    simulator: RunningSimulator,
    recording_server: RecordingServer,
    auth: str,
    header: str,
    value: str,
) -> None:
    """The key from the environment travels in its auth header alone, never in the URL (no
    `?key=`): checked on what a server in front of the simulator received from a real run."""
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def forward(seen: Seen, body: bytes) -> tuple[int, dict[str, str], bytes]:
        kept = {"content-type", "authorization", "x-goog-api-key"}
        headers = {name: text for name, text in seen.headers.items() if name.lower() in kept}
        request = urllib.request.Request(
            simulator.url + seen.target, data=body, headers=headers, method=seen.method
        )
        with direct.open(request) as answer:
            return answer.status, {"Content-Type": answer.headers["Content-Type"]}, answer.read()

    recording_server.reply = forward
    manifest = write_manifest(
        [{"id": "k", "prompt": "p"}], endpoint=recording_server.url, auth=auth
    )
    assert cli("run", str(manifest), "--no-progress").exit_code == 0
    [seen] = recording_server.seen
    assert seen.target == "/v1beta/models/gemini-3-pro-image-preview:generateContent"
    assert [name for name, text in seen.headers.items() if FAKE_KEY in text] == [header]
    assert seen.headers[header] == value
    assert simulator.bill()["billed_requests"] == 1


def test_google_auth_sends_the_key_in_x_goog_api_key(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator
) -> None:
    """`auth: google` works against a server that accepts x-goog-api-key."""
    manifest = write_manifest([{"prompt": "p"}], endpoint=simulator.url, auth="google")
    assert cli("run", str(manifest), "--no-progress").exit_code == 0


def test_local_reference_image_is_sent_inline(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """A local PNG is inlined as base64; the simulator checks and accepts it, and the answer
    follows its aspect ratio when none is given."""
    (tmp_path / "ref.png").write_bytes(png_bytes(64, 32))
    manifest = write_manifest(
        [{"id": "edit", "prompt": "edit", "images": ["ref.png"]}], endpoint=simulator.url
    )
    assert cli("run", str(manifest), "--no-progress").exit_code == 0
    width, height = png_size((tmp_path / "out" / "edit.png").read_bytes())
    assert width == 2 * height


def test_rerun_sends_nothing_already_ok(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator
) -> None:
    """Running the same manifest twice pays once: `ok` items are never sent again."""
    manifest = write_manifest([{"prompt": f"p{n}"} for n in range(3)], endpoint=simulator.url)
    assert cli("run", str(manifest), "--no-progress").exit_code == 0
    second = cli("run", str(manifest), "--no-progress")
    assert second.exit_code == 0
    assert simulator.stats()["requests"] == 3
    assert "already ok" in second.stderr


def test_existing_foreign_file_blocks_the_run(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """A file at an item's final name that this job never made is never overwritten: exit 2."""
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.png").write_bytes(b"precious")
    manifest = write_manifest([{"id": "mine", "prompt": "p"}], endpoint=simulator.url)
    result = cli("run", str(manifest), "--no-progress")
    assert result.exit_code == 2
    assert "mine.png" in result.stderr
    assert (tmp_path / "out" / "mine.png").read_bytes() == b"precious"
    assert simulator.stats()["requests"] == 0


def test_demo_manifest_runs_green(cli: Cli, tmp_path: Path) -> None:
    """`jobs/demo.yaml` (what `make demo` runs) ends with every item ok and exit 0."""
    import shutil

    root = Path(__file__).resolve().parent.parent
    shutil.copytree(root / "jobs", tmp_path / "jobs")
    result = cli("run", str(tmp_path / "jobs" / "demo.yaml"), "--no-progress")
    assert result.exit_code == 0, result.stderr
    lines = results(tmp_path / "out" / "demo" / "ledger.jsonl")
    assert len(lines) >= 24 and {line["outcome"] for line in lines} == {"ok"}
