"""Shards as rules and as folders (contract section 12): which shard an item is in, what
`--shard` reads from a scheduler, a shard's budget, and a folder of ledgers folded into one state
that never lets an item be paid for twice."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from batchbanana.errors import UserError
from batchbanana.ledger.fold import ELSEWHERE, fold
from batchbanana.ledger.folder import (
    FolderMoney,
    expand_ledger_args,
    held_by_another,
    job_ledgers,
    read_folder,
)
from batchbanana.ledger.owed import decide
from batchbanana.ledger.writer import LedgerWriter
from batchbanana.plan.build import load_job
from batchbanana.rules.shards import (
    Shard,
    parse_shard,
    shard_budget_usd,
    shard_from_environment,
    shard_of,
)
from tests.conftest import CliResult

Writer = Callable[..., Path]
Cli = Callable[..., CliResult]
FP = "sha256:" + "a" * 64
FP2 = "sha256:" + "b" * 64


# -- which shard ----------------------------------------------------------------------------------
def test_an_item_is_in_the_shard_its_id_hashes_to() -> None:
    """The shard is sha256 of the id, read as an integer, mod the count."""
    for item_id in ("a", "otter-dogs", "hero-espresso-cup-3-pro-preview-1K-seed1", "日本"):
        digest = int(hashlib.sha256(item_id.encode()).hexdigest(), 16)
        for count in (1, 2, 3, 7, 64):
            assert shard_of(item_id, count) == digest % count
            assert Shard(digest % count, count).holds(item_id)


def test_shards_are_about_even_over_many_ids() -> None:
    """3,000 ids fall about evenly into 3 shards."""
    counts = [0, 0, 0]
    for number in range(3000):
        counts[shard_of(f"item-{number}", 3)] += 1
    assert all(900 < count < 1100 for count in counts), counts


def test_inserting_an_item_moves_no_other(write_manifest: Writer) -> None:
    """Adding an item (derived ids and given ones) leaves every other item in its shard."""
    items: list[dict[str, Any]] = [{"prompt": f"a cat number {n}"} for n in range(40)]
    items += [{"id": f"given-{n}", "prompt": "x"} for n in range(10)]
    before = load_job(write_manifest(items, endpoint="simulate", name="a.yaml"))
    after = load_job(
        write_manifest([{"prompt": "a new dog"}, *items], endpoint="simulate", name="b.yaml")
    )
    for count in (2, 5):
        for index in range(count):
            old = {item.id for item in before.items if Shard(index, count).holds(item.id)}
            new = {item.id for item in after.items if Shard(index, count).holds(item.id)}
            assert old <= new and len(new - old) <= 1
    assert sum(1 for k in range(5) for item in before.items if Shard(k, 5).holds(item.id)) == 50


# -- --shard K/N and auto -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "environ", "expected"),
    [
        pytest.param("0/4", {}, Shard(0, 4), id="first-of-4"),
        pytest.param(" 3/4 ", {}, Shard(3, 4), id="spaces"),
        pytest.param("0/1", {}, Shard(0, 1), id="one-shard"),
        pytest.param(
            "auto", {"JOB_COMPLETION_INDEX": "2", "BATCHBANANA_SHARDS": "3"}, Shard(2, 3),
            id="kubernetes",
        ),
        pytest.param(
            "AUTO", {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "5"}, Shard(4, 5),
            id="slurm",
        ),
        pytest.param(
            "auto",
            {"SLURM_ARRAY_TASK_ID": "8", "SLURM_ARRAY_TASK_COUNT": "8",
             "SLURM_ARRAY_TASK_MIN": "1"},
            Shard(7, 8),
            id="slurm-from-1",
        ),
        pytest.param(
            "auto",
            {"SLURM_ARRAY_TASK_ID": "6", "SLURM_ARRAY_TASK_COUNT": "4",
             "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_STEP": "2"},
            Shard(3, 4),
            id="slurm-step-2",
        ),
        pytest.param(
            "auto",
            {"JOB_COMPLETION_INDEX": "1", "BATCHBANANA_SHARDS": "2",
             "SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "9"},
            Shard(1, 2),
            id="kubernetes-first",
        ),
    ],
)  # fmt: skip
def test_shard_option_reads_k_of_n_or_the_schedulers_variables(
    text: str, environ: dict[str, str], expected: Shard
) -> None:
    """--shard K/N as written, or auto from an Indexed Job or a Slurm array."""
    assert parse_shard(text, environ) == expected


@pytest.mark.parametrize(
    ("text", "environ", "says"),
    [
        pytest.param("4/4", {}, "numbered 0 to 3", id="k-too-big"),
        pytest.param("1/0", {}, "1 to", id="no-shards"),
        pytest.param("a/b", {}, "is not K/N", id="not-numbers"),
        pytest.param("2", {}, "is not K/N", id="no-slash"),
        pytest.param("-1/3", {}, "is not K/N", id="negative"),
        pytest.param("auto", {}, "HINT: in a Kubernetes Indexed Job", id="auto-finds-nothing"),
        pytest.param(
            "auto", {"JOB_COMPLETION_INDEX": "0"}, "BATCHBANANA_SHARDS is not", id="k8s-no-count"
        ),
        pytest.param(
            "auto", {"JOB_COMPLETION_INDEX": "x", "BATCHBANANA_SHARDS": "2"}, "not an integer",
            id="k8s-garbage",
        ),
        pytest.param(
            "auto", {"JOB_COMPLETION_INDEX": "3", "BATCHBANANA_SHARDS": "3"}, "does not exist",
            id="k8s-index-too-big",
        ),
        pytest.param(
            "auto", {"SLURM_ARRAY_TASK_ID": "7"}, "SLURM_ARRAY_TASK_COUNT", id="slurm-no-count"
        ),
        pytest.param(
            "auto", {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_COUNT": "3"}, "--array=0-2",
            id="slurm-list-not-a-range",
        ),
    ],
)  # fmt: skip
def test_a_bad_shard_is_one_line_with_a_hint(text: str, environ: dict[str, str], says: str) -> None:
    """A shard that cannot be meant is refused in one line saying what to do."""
    with pytest.raises(UserError) as caught:
        parse_shard(text, environ)
    assert len(caught.value.problems) == 1 and "\n" not in caught.value.problems[0]
    assert says in caught.value.problems[0]


def test_slurm_ids_past_the_count_name_the_array_to_submit() -> None:
    """A task id outside 0..N-1 with no SLURM_ARRAY_TASK_MIN says how to submit the array."""
    with pytest.raises(UserError, match=r"--array=0-3"):
        shard_from_environment(
            {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "4",
             "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_STEP": "2"}
        )  # fmt: skip


# -- the budget -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("budget", "shard", "by_shard", "others", "expected"),
    [
        pytest.param(30.0, Shard(0, 3), {}, 0.0, 10.0, id="fresh-job-even-split"),
        pytest.param(30.0, Shard(1, 3), {0: 10.0, 1: 4.0}, 0.0, 10.0, id="own-spending-counts-own"),
        pytest.param(30.0, Shard(2, 3), {}, 12.0, 6.0, id="unsharded-runs-come-off-first"),
        pytest.param(30.0, Shard(1, 3), {0: 14.0}, 0.0, 6.0, id="another-shards-excess"),
        pytest.param(10.0, Shard(0, 2), {}, 25.0, 0.0, id="nothing-left"),
    ],
)  # fmt: skip
def test_a_shards_budget_keeps_the_folder_within_the_jobs(
    budget: float, shard: Shard, by_shard: dict[int, float], others: float, expected: float
) -> None:
    """An even share of what the other ledgers left, less other shards' overspending."""
    assert shard_budget_usd(budget, shard, by_shard, others) == pytest.approx(expected)


