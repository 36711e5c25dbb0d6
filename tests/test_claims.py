"""`report --claims` (contract section 13): the rule that decides which attempts qualify for the
provider's failed-generation refund, as a table over every outcome; and the list, its sum and its
formats, over a ledger made by real runs on the simulator and over hand-built ledgers."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from batchbanana.ledger.records import JobLine, LedgerLine, ResultLine, SentLine
from batchbanana.rules.claims import qualifies
from batchbanana.rules.outcomes import Billed, Outcome, billed
from batchbanana.simulator import RunningSimulator
from tests.conftest import CliResult, results

Cli = Callable[..., CliResult]
Writer = Callable[..., Path]
PRO = "gemini-3-pro-image-preview"
START = datetime(2026, 3, 1, 22, 0, tzinfo=UTC)

# Every outcome with the billing the ledger gives it: whether it qualifies.
QUALIFYING = {
    Outcome.OK: False,  # delivered
    Outcome.REFUSED: False,  # the input
    Outcome.NO_IMAGE: True,  # without a safety reason (below)
    Outcome.BAD_RESPONSE: True,
    Outcome.TIMEOUT: True,
    Outcome.WRITE_ERROR: False,  # our disk
    Outcome.RATE_LIMITED: False,  # not billed
    Outcome.UNAVAILABLE: False,
    Outcome.CONNECT_ERROR: False,
    Outcome.HTTP_ERROR: False,
    Outcome.SERVER_ERROR: True,  # billed unknown
    Outcome.INTERRUPTED: False,  # billed unknown, but our process stopped it
    Outcome.OVER_BUDGET: False,
    Outcome.BLOCKED: False,
}


def test_the_table_names_every_outcome() -> None:
    """No outcome is left to chance: the table below covers them all."""
    assert set(QUALIFYING) == set(Outcome)


@pytest.mark.parametrize(
    ("outcome", "expected"), [pytest.param(o, q, id=o.value) for o, q in QUALIFYING.items()]
)
def test_which_outcomes_qualify_as_billed(outcome: Outcome, expected: bool) -> None:
    """With the billing its outcome has, an attempt qualifies only for the contract's four."""
    assert qualifies(outcome.value, billed(outcome).value, None) is expected


@pytest.mark.parametrize("outcome", [o for o, q in QUALIFYING.items() if q])
@pytest.mark.parametrize("mark", list(Billed))
def test_only_billed_or_possibly_billed_attempts_qualify(outcome: Outcome, mark: Billed) -> None:
    """A qualifying outcome marked not billed (a hand edit, say) costs nothing to claim back."""
    assert qualifies(outcome.value, mark.value, None) is (mark is not Billed.NO)


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        pytest.param(None, True, id="no-reason"),
        pytest.param("STOP", True, id="stop"),
        pytest.param("NO_IMAGE", True, id="no-image"),
        pytest.param("IMAGE_OTHER", True, id="image-other"),
        pytest.param("OTHER", True, id="other"),
        pytest.param("MAX_TOKENS", True, id="max-tokens"),
        pytest.param("IMAGE_SAFETY", False, id="image-safety"),
        pytest.param("SAFETY", False, id="safety"),
        pytest.param("PROHIBITED_CONTENT", False, id="prohibited"),
        pytest.param("IMAGE_PROHIBITED_CONTENT", False, id="image-prohibited"),
        pytest.param("BLOCKLIST", False, id="blocklist"),
        pytest.param("SPII", False, id="spii"),
        pytest.param("IMAGE_RECITATION", False, id="image-recitation"),
        pytest.param("RECITATION", False, id="recitation"),
        pytest.param("LANGUAGE", False, id="language"),
        pytest.param("image_safety", False, id="lowercase"),
    ],
)
def test_a_no_image_answer_qualifies_unless_the_input_caused_it(
    reason: str | None, expected: bool
) -> None:
    """No image with a safety or content-policy finish reason is the input's doing."""
    assert qualifies("no_image", "yes", reason) is expected
    assert qualifies("timeout", "yes", reason) is True  # the reason matters for no_image only


