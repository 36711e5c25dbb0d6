"""The ledger's format is a contract (section 6): pinned here line by line, key order included.

A fixed job runs end to end on the built-in simulator (ok, refused, 429 then ok, over budget, a
crash with a request in flight, then `retry`), and every line it writes is compared with
tests/golden/ledger_format.jsonl once the volatile values (times, run ids, latencies, temporary
paths...) are replaced by placeholders. Lines written by earlier versions must still read back the
same through replay, report and rebuild.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from batchbanana.ledger.rebuild import failed_items, job_from_ledger, ledger_pricing
from batchbanana.ledger.replay import read_ledger, replay, scan_ledger
from batchbanana.report.aggregate import figures
from batchbanana.report.loading import load_report
from tests.conftest import CliResult

Cli = Callable[..., CliResult]
Writer = Callable[..., Path]
GOLDEN = Path(__file__).parent / "golden" / "ledger_format.jsonl"

ITEMS = [
    {"id": "fine", "prompt": "a calm lake", "aspect_ratio": "16:9"},
    {"id": "nope", "prompt": "a thing [sim:refuse]"},
    {"id": "busy", "prompt": "a harbour [sim:429x1]"},
    # 0.09 alone is over the budget of 0.08, whatever was spent before it.
    {"id": "dear", "prompt": "a castle", "model": "gemini-3-pro-image-preview", "image_size": "2K"},
]
TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
# Values that change from run to run: each must look right, then stands as its placeholder.
VOLATILE: dict[str, Callable[[Any], bool]] = {
    "ts": lambda value: bool(TS.fullmatch(value)),
    "run_id": lambda value: bool(re.fullmatch(r"r-\d{8}-\d{6}-[0-9a-f]{4}", value)),
    "manifest_sha256": lambda value: bool(re.fullmatch(r"[0-9a-f]{64}", value)),
    "version": lambda value: isinstance(value, str) and bool(value),
    "latency_s": lambda value: isinstance(value, float) and value >= 0,
    "response_id": lambda value: isinstance(value, str) and bool(value),
    "retry_in_s": lambda value: isinstance(value, float) and value >= 0,
}


def normalised(value: Any, tmp: str) -> Any:
    """`value` with volatile fields as `<name>` placeholders and `tmp` as `<tmp>`; order kept."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            if key in VOLATILE and inner is not None:
                assert VOLATILE[key](inner), f"{key}: {inner!r}"
                out[key] = f"<{key}>"
            else:
                out[key] = normalised(inner, tmp)
        return out
    if isinstance(value, list):
        return [normalised(inner, tmp) for inner in value]
    if isinstance(value, str):
        return value.replace(tmp, "<tmp>")
    return value