def test_shares_of_side_by_side_shards_never_pass_the_budget() -> None:
    """Whatever earlier runs spent, shards that each spend their whole share stay within it."""
    for spent in ([0, 0, 0], [14, 0, 0], [9, 9, 9], [20, 1, 0]):
        for others in (0.0, 5.0):
            shares = [
                shard_budget_usd(30.0, Shard(k, 3), dict(enumerate(spent)), others)
                for k in range(3)
            ]
            final = [max(s, share) for s, share in zip(spent, shares, strict=True)]
            assert sum(final) + others <= max(30.0, sum(spent) + others) + 1e-9


# -- a folder of ledgers --------------------------------------------------------------------------
def _sent(item: str, attempt: int, fingerprint: str = FP, price: float = 0.09) -> dict[str, Any]:
    return {"event": "sent", "item": item, "attempt": attempt, "fingerprint": fingerprint,
            "price_usd": price, "spec": {"prompt": item}}  # fmt: skip


def _result(
    item: str, attempt: int, outcome: str, billed: str, fingerprint: str = FP, price: float = 0.09
) -> dict[str, Any]:
    return {"event": "result", "item": item, "attempt": attempt, "fingerprint": fingerprint,
            "outcome": outcome, "billed": billed, "price_usd": price, "spec": {"prompt": item},
            "output": f"/out/{item}.png" if outcome == "ok" else None}  # fmt: skip