def test_an_outcome_this_version_does_not_know_never_qualifies() -> None:
    """A newer version's outcome, or an unreadable one, is never claimed."""
    assert not qualifies("unknown", "unknown", None)
    assert not qualifies("in_batch", "unknown", None)


# --- through real runs -------------------------------------------------------------------------


def test_claims_over_a_real_run_list_exactly_the_qualifying_attempts(
    cli: Cli, write_manifest: Writer, simulator: RunningSimulator, tmp_path: Path
) -> None:
    """A night with oks, a refusal, a block, an answer without an image, a timeout, a 500, a cut
    answer, a dropped connection and a free 429: the claims are the five billed provider
    failures, with their sum, in every format."""
    items = [
        {"id": "fine", "prompt": "a fox"},
        {"id": "also-fine", "prompt": "a hare [sim:429x1]"},
        {"id": "refused", "prompt": "p [sim:refuse]"},
        {"id": "blocked", "prompt": "p [sim:block]"},
        {"id": "empty", "prompt": "p [sim:no_image]"},
        {"id": "slow", "prompt": "p [sim:slow:3]"},
        {"id": "five-hundred", "prompt": "p [sim:500]"},
        {"id": "garbled", "prompt": "p [sim:bad_json]"},
        {"id": "dropped", "prompt": "p [sim:drop]"},
    ]
    manifest = write_manifest(items, endpoint=simulator.url, timeouts={"1K": 0.5}, concurrency=1)
    assert cli("run", str(manifest), "--no-progress").exit_code == 1
    ledger = tmp_path / "out" / "ledger.jsonl"
    outcomes = {line["item"]: line["outcome"] for line in results(ledger)}
    assert outcomes == {
        "fine": "ok", "also-fine": "ok", "refused": "refused", "blocked": "refused",
        "empty": "no_image", "slow": "timeout", "five-hundred": "server_error",
        "garbled": "bad_response", "dropped": "server_error",
    }  # fmt: skip

    shown = cli("report", str(ledger), "--claims", "--format", "json")
    assert shown.exit_code == 0, shown.stderr
    data = json.loads(shown.stdout)
    expected = {"empty", "slow", "five-hundred", "garbled", "dropped"}
    assert {claim["item"] for claim in data["claims"]} == expected
    assert data["count"] == 5 and data["total_usd"] == pytest.approx(5 * 0.09)
    by_item = {claim["item"]: claim for claim in data["claims"]}
    assert by_item["empty"]["finish_reason"] == "STOP" and by_item["empty"]["response_id"]
    assert by_item["empty"]["http_status"] == 200 and by_item["five-hundred"]["http_status"] == 500
    for claim in data["claims"]:
        assert {"item", "attempt", "ts", "model", "image_size", "outcome", "price_usd",
                "http_status", "finish_reason", "response_id"} <= set(claim)  # fmt: skip
        assert claim["attempt"] == 1 and claim["model"] == PRO and claim["image_size"] == "1K"
        assert claim["ts"].endswith("Z")
    assert [claim["ts"] for claim in data["claims"]] == sorted(c["ts"] for c in data["claims"])

    table = cli("report", str(ledger), "--claims")
    assert table.exit_code == 0
    assert table.stdout.startswith("Refund claims: 5 attempts to claim, $0.45")
    assert "Total to claim: $0.45" in table.stdout and "API易" in table.stdout
    assert all(item in table.stdout for item in expected)
    rows = table.stdout.splitlines()[2:7]
    assert len(rows) == 5 and not any(" refused " in row or " ok " in row for row in rows)

    sheet = cli("report", str(ledger), "--claims", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(sheet.stdout)))
    assert {row["item"] for row in rows} == expected
    assert sum(float(row["price_usd"]) for row in rows) == pytest.approx(0.45)