def dumped(value: Any) -> str:
    """JSON text as the ledger writes it: key order and number types (300 or 300.0) show."""
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def in_stable_order(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each run's `job` line, then its lines by item id; an item's own lines stay in ledger order.

    Items run concurrently (a retry waits while the next item goes), so only the order within an
    item, and of runs, is fixed."""
    runs: list[list[dict[str, Any]]] = []
    for line in lines:
        if line["event"] == "job":
            runs.append([line])
        else:
            runs[-1].append(line)
    ordered: list[dict[str, Any]] = []
    for run in runs:
        ordered.append(run[0])
        ordered.extend(sorted(run[1:], key=lambda line: str(line.get("item"))))
    return ordered


def run_fixed_job(cli: Cli, write_manifest: Writer) -> Path:
    """Run the fixed job, lose one result line as a crash would, run again, retry; the ledger."""
    manifest = write_manifest(
        ITEMS,
        endpoint="simulate",
        model="gemini-2.5-flash-image",
        concurrency=1,
        budget_usd=0.08,
    )
    first = cli("run", str(manifest), "--no-progress")
    assert first.exit_code == 1, first.stderr
    ledger = manifest.parent / "out" / "ledger.jsonl"
    # A power cut while `fine` was in flight: its `sent` line is on disk, its result is not.
    kept = [
        line
        for line in ledger.read_text(encoding="utf-8").splitlines(keepends=True)
        if not ('"event": "result"' in line and '"item": "fine"' in line)
    ]
    ledger.write_text("".join(kept), encoding="utf-8")
    second = cli("run", str(manifest), "--no-progress")
    assert second.exit_code == 1, second.stderr
    third = cli(
        "retry", str(ledger), "--yes", "--only", "interrupted", "--budget", "1", "--no-progress"
    )
    assert third.exit_code == 0, third.stderr
    return ledger


def test_every_ledger_line_matches_the_golden_file_key_for_key_in_order(
    cli: Cli, write_manifest: Writer, tmp_path: Path
) -> None:
    """Every line of a fixed run, crash, resume and retry equals its golden line, key order
    included, once volatile values are placeholders."""
    ledger = run_fixed_job(cli, write_manifest)
    raw = [json.loads(line) for line in ledger.read_text(encoding="utf-8").splitlines()]
    written = in_stable_order([normalised(line, str(tmp_path)) for line in raw])
    golden = [json.loads(line) for line in GOLDEN.read_text(encoding="utf-8").splitlines()]
    assert len(written) == len(golden)
    for number, (line, expected) in enumerate(zip(written, golden, strict=True), start=1):
        assert list(line) == list(expected), f"golden line {number}: keys"
        assert dumped(line) == dumped(expected), f"golden line {number}"
    # And byte for byte as the writer formats lines: ", " and ": " separators, UTF-8 as is.
    for line in ledger.read_text(encoding="utf-8").splitlines():
        parsed = json.loads(line)
        assert line == dumped(parsed)


# -- lines written by earlier versions ------------------------------------------------------------
# Copied from a real run of today's version (2026-12), then lines as older versions wrote them: a
# `job` line without "job" or a price book, a `sent` line without a price, a result with "outputs",
# a result without model fields (only its spec has them), a garbage line and a torn last line.
SPEC_FINE = (
    '{"prompt": "a calm lake", "images": [], "model": "gemini-2.5-flash-image", "image_size": "1K",'
    ' "aspect_ratio": "16:9", "response_modalities": ["TEXT", "IMAGE"]}'
)
SPEC_NOPE = (
    '{"prompt": "a thing [sim:refuse]", "images": [], "model": "gemini-2.5-flash-image",'
    ' "image_size": "1K", "aspect_ratio": null, "response_modalities": ["TEXT", "IMAGE"]}'
)
SPEC_BUSY = (
    '{"prompt": "a harbour [sim:429x1]", "images": [], "model": "gemini-2.5-flash-image",'
    ' "image_size": "1K", "aspect_ratio": null, "response_modalities": ["TEXT", "IMAGE"]}'
)
SPEC_DEAR = (
    '{"prompt": "a castle", "images": [], "model": "gemini-3-pro-image-preview",'
    ' "image_size": "2K", "aspect_ratio": null, "response_modalities": ["TEXT", "IMAGE"]}'
)
SPEC_OLD = (
    '{"prompt": "an old map", "images": [], "model": "gemini-3-pro-image-preview",'
    ' "image_size": "4K", "aspect_ratio": "4:3", "response_modalities": ["IMAGE"],'
    ' "system_prompt": "be brief"}'
)
FP = {
    name: "sha256:" + str(index) * 64
    for index, name in enumerate(("fine", "nope", "busy", "dear", "old"))
}
OLD_LINES = [
    '{"event": "job", "ts": "2026-10-01T08:00:00.000Z", "run_id": "r-20261001-080000-0000",'
    ' "command": "run", "manifest": "/jobs/night.yaml", "settings": {"endpoint": "simulate"}}',
    f'{{"event": "sent", "ts": "2026-10-01T08:00:01.000Z", "item": "old", "attempt": 1,'
    f' "fingerprint": "{FP["old"]}", "spec": {SPEC_OLD}}}',
    f'{{"event": "result", "ts": "2026-10-01T08:00:09.000Z", "item": "old", "attempt": 1,'
    f' "fingerprint": "{FP["old"]}", "outcome": "ok", "billed": "yes", "price_usd": 0.09,'
    f' "http_status": 200, "latency_s": 8.0, "output": "/jobs/out/old.png", "bytes": 10,'
    f' "outputs": ["/jobs/out/old.png", "/jobs/out/old+2.png"], "spec": {SPEC_OLD}}}',
    f'{{"event": "sent", "ts": "2026-10-01T08:00:10.000Z", "item": "old", "attempt": 2,'
    f' "fingerprint": "{FP["old"]}", "spec": {SPEC_OLD}}}',
    '{"event": "job", "ts": "2026-12-07T20:40:21.424Z", "run_id": "r-20261207-204021-2c99",'
    ' "command": "run", "job": "night", "manifest": "/tmp/rec/job.yaml", "manifest_sha256":'
    ' "73979d43aba9c2d35ec435bb8b40650e5bf1b47fb17229ab4340511e54152b9d", "ledger":'
    ' "/tmp/rec/out/ledger.jsonl", "version": "0.1.0", "settings": {"endpoint": "simulate",'
    ' "auth": "bearer", "api_key_env": "BATCHBANANA_API_KEY", "concurrency": 1, "budget_usd":'
    ' 0.08, "price_book": "apiyi", "pricing": {}, "output_dir": "/tmp/rec/out", "timeouts":'
    ' {"512": 300, "1K": 300, "2K": 300, "4K": 600, "connect": 30}, "retry": {"max_attempts": 6,'
    ' "base_delay_s": 0.05, "max_delay_s": 0.2, "max_wait_s": 900}, "adaptive": true,'
    ' "rate_limit_rpm": null, "allow_insecure_http": false, "optimize_inputs": "none"}}',
    f'{{"event": "sent", "ts": "2026-12-07T20:40:21.480Z", "item": "fine", "attempt": 1,'
    f' "fingerprint": "{FP["fine"]}", "price_usd": 0.02, "model": "gemini-2.5-flash-image",'
    f' "image_size": "1K", "spec": {SPEC_FINE}}}',
    f'{{"event": "sent", "ts": "2026-12-07T20:40:21.486Z", "item": "nope", "attempt": 1,'
    f' "fingerprint": "{FP["nope"]}", "price_usd": 0.02, "model": "gemini-2.5-flash-image",'
    f' "image_size": "1K", "spec": {SPEC_NOPE}}}',
    f'{{"event": "result", "ts": "2026-12-07T20:40:21.489Z", "item": "fine", "attempt": 1,'
    f' "fingerprint": "{FP["fine"]}", "outcome": "ok", "billed": "yes", "price_usd": 0.02,'
    f' "http_status": 200, "latency_s": 0.004, "output": "/tmp/rec/out/fine.png", "bytes": 2770,'
    f' "finish_reason": "STOP", "error": null, "usage": {{"promptTokenCount": 2,'
    f' "candidatesTokenCount": 1302, "totalTokenCount": 1304}}, "model":'
    f' "gemini-2.5-flash-image", "image_size": "1K", "aspect_ratio": "16:9", "spec": {SPEC_FINE},'
    f' "text": "Here is the image you asked for.", "response_id": "_z7fFMb5sIeR9I5blcd9_w",'
    f' "model_version": "gemini-2.5-flash-image"}}',
    "this line is garbage",
    f'{{"event": "result", "ts": "2026-12-07T20:40:21.489Z", "item": "nope", "attempt": 1,'
    f' "fingerprint": "{FP["nope"]}", "outcome": "refused", "billed": "yes", "price_usd": 0.02,'
    f' "http_status": 200, "latency_s": 0.001, "output": null, "bytes": null, "finish_reason":'
    f' "IMAGE_SAFETY", "error": "no image: finishReason IMAGE_SAFETY", "usage":'
    f' {{"promptTokenCount": 5, "candidatesTokenCount": 12, "totalTokenCount": 17}}, "model":'
    f' "gemini-2.5-flash-image", "image_size": "1K", "aspect_ratio": null, "spec": {SPEC_NOPE},'
    f' "text": "I can\'t create that image.", "response_id": "MWC44GY5tLP0NyYlhfHbew",'
    f' "model_version": "gemini-2.5-flash-image"}}',
    f'{{"event": "sent", "ts": "2026-12-07T20:40:21.489Z", "item": "busy", "attempt": 1,'
    f' "fingerprint": "{FP["busy"]}", "price_usd": 0.02, "model": "gemini-2.5-flash-image",'
    f' "image_size": "1K", "spec": {SPEC_BUSY}}}',
    f'{{"event": "result", "ts": "2026-12-07T20:40:21.491Z", "item": "busy", "attempt": 1,'
    f' "fingerprint": "{FP["busy"]}", "outcome": "rate_limited", "billed": "no", "price_usd":'
    f' 0.02, "http_status": 429, "latency_s": 0.001, "output": null, "bytes": null,'
    f' "finish_reason": null, "error": "429 RESOURCE_EXHAUSTED: Resource has been exhausted.",'
    f' "usage": null, "model": "gemini-2.5-flash-image", "image_size": "1K", "aspect_ratio":'
    f' null, "spec": {SPEC_BUSY}, "retry_in_s": 0.036}}',
    f'{{"event": "result", "ts": "2026-12-07T20:40:21.491Z", "item": "dear", "attempt": 1,'
    f' "fingerprint": "{FP["dear"]}", "outcome": "over_budget", "billed": "no", "price_usd":'
    f' 0.09, "http_status": null, "latency_s": null, "output": null, "bytes": null,'
    f' "finish_reason": null, "error": "not sent: $0.09 more would exceed the budget of $0.08",'
    f' "usage": null, "model": "gemini-3-pro-image-preview", "image_size": "2K", "aspect_ratio":'
    f' null, "spec": {SPEC_DEAR}}}',
    f'{{"event": "sent", "ts": "2026-12-07T20:40:21.529Z", "item": "busy", "attempt": 2,'
    f' "fingerprint": "{FP["busy"]}", "price_usd": 0.02, "model": "gemini-2.5-flash-image",'
    f' "image_size": "1K", "spec": {SPEC_BUSY}}}',
    '{"event": "result", "item": "busy", "attempt": 2, "outco',
]


@pytest.fixture
def old_ledger(tmp_path: Path) -> Path:
    """The lines above as one ledger file (its last line torn: no newline at the end)."""
    path = tmp_path / "ledger.jsonl"
    path.write_text("\n".join(OLD_LINES), encoding="utf-8")
    return path


def test_old_lines_replay_to_the_same_state_and_money(old_ledger: Path) -> None:
    """Replaying earlier versions' lines gives today's per-item state, money and job lines."""
    state, warnings = scan_ledger(old_ledger)
    assert [w.split(": ", 1)[1] for w in warnings] == [
        "skipped a line that is not a ledger record",
        "skipped a line that is torn (cut off mid-write)",
    ]
    assert [w.split(":")[-2] for w in warnings] == ["9", "15"]
    assert (state.spent_usd, state.possibly_spent_usd) == (0.13, 0.02)
    assert [job.run_id for job in state.jobs] == [
        "r-20261001-080000-0000",
        "r-20261207-204021-2c99",
    ]
    seen = {
        item: (
            history.attempts,
            history.fingerprint,
            history.ever_sent,
            history.current().outcome,
            history.current().billed,
            history.current().in_flight_attempt,
            history.current().in_flight_price_usd,
            (history.spec or {}).get("prompt"),
        )
        for item, history in state.items.items()
    }
    assert seen == {
        "old": (2, FP["old"], True, None, None, 2, 0.0, "an old map"),
        "fine": (1, FP["fine"], True, "ok", "yes", None, 0.02, None),
        "nope": (1, FP["nope"], True, "refused", "yes", None, 0.02, "a thing [sim:refuse]"),
        "busy": (2, FP["busy"], True, None, None, 2, 0.02, "a harbour [sim:429x1]"),
        "dear": (1, FP["dear"], False, "over_budget", "no", None, 0.0, "a castle"),
    }
    assert sorted(state.dangling()) == [("busy", FP["busy"], 2, 0.02), ("old", FP["old"], 2, 0.0)]
    # The records themselves come back as they were written.
    records = read_ledger(old_ledger).records
    assert [json.dumps(r, separators=(", ", ": ")) for r in records] == [
        line for line in OLD_LINES if line.startswith("{") and line.endswith("}")
    ]
    assert replay(records).spent_usd == state.spent_usd


def test_old_lines_report_the_same_attempts_and_items(old_ledger: Path) -> None:
    """The report reads earlier versions' lines into the same attempts, items and job info."""
    loaded = load_report([old_ledger], warn=lambda text: None)
    assert [(j.name, j.endpoint, j.price_book) for j in loaded.jobs] == [
        ("night", "simulate", "apiyi")
    ]
    attempts = [
        (
            a.item,
            a.group,
            a.order,
            a.outcome,
            a.billed,
            a.price_usd,
            a.model,
            a.image_size,
            a.ts.isoformat() if a.ts else None,
            a.latency_s,
            a.outputs,
            a.error,
            a.prompt,
            a.aspect_ratio,
            a.dangling,
        )
        for a in loaded.attempts
    ]
    pro, flash = "gemini-3-pro-image-preview", "gemini-2.5-flash-image"
    assert attempts == [
        (
            "old", "job:night", 2, "ok", "yes", 0.09, pro, "4K",
            "2026-10-01T08:00:09+00:00", 8.0, ("/jobs/out/old.png", "/jobs/out/old+2.png"),
            None, "an old map", "4:3", False,
        ),
        (
            "old", "job:night", 3, "interrupted", "unknown", 0.09, pro, "4K",
            "2026-10-01T08:00:10+00:00", None, (),
            "in flight when the process stopped (a sent line with no result)", "an old map",
            "4:3", True,
        ),
        (
            "fine", "job:night", 7, "ok", "yes", 0.02, flash, "1K",
            "2026-12-07T20:40:21.489000+00:00", 0.004, ("/tmp/rec/out/fine.png",), None,
            "a calm lake", "16:9", False,
        ),
        (
            "nope", "job:night", 8, "refused", "yes", 0.02, flash, "1K",
            "2026-12-07T20:40:21.489000+00:00", 0.001, (),
            "no image: finishReason IMAGE_SAFETY", "a thing [sim:refuse]", None, False,
        ),
        (
            "busy", "job:night", 10, "rate_limited", "no", 0.02, flash, "1K",
            "2026-12-07T20:40:21.491000+00:00", 0.001, (),
            "429 RESOURCE_EXHAUSTED: Resource has been exhausted.", "a harbour [sim:429x1]",
            None, False,
        ),
        (
            "dear", "job:night", 11, "over_budget", "no", 0.09, pro, "2K",
            "2026-12-07T20:40:21.491000+00:00", None, (),
            "not sent: $0.09 more would exceed the budget of $0.08", "a castle", None, False,
        ),
        (
            "busy", "job:night", 12, "interrupted", "unknown", 0.02, flash, "1K",
            "2026-12-07T20:40:21.529000+00:00", None, (),
            "in flight when the process stopped (a sent line with no result)",
            "a harbour [sim:429x1]", None, True,
        ),
    ]  # fmt: skip
    finals = {i.id: (i.job, i.final.outcome, i.final.order, i.results) for i in loaded.items}
    assert finals == {
        "old": ("night", "interrupted", 3, 1),
        "fine": ("night", "ok", 7, 1),
        "nope": ("night", "refused", 8, 1),
        "busy": ("night", "interrupted", 12, 1),
        "dear": ("night", "over_budget", 11, 1),
    }
    # The report prices a price-less dangling `sent` line at its model and size's latest price.
    totals = figures(loaded.attempts, loaded.items)
    assert (totals.spent_usd, totals.possibly_spent_usd, totals.attempts) == (0.13, 0.11, 5)


def test_old_lines_rebuild_the_same_job_for_retry(old_ledger: Path) -> None:
    """`retry` rebuilds the same items and settings from earlier versions' lines."""
    state, _ = scan_ledger(old_ledger)
    pricing, book = ledger_pricing(state, old_ledger)
    assert (pricing, book) == ({}, "apiyi")
    chosen = failed_items(state, None, pricing, book)
    rebuilt = [
        (
            item.id,
            outcome,
            item.prompt,
            item.model,
            item.image_size,
            item.aspect_ratio,
            item.system_prompt,
            item.response_modalities,
            item.fingerprint,
            item.price.estimate_usd(item.image_size),
        )
        for item, outcome in chosen
    ]
    pro, flash, both = "gemini-3-pro-image-preview", "gemini-2.5-flash-image", ("TEXT", "IMAGE")
    assert rebuilt == [
        (
            "old", "interrupted", "an old map", pro, "4K", "4:3", "be brief", ("IMAGE",),
            FP["old"], 0.09,
        ),
        (
            "nope", "refused", "a thing [sim:refuse]", flash, "1K", None, None, both, FP["nope"],
            0.02,
        ),
        (
            "busy", "interrupted", "a harbour [sim:429x1]", flash, "1K", None, None, both,
            FP["busy"], 0.02,
        ),
        ("dear", "over_budget", "a castle", pro, "2K", None, None, both, FP["dear"], 0.09),
    ]  # fmt: skip
    job = job_from_ledger(state, old_ledger, [item for item, _ in chosen])
    assert (job.name, str(job.manifest_path), job.manifest_sha256) == (
        "night",
        "/tmp/rec/job.yaml",
        "73979d43aba9c2d35ec435bb8b40650e5bf1b47fb17229ab4340511e54152b9d",
    )
    assert (job.endpoint, job.auth, job.api_key_env, job.concurrency, job.budget_usd) == (
        "simulate",
        "bearer",
        "BATCHBANANA_API_KEY",
        1,
        0.08,
    )
    assert (str(job.output_dir), job.retry.base_delay_s, job.timeouts.for_size("4K")) == (
        "/tmp/rec/out",
        0.05,
        600,
    )
    assert [item.id for item in job.items] == ["old", "nope", "busy", "dear"]