def _ledger(path: Path, *records: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
    return path


def _job(day: int) -> dict[str, Any]:
    """A run's `job` line, started on day `day` of January 2025."""
    return {"event": "job", "ts": f"2025-01-{day:02d}T00:00:00.000Z", "settings": {}}


def _folded(own: Path, keep: Any = None) -> Any:
    folded = fold(own, job_ledgers(own), [], keep)
    return folded


def test_ok_in_another_ledger_is_done(tmp_path: Path) -> None:
    """An item over budget in a shard's run, then ok in a later unsharded run, is done for the
    shard's next run, although its own ledger, read alone, would owe it."""
    own = _ledger(tmp_path / "ledger.shard-0-of-2.jsonl",
                  _job(1), _result("x", 1, "over_budget", "no"))  # fmt: skip
    _ledger(tmp_path / "ledger.jsonl", _job(2), _sent("x", 2), _result("x", 2, "ok", "yes"))
    history = _folded(own).state.items["x"]
    assert history.attempts == 2 and history.current().outcome == "ok"
    assert history.output == "/out/x.png"


def test_lines_fold_run_by_run_whatever_the_files_order(tmp_path: Path) -> None:
    """Runs are folded in the order they started, not in the files' order: the later run's
    outcome is the item's latest, wherever it was written."""
    _ledger(tmp_path / "ledger.jsonl", _job(1), _sent("x", 1), _result("x", 1, "refused", "yes"))
    own = _ledger(tmp_path / "ledger.shard-0-of-2.jsonl", _job(2),
                  _sent("x", 2), _result("x", 2, "ok", "yes"))  # fmt: skip
    assert _folded(own).state.items["x"].current().outcome == "ok"
    _ledger(tmp_path / "ledger.jsonl", _job(3), _result("x", 3, "blocked", "no"))  # edge case
    assert _folded(own).state.items["x"].current().outcome == "blocked"


def test_billed_in_another_ledger_is_left_for_retry(tmp_path: Path) -> None:
    """A refusal recorded by another shard count is never sent again by `run` here; the next
    attempt number follows the highest anywhere."""
    own = _ledger(tmp_path / "ledger.jsonl",
                  _job(1), _sent("x", 1), _result("x", 1, "rate_limited", "no"))  # fmt: skip
    _ledger(tmp_path / "ledger.shard-1-of-3.jsonl",
            _job(2), _sent("x", 4), _result("x", 4, "refused", "yes"))  # fmt: skip
    state = _folded(own).state
    assert state.items["x"].attempts == 4
    assert state.items["x"].current().outcome == "refused"


def test_a_request_in_flight_elsewhere_is_never_sent_nor_closed_here(tmp_path: Path) -> None:
    """Another ledger's `sent` line without a result may be a live process's request: it is
    neither owed nor closed as interrupted by a process that does not hold that ledger; its
    price still counts as possibly spent, and its batch is not ours to re-attach."""
    _ledger(tmp_path / "ledger.shard-0-of-3.jsonl", _job(1), _sent("x", 1),
            {**_sent("z", 1), "batch_key": "bb-k"},
            {"event": "batch", "batch_key": "bb-k", "name": "batches/1"})  # fmt: skip
    own = _ledger(tmp_path / "ledger.jsonl", _job(2), _sent("y", 1))  # our own crash
    folded = _folded(own)
    state = folded.state
    assert state.items["x"].current().outcome == ELSEWHERE
    assert state.items["z"].current().outcome == ELSEWHERE
    assert [entry.item for entry in state.in_flight()] == ["y"]  # only ours is closed
    assert state.dangling() == [("y", FP, 1, 0.09)] and not state.open_batches()
    assert state.possibly_spent_usd == pytest.approx(0.27)
    (other,) = folded.others.values()
    assert other.committed_usd == pytest.approx(0.18) and folded.own.committed_usd == 0.09


def test_the_latest_fingerprint_comes_from_the_latest_run(tmp_path: Path) -> None:
    """An item edited between runs of different ledgers takes its latest version from the run
    that wrote it last; its earlier version's ok stays known."""
    _ledger(tmp_path / "ledger.jsonl", _job(1), _sent("x", 1), _result("x", 1, "ok", "yes"))
    _ledger(tmp_path / "ledger.shard-0-of-2.jsonl",
            _job(2), _sent("x", 2, FP2), _result("x", 2, "timeout", "yes", FP2))  # fmt: skip
    state = read_folder(tmp_path / "ledger.jsonl", [])
    assert state.items["x"].fingerprint == FP2
    assert state.items["x"].by_fingerprint[FP].outcome == "ok"
    assert state.items["x"].current().outcome == "timeout"
    assert state.spent_usd == pytest.approx(0.18)


def test_decide_over_a_folder(tmp_path: Path, write_manifest: Writer) -> None:
    """What `run` owes over a folder: done anywhere is done, in flight elsewhere is not sent."""
    manifest = write_manifest(
        [{"id": name, "prompt": name} for name in ("a", "b", "c")], endpoint="simulate"
    )
    job = load_job(manifest)
    prints = {item.id: item.fingerprint for item in job.items}
    folder = job.ledger_path.parent
    _ledger(folder / "ledger.shard-0-of-2.jsonl",
            _sent("a", 1, prints["a"]), _result("a", 1, "ok", "yes", prints["a"]),
            _sent("b", 1, prints["b"]))  # fmt: skip
    decision = decide(job.items, read_folder(job.ledger_path, []))
    assert [item.id for item in decision.done] == ["a"]
    assert [(item.id, why) for item, why in decision.left_for_retry] == [("b", ELSEWHERE)]
    assert [item.id for item in decision.to_send] == ["c"]


def test_report_arguments_take_folders_and_globs(tmp_path: Path) -> None:
    """A folder is every ledger*.jsonl in it; a quoted glob what it matches; else one line."""
    first = _ledger(tmp_path / "ledger.shard-0-of-2.jsonl", _sent("x", 1))
    second = _ledger(tmp_path / "ledger.shard-1-of-2.jsonl", _sent("y", 1))
    (tmp_path / "notes.jsonl").write_text("{}\n")
    assert expand_ledger_args([tmp_path]) == [first, second]
    assert expand_ledger_args([tmp_path / "ledger.shard-*.jsonl"]) == [first, second]
    for missing in (tmp_path / "nothing", tmp_path / "ledger.x*.jsonl", tmp_path / "out"):
        if missing.name == "out":
            missing.mkdir()
        with pytest.raises(UserError):
            expand_ledger_args([missing])


def test_a_lock_is_seen_by_a_probe(tmp_path: Path) -> None:
    """A ledger held by a writer is seen as held; once released, it is not."""
    writer = LedgerWriter(tmp_path / "ledger.jsonl")
    writer.open()
    try:
        assert held_by_another(tmp_path / "ledger.jsonl")
    finally:
        writer.close()
    assert not held_by_another(tmp_path / "ledger.jsonl")
    assert not held_by_another(tmp_path / "missing.jsonl")


def test_a_shard_holds_only_the_items_it_needs_but_counts_all_money(tmp_path: Path) -> None:
    """Folding with `keep` leaves other shards' items out of the state (a shard of a
    million-item job holds its share), while the money of every ledger is still tallied."""
    _ledger(tmp_path / "ledger.jsonl", _job(1),
            _sent("mine", 1), _result("mine", 1, "ok", "yes"),
            _sent("theirs", 1), _result("theirs", 1, "ok", "yes"))  # fmt: skip
    own = tmp_path / "ledger.shard-0-of-2.jsonl"
    folded = _folded(own, keep={"mine"}.__contains__)
    assert set(folded.state.items) == {"mine"}
    money = FolderMoney.of(own, 0.0, folded.others)
    assert money.spent_usd == pytest.approx(0.18) and money.others_usd == pytest.approx(0.18)
