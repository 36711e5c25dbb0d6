"""The outcome `blocked` in reports: an item not sent because an item whose output it uses is not
ok. It is counted among the items' outcomes and failures, never as money, and never as a request
of its run."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import CliResult

Cli = Callable[..., CliResult]


def _line(event: str, item: str, outcome: str | None = None, **fields: Any) -> dict[str, Any]:
    line: dict[str, Any] = {
        "event": event,
        "ts": "2026-11-25T22:00:01.000Z",
        "item": item,
        "attempt": 1,
        "fingerprint": f"sha256:{item}",
        "price_usd": 0.09,
        "model": "gemini-3-pro-image-preview",
        "image_size": "1K",
        "spec": {"prompt": item, "model": "gemini-3-pro-image-preview", "image_size": "1K"},
    }
    if outcome is not None:
        line.update(outcome=outcome, billed="yes" if outcome == "refused" else "no", **fields)
    return line


def test_a_blocked_item_is_a_failure_that_costs_nothing_and_sends_nothing(
    cli: Cli, tmp_path: Path
) -> None:
    """A refused base ($0.09) and its blocked edit: spent $0.09, outcomes name `blocked`, the
    failure list holds its reason, and the run made one request."""
    records = [
        {"event": "job", "ts": "2026-11-25T22:00:00.000Z", "run_id": "r-1", "command": "run",
         "job": "chain", "settings": {"price_book": "apiyi"}},
        _line("sent", "base"),
        _line("result", "base", "refused", error="no image: finishReason IMAGE_SAFETY"),
        _line("result", "edit", "blocked",
              error="not sent: it uses the output of item 'base', which ended refused"),
    ]  # fmt: skip
    ledger = tmp_path / "ledger.jsonl"
    ledger.write_text("".join(json.dumps(record) + "\n" for record in records))
    report = json.loads(cli("report", str(ledger), "--format", "json").stdout)
    assert report["outcomes"] == {"refused": 1, "blocked": 1}
    assert report["spent_usd"] == 0.09
    assert report["possibly_spent_usd"] == 0.0
    assert report["runs"][0]["requests"] == 1
    blocked = next(entry for entry in report["failures"] if entry["id"] == "edit")
    assert blocked["outcome"] == "blocked" and "item 'base'" in blocked["error"]
    table = cli("report", str(ledger)).stdout
    assert "blocked" in table
