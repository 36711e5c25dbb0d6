"""The compact replay (ledger/state.py) against the plain one it replaced: for any sequence of
records, the same per-item histories, money, requests in flight and batches; decide() reading
those columns against decide() item by item; and the fast line reader against json.loads, line
for line."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from batchbanana.ledger.owed import decide
from batchbanana.ledger.records import SentLine, parse_line
from batchbanana.ledger.replay import AttemptState, _loaded, iter_records, replay
from batchbanana.plan.job import WorkItem
from batchbanana.plan.workitems import WorkItems
from batchbanana.rules.outcomes import Billed, Outcome
from batchbanana.rules.pricing import PriceRule

# -- the replay as it was before the state was held compactly (the reference) -----------------


@dataclass
class _History:
    attempts: int = 0
    fingerprint: str | None = None
    spec: dict[str, Any] | None = None
    by_fingerprint: dict[str, AttemptState] = field(default_factory=dict)
    ever_sent: bool = False
    output: str | None = None


def _price(value: float | None) -> float:
    return value if value is not None and value >= 0 else 0.0


def reference(records: Iterable[Mapping[str, Any]]) -> tuple[dict[str, _History], float, float]:
    items: dict[str, _History] = {}
    spent = possibly = 0.0
    for record in records:
        line = parse_line(record)
        if line is None or not hasattr(line, "fingerprint") or line.fingerprint is None:
            continue
        history = items.setdefault(line.item, _History())
        if line.attempt is not None:
            history.attempts = max(history.attempts, line.attempt)
        history.fingerprint = line.fingerprint
        if line.spec is not None:
            history.spec = line.spec
        pair = history.by_fingerprint.setdefault(line.fingerprint, AttemptState())
        if isinstance(line, SentLine):
            history.ever_sent = True
            pair.outcome = None
            pair.billed = None
            pair.in_flight_attempt = line.attempt if line.attempt is not None else history.attempts
            pair.in_flight_price_usd = _price(line.price_usd)
            pair.in_batch = line.batch_key
        else:
            if pair.in_flight_attempt is not None and pair.in_flight_attempt == line.attempt:
                pair.in_flight_attempt = None
                pair.in_batch = None
            pair.outcome = line.outcome
            pair.billed = line.billed
            if pair.outcome == Outcome.OK:
                history.spec = None
                history.output = line.output
            if pair.billed == Billed.YES:
                spent += _price(line.price_usd)
            elif pair.billed == Billed.UNKNOWN:
                possibly += _price(line.price_usd)
    for history in items.values():
        for pair in history.by_fingerprint.values():
            if pair.in_flight_attempt is not None:
                possibly += pair.in_flight_price_usd
    return items, round(spent, 6), round(possibly, 6)


# -- records ------------------------------------------------------------------------------------

# three fingerprints of the usual form (held as digests), and others (held as they are)
_PRINTS = [*(f"sha256:{digit * 64}" for digit in "0a9"), "fp", "", "SHA256:" + "ab" * 32]
_OUTCOMES = ["ok", "refused", "timeout", "interrupted", "rate_limited", "", 7, None, "new_kind"]

_record = st.fixed_dictionaries(
    {
        "event": st.sampled_from(["sent", "result", "result", "job", "batch", "other"]),
        "item": st.one_of(st.sampled_from(["a", "b", "out", "x.y"]), st.just(3)),
        "attempt": st.one_of(
            st.integers(-1, 5), st.none(), st.sampled_from([2.0, "1", 2**62, 2**70, 2**64])
        ),
        "fingerprint": st.one_of(st.sampled_from(_PRINTS), st.none()),
    },
    optional={
        "outcome": st.sampled_from(_OUTCOMES),
        "billed": st.sampled_from(["yes", "no", "unknown", "maybe", None, 1]),
        "price_usd": st.one_of(st.sampled_from([0.02, 0.1, -1.0, 0]), st.none(), st.just("1")),
        "spec": st.one_of(st.fixed_dictionaries({"prompt": st.sampled_from("pq")}), st.none()),
        "output": st.sampled_from(["/o/a.png", "/o/b.png", "/o/x.y.jpeg", "/else/z.png", None]),
        "batch_key": st.one_of(st.sampled_from(["k1", "k2"]), st.none()),
        "run_id": st.just("r-1"),
    },
)


def _histories(state_items: Mapping[str, Any]) -> dict[str, tuple[Any, ...]]:
    return {
        item: (
            history.attempts,
            history.fingerprint,
            history.spec,
            {key: _pair(pair) for key, pair in history.by_fingerprint.items()},
            list(history.by_fingerprint),
            history.ever_sent,
            history.output,
        )
        for item, history in state_items.items()
    }


def _pair(pair: AttemptState) -> tuple[Any, ...]:
    billed = None if pair.billed is None else str(pair.billed)
    return (pair.outcome, billed, pair.in_flight_attempt, pair.in_flight_price_usd, pair.in_batch)


@settings(max_examples=400, deadline=None)
@given(st.lists(_record, max_size=30))
def test_the_compact_replay_agrees_with_the_plain_one(records: list[dict[str, Any]]) -> None:
    state = replay(records)
    items, spent, possibly = reference(records)
    assert _histories(state.items) == _histories(items)
    assert list(state.items) == list(items)
    assert (state.spent_usd, state.possibly_spent_usd) == (spent, possibly)
    expected_flights = [
        (item, print_id, pair.in_flight_attempt, pair.in_flight_price_usd, pair.in_batch)
        for item, history in items.items()
        for print_id, pair in history.by_fingerprint.items()
        if pair.in_flight_attempt is not None
    ]
    flights = [
        (entry.item, entry.fingerprint, entry.attempt, entry.price_usd, entry.batch_key)
        for entry in state.in_flight()
    ]
    assert flights == expected_flights
    for item, history in items.items():
        assert state.attempts_of(item) == history.attempts
        row = state.row_of(item)
        assert row is not None
        for print_id, pair in history.by_fingerprint.items():
            found = state.pair_at(row, print_id)
            assert found is not None and _pair(found) == _pair(pair)


@settings(max_examples=200, deadline=None)
@given(st.lists(_record, min_size=1, max_size=12), st.data())
def test_closing_a_request_in_flight_changes_only_that_pair(
    records: list[dict[str, Any]], data: st.DataObject
) -> None:
    state = replay(records)
    dangling = state.dangling()
    if not dangling:
        return
    item, print_id, _, _ = data.draw(st.sampled_from(dangling))
    before = _histories(state.items)
    state.close_in_flight(item, print_id, Outcome.INTERRUPTED.value, Billed.UNKNOWN)
    after = _histories(state.items)
    closed = after[item][3][print_id]
    assert closed[:3] == ("interrupted", "unknown", None)
    assert closed[3] == before[item][3][print_id][3]
    assert (item, print_id) not in {(entry[0], entry[1]) for entry in state.dangling()}
    before[item][3][print_id] = closed
    assert after == before


_JSONISH = st.one_of(
    st.binary(max_size=40),
    st.text(max_size=40).map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8)),
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
        ),
        max_leaves=8,
    ).map(lambda value: json.dumps({"event": "x", "v": value}).encode()),
)


@settings(max_examples=800, deadline=None)
@given(_JSONISH, st.integers(0, 60), st.sampled_from([b"", b" ", b"\n", b" \t\r\n", b"x", b"}"]))
def test_the_fast_line_reader_reads_what_json_loads_reads(
    line: bytes, cut: int, tail: bytes
) -> None:
    """Whole, cut, or followed by blanks or junk: a line is read exactly when json.loads reads
    it, and as the same value."""
    raw = line[: cut or None] + tail
    try:
        expected: Any = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        expected = type(exc)
    try:
        found: Any = _loaded(raw)
    except (ValueError, RecursionError) as exc:
        found = type(exc)
    if isinstance(expected, type):
        assert isinstance(found, type)
    else:
        assert json.dumps(found) == json.dumps(expected)  # NaN included


def test_torn_and_garbage_lines_are_skipped_with_their_numbers(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    lines = [b'{"event": "job"}', b'{"event": "sent", "item": "a"', b"\xff{}", b'{"event": "x"} {}']
    path.write_bytes(b"\n".join(lines) + b'\n{"event": "result", "item"')
    warnings: list[str] = []
    assert list(iter_records(path, warnings)) == [{"event": "job"}]
    assert [warning.split(":", 2)[1] for warning in warnings] == ["2", "3", "4", "5"]
    assert warnings[-1].endswith("torn (cut off mid-write)")


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_record, max_size=25),
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "out", "x.y", "new"]), st.sampled_from(_PRINTS)),
        max_size=6,
        unique_by=lambda pair: pair[0],
    ),
)
def test_deciding_from_columns_agrees_with_deciding_item_by_item(
    records: list[dict[str, Any]], wanted: list[tuple[str, str]]
) -> None:
    rule = PriceRule(per_request_usd=0.02)
    items = WorkItems(
        WorkItem(item_id, "p", (), "m", "1K", None, None, ("IMAGE",), rule, fingerprint=print_id)
        for item_id, print_id in wanted
    )
    state = replay(records)
    fast, slow = decide(items, state), decide(list(items), state)
    for name in ("to_send", "done", "in_batch"):
        assert list(getattr(fast, name)) == list(getattr(slow, name)), name
    assert fast.left_for_retry == slow.left_for_retry