def test_claims_refuse_the_html_format(cli: Cli, tmp_path: Path) -> None:
    """The claim list has no page: exit 2 with a hint, nothing written."""
    ledger = _write(tmp_path / "l.jsonl", [_job()])
    shown = cli("report", str(ledger), "--claims", "--format", "html")
    assert shown.exit_code == 2 and "HINT:" in shown.stderr and shown.stdout == ""


# --- over hand-built ledgers -------------------------------------------------------------------


def _ts(seconds: float) -> str:
    return (START + timedelta(seconds=seconds)).isoformat(timespec="milliseconds")[:-6] + "Z"


def _job() -> JobLine:
    return JobLine(
        ts=_ts(0), run_id="r", command="run", job="night", manifest="/jobs/night.yaml",
        manifest_sha256=None, ledger=None, version="test", settings={"price_book": "apiyi"},
    )  # fmt: skip


def _spec(item: str) -> dict[str, Any]:
    return {"prompt": f"prompt of {item}", "model": PRO, "image_size": "2K"}


def _result(item: str, at: float, outcome: Outcome, **known: Any) -> ResultLine:
    return ResultLine.for_attempt(
        item, 1, f"sha256:{item}", outcome, 0.09, _spec(item), ts=_ts(at), **known
    )


def _write(path: Path, lines: list[LedgerLine | dict[str, Any]]) -> Path:
    path.write_text(
        "".join(
            json.dumps(line if isinstance(line, dict) else line.to_json()) + "\n" for line in lines
        )
    )
    return path


def test_claims_over_several_hand_built_ledgers(cli: Cli, tmp_path: Path) -> None:
    """The exact cases: a no_image with a content-policy reason, a write error, an interrupted
    request, a hand-marked unbilled timeout and an unreadable billing mark, across two ledgers
    of the job, listed oldest first."""
    first = _write(
        tmp_path / "ledger.jsonl",
        [
            _job(),
            _result("ok", 1, Outcome.OK),
            _result(
                "no-image",
                2,
                Outcome.NO_IMAGE,
                finish_reason="NO_IMAGE",
                http_status=200,
                response_id="resp-1",
            ),
            _result("recitation", 3, Outcome.NO_IMAGE, finish_reason="IMAGE_RECITATION"),
            _result("refused", 4, Outcome.REFUSED, finish_reason="IMAGE_SAFETY"),
            _result("disk-full", 5, Outcome.WRITE_ERROR),
            _result("stopped", 6, Outcome.INTERRUPTED),
            SentLine(
                ts=_ts(7),
                item="in-flight",
                attempt=1,
                fingerprint="sha256:f",
                price_usd=0.09,
                model=PRO,
                image_size="2K",
                spec=_spec("in-flight"),
            ),
            _result("free", 8, Outcome.HTTP_ERROR, http_status=400),
            {**_result("hand-edited", 9, Outcome.TIMEOUT).to_json(), "billed": "no"},
            {**_result("unreadable", 10, Outcome.BAD_RESPONSE).to_json(), "billed": "maybe"},
        ],
    )
    second = _write(
        tmp_path / "ledger.shard-1-of-2.jsonl",
        [_job(), _result("early-timeout", 0.5, Outcome.TIMEOUT, http_status=None)],
    )
    shown = cli("report", str(first), str(second), "--claims", "--format", "json")
    assert shown.exit_code == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert [claim["item"] for claim in data["claims"]] == [
        "early-timeout",
        "no-image",
        "unreadable",
    ]
    assert data["count"] == 3 and data["total_usd"] == pytest.approx(0.27)
    assert data["claims"][1]["response_id"] == "resp-1"
    assert data["claims"][0]["ledger"] == str(second) and data["claims"][0]["job"] == "night"
    empty = cli("report", str(_write(tmp_path / "none.jsonl", [_job()])), "--claims")
    assert empty.stdout.startswith("Refund claims: 0 attempts to claim, $0.00")
