"""What the ledger says is still owed: which items `run` sends, which are done, and which are left
for `retry` (never attempted or not billed are sent; billed or unknown are never paid twice).

An item that uses another item's output (`item:<id>`, plan/chains.py) is judged by its real
fingerprint when every item it uses is ok in the ledger (their saved outputs are read for it).
Otherwise it is owed to the run, which sends it once the items it uses end ok, or records it as
`blocked` (billed no) when one does not, or cannot use an output (the run says why): `blocked`
is never billed, so such an item stays owed to the next `run`.
"""

from __future__ import annotations

import contextlib
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field

from batchbanana.ledger.fold import ELSEWHERE
from batchbanana.ledger.replay import LedgerState
from batchbanana.plan.chains import bases, chain_order, resolve, uses
from batchbanana.plan.inputs import ImageInput, ImageProblem
from batchbanana.plan.job import WorkItem
from batchbanana.plan.workitems import WorkItems, shapes_of
from batchbanana.rules.outcomes import Billed, Outcome

_SEND = "send"
_DONE = "done"
_IN_BATCH = "in_batch"  # sent in a remote batch not collected yet


@dataclass(slots=True)
class Decision:
    """What the ledger says about the job's items before a run (the items of a WorkItems are
    built when read: a million done ones take 8 MB)."""

    to_send: Sequence[WorkItem] = field(default_factory=list)
    done: Sequence[WorkItem] = field(default_factory=list)
    left_for_retry: list[tuple[WorkItem, str]] = field(default_factory=list)  # (item, outcome)
    in_batch: Sequence[WorkItem] = field(default_factory=list)  # waiting in a remote batch


def decide(items: Sequence[WorkItem], state: LedgerState) -> Decision:
    """Which items `run` sends: never attempted, or whose latest outcome was not billed; and the
    items that wait for another item's output (sent, or blocked, by the run)."""
    if any(uses(shape.images) for shape, _ in shapes_of(items)):
        items = _judged_chains(items, state)
    elif isinstance(items, WorkItems):
        return _decided(items, state)
    found: dict[str, list[WorkItem]] = {_SEND: [], _IN_BATCH: [], _DONE: []}
    left: list[tuple[WorkItem, str]] = []
    for item in items:
        verdict = _verdict(item, state)
        if verdict in found:
            found[verdict].append(item)  # in_batch: `run` re-attaches to its batch, never resends
        else:
            left.append((item, verdict))
    return Decision(found[_SEND], found[_DONE], left, found[_IN_BATCH])


def _decided(items: WorkItems, state: LedgerState) -> Decision:
    """decide() for a job's WorkItems with no edit chains, reading the columns: an item the
    ledger never named, or ok under its very fingerprint, is judged without building it."""
    unknown, done, others = state.sort_out(items.ids, items.digests, items.odd_indices)
    found: dict[str, array[int]] = {_SEND: unknown, _IN_BATCH: array("q"), _DONE: done}
    left: list[tuple[WorkItem, str]] = []
    for index in others:
        item = items[index]
        verdict = _verdict(item, state)
        if verdict in found:
            found[verdict].append(index)
        else:
            left.append((item, verdict))
    send = found[_SEND]
    if others and unknown:
        send = array("q", sorted(send))  # in the job's order
    return Decision(items.pick(send), items.pick(done), left, items.pick(found[_IN_BATCH]))


def _judged_chains(items: Sequence[WorkItem], state: LedgerState) -> list[WorkItem]:
    """The items, each that uses another's output made ready to be judged by its real
    fingerprint when every item it uses is ok in the ledger (its outputs read now), and left
    with its pending one (judged `send`: the run waits for them, or blocks it) otherwise."""
    judged = {item.id: item for item in items}
    seen: dict[str, ImageInput] = {}

    def ok(base: str) -> bool:
        if base in judged:
            return _verdict(judged[base], state) == _DONE
        row = state.row_of(base)  # not an item of this run: as the ledger left it
        return row is not None and state.latest_pair(row).outcome == Outcome.OK.value

    def output_of(base: str) -> str | None:
        row = state.row_of(base)
        return state.output_at(row) if row is not None else None

    for item in chain_order([item for item in items if item.images and bases(item)]):
        if all(ok(base) for base in bases(item)):
            with contextlib.suppress(ImageProblem):  # the run blocks it and says why
                judged[item.id] = resolve(item, output_of, seen)
    return [judged[item.id] for item in items]


def _verdict(item: WorkItem, state: LedgerState) -> str:
    """send, done, or the latest outcome of an item left for `retry`."""
    if item.images and bases(item):
        return _SEND  # waits in the run for the items whose outputs it uses
    row = state.row_of(item.id)
    pair = state.pair_at(row, item.fingerprint) if row is not None else None
    if pair is None or (pair.outcome is None and pair.in_flight_attempt is None):
        return _SEND
    if pair.in_flight_attempt is not None and pair.in_batch is not None:
        return _IN_BATCH
    if pair.in_flight_attempt is not None:
        return Outcome.INTERRUPTED.value
    if pair.outcome == ELSEWHERE:
        return ELSEWHERE  # in flight in another ledger of the folder: its holder says how it ends
    if pair.outcome == Outcome.OK.value:
        return _DONE
    if pair.billed == Billed.NO.value:
        return _SEND
    if row is not None and not state.is_latest(row, item.fingerprint):
        # Edited back to an earlier version that failed: an edit is new work. (`retry`
        # only sees the ledger's latest version, so leaving it would strand the item.)
        return _SEND
    return pair.outcome or "unknown"
