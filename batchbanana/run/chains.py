"""Edit chains within one run: the items that use another item's output wait, outside the pool
(no slot, no budget), until the items they use have ended; then each is handed to the pool, or
gets a `blocked` line (billed no, no `sent` line, no request), and so, in turn, do the items that
use it. plan/chains.py says what a reference is and how the fingerprints work.

An item used by another is *settled* when its final outcome of this run is known, or at the start
when it is not sent by this run: then the ledger says whether it is ok (its saved output is used)
or not (its users are blocked). An item the run never got to (a stop), or one still out in a
remote batch, leaves its users waiting: they are not sent, and the next `run` owes them.

Batch mode sends a whole batch at once, so nothing in it can wait for another item's output:
`hold_for_batch` keeps such items for a later `run`, which collects the base's batch first.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from batchbanana.errors import ImageProblem
from batchbanana.ledger.fold import ELSEWHERE
from batchbanana.ledger.owed import decide
from batchbanana.ledger.records import ResultLine
from batchbanana.ledger.replay import LedgerState
from batchbanana.ledger.writer import LedgerWriter
from batchbanana.plan.chains import bases, resolve
from batchbanana.plan.inputs import ImageInput
from batchbanana.plan.job import WorkItem
from batchbanana.rules.outcomes import Outcome
from batchbanana.run.settings import RunResult

NOT_MADE_YET = (
    "which no ledger of the job has made yet (an item of another shard: a later `run`, of"
    " this shard or unsharded, sends this one once it is ok)"
)


@dataclass(slots=True)
class Moves:
    """What settling an item (or starting) set going: items for the pool, items blocked (why)."""

    ready: list[WorkItem] = field(default_factory=list)
    blocked: list[tuple[WorkItem, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Known:
    """How the ledger says a request ended, when it must not be sent again: outcome, error,
    and the first image of an ok one."""

    outcome: Outcome
    error: str | None
    output: Path | None


class ChainWaits:
    """The run's items that wait for other items' outputs, and the outputs known so far."""

    def __init__(self, state: LedgerState) -> None:
        self._state = state
        self._waiting: dict[str, WorkItem] = {}
        self._users: dict[str, list[str]] = defaultdict(list)  # item id -> ids waiting for it
        self._outputs: dict[str, str] = {}  # ok outputs usable now, by item id
        self._seen: dict[str, ImageInput] = {}  # outputs read, by path (each read once)

    def start(self, items: Sequence[WorkItem]) -> Moves:
        """The items the pool may take now (in order), and those blocked at once because an item
        they use is not sent by this run and not ok in the ledger; the others wait."""
        in_run = {item.id for item in items}
        for item in items:
            if bases(item):
                self._waiting[item.id] = item
                for base in bases(item):
                    self._users[base].append(item.id)
        moves = Moves([item for item in items if item.id not in self._waiting])
        for base in [base for base in self._users if base not in in_run]:
            history = self._state.items.get(base)
            current = history.current() if history is not None else None
            if current is not None and (
                current.in_flight_attempt is not None or current.outcome == ELSEWHERE
            ):
                continue  # out in a remote batch, or in another shard's hands: its users wait
            outcome = current.outcome if current is not None else None
            if outcome == Outcome.OK.value and history is not None and history.output:
                self._outputs[base] = history.output
            elif outcome is None:  # another shard's item (or retry's), not made yet
                self._block_users(base, NOT_MADE_YET, moves)
            else:
                self._block_users(base, f"whose latest outcome is {outcome}", moves)
        moves.ready += self._ready_among(list(self._waiting))
        return moves

    def settle(self, item_id: str, outcome: Outcome, output: Path | None) -> Moves:
        """`item_id` ended this run with `outcome` (its first image saved at `output`): the items
        waiting only for it now go to the pool, or, if it is not ok, are blocked (transitively)."""
        moves = Moves()
        users = self._users.get(item_id)
        if not users:
            return moves
        if outcome is Outcome.OK and output is not None:
            self._outputs[item_id] = str(output)
            moves.ready = self._ready_among(self._users.pop(item_id))
        else:
            state = f"which ended {outcome.value} in this run"
            if outcome is Outcome.OK:  # ok, yet no image to use (the ledger names none)
                state = "whose image is not named in the ledger"
            self._block_users(item_id, state, moves)
        return moves

    def resolve(self, item: WorkItem) -> tuple[WorkItem, Known | None]:
        """`item` with the outputs it uses read in, under its real fingerprint (blocking I/O: call
        it in a worker thread); raises ImageProblem if an output cannot be sent. With it, what the
        ledger already says of that very request when it must not be sent again (the outputs it
        uses came back byte for byte as before): then the item ends this run as it stands."""
        resolved = resolve(item, self._outputs.get, self._seen)
        decision = decide([resolved], self._state)
        if decision.to_send:
            return resolved, None
        if decision.done:
            output = self._state.items[item.id].output
            return resolved, Known(Outcome.OK, None, Path(output) if output else None)
        outcome = decision.left_for_retry[0][1]
        known = Outcome(outcome) if outcome in set(Outcome) else Outcome.INTERRUPTED
        why = f"already {outcome} with these very inputs; `batchbanana retry` pays for it again"
        return resolved, Known(known, why, None)

    def still_waiting(self) -> list[WorkItem]:
        """Items left waiting when the run ended (an item they use was never sent)."""
        return list(self._waiting.values())

    def _ready_among(self, ids: Sequence[str]) -> list[WorkItem]:
        ready = []
        for item_id in ids:
            item = self._waiting.get(item_id)
            if item is not None and all(base in self._outputs for base in bases(item)):
                ready.append(self._waiting.pop(item_id))
        return ready

    def _block_users(self, base: str, state: str, moves: Moves) -> None:
        """Block every item waiting for `base` (whose `state` says why it is of no use), then
        every item waiting for those, and so on."""
        pending = [(base, state)]
        while pending:
            used, used_state = pending.pop()
            for user_id in self._users.pop(used, []):
                user = self._waiting.pop(user_id, None)
                if user is None:
                    continue  # already blocked through another item it uses
                moves.blocked.append(
                    (user, f"not sent: it uses the output of item '{used}', {used_state}")
                )
                pending.append((user_id, "which is blocked"))


def hold_for_batch(
    items: Sequence[WorkItem], state: LedgerState, writer: LedgerWriter
) -> tuple[list[WorkItem], dict[str, int]]:
    """Batch mode: the items this run's batches may carry, and how many others it does not send.
    An item that uses the output of an item sent in this run's batches (or still in a remote
    one) waits for a later `run` (counted `not_sent`); one whose base is not ok, or whose base's
    output cannot be sent, gets its `blocked` line now, as in sync mode (counted `blocked`)."""
    chains = ChainWaits(state)
    moves = chains.start(items)
    sendable: list[WorkItem] = []
    blocked = list(moves.blocked)
    for item in moves.ready:
        if bases(item):  # its bases are ok in the ledger (decide could not read an output)
            try:
                item, known = chains.resolve(item)
            except ImageProblem as exc:
                blocked.append((item, f"not sent: {exc}"))
                continue
            if known is not None:
                continue  # the ledger has this very request already: never sent twice
        sendable.append(item)
    counts: dict[str, int] = {}
    while blocked:
        item, why = blocked.pop(0)
        history = state.items.get(item.id)
        attempt = (history.attempts if history else 0) + 1
        price = item.price.ceiling_usd(item.image_size, len(item.images))
        writer.append_sync(
            ResultLine.for_attempt(
                item.id, attempt, item.fingerprint, Outcome.BLOCKED, price, item.spec(), error=why
            )
        )
        counts[Outcome.BLOCKED.value] = counts.get(Outcome.BLOCKED.value, 0) + 1
        blocked += chains.settle(item.id, Outcome.BLOCKED, None).blocked
    if chains.still_waiting():
        counts["not_sent"] = len(chains.still_waiting())
    return sendable, counts


def count_held(result: RunResult, held: dict[str, int]) -> None:
    """Add the items `hold_for_batch` did not send to a run's outcomes (they are not ok)."""
    for name, count in held.items():
        result.totals.outcomes[name] = result.totals.outcomes.get(name, 0) + count
    if held and result.exit_code == 0:
        result.exit_code = 1
