"""The rows of a replayed ledger, in columns: a million items in about 200 MB, most of it their
ids (state.py reads them as ItemHistory snapshots).

A row per item id holds its latest fingerprint's state: the highest attempt number, the
fingerprint as its 32-byte digest (another form as it is), the outcome and billed marks as codes,
the `sent` line's price, and the output as a pattern that the job's outputs share (outputs.py).
What few items have (a request in flight, a spec kept for `retry`, other fingerprints)
sits in small maps by row. `fold` applies a ledger's `sent` and `result` lines in order, read
by records.read_step.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from batchbanana.ledger.outputs import OutputColumn
from batchbanana.ledger.records import read_step
from batchbanana.rules.outcomes import Billed, Outcome

Json = dict[str, Any]
_PREFIX = "sha256:"
_STANDARD = re.compile(r"sha256:[0-9a-f]{64}").fullmatch  # held as its 32-byte digest
_BILLS: tuple[Billed | None, ...] = (None, Billed.YES, Billed.NO, Billed.UNKNOWN)
_BILL_CODE: dict[str | None, int] = {bill: code for code, bill in enumerate(_BILLS)}
EVER_SENT = 1  # a flag: the item has a `sent` line
_RARE = 255  # an outcome code past the table: the name is in `_rare_outcomes`
_OK = Outcome.OK.value
_NO_DIGEST = bytes(32)
_HUGE = 2**62  # an attempt number from here on is kept outside the column


@dataclass(slots=True)
class AttemptState:
    """The latest known state of one (item, fingerprint) pair."""

    outcome: str | None = None  # latest result's outcome; None while a request is in flight
    billed: str | None = None
    in_flight_attempt: int | None = None  # a `sent` line with no result after it
    in_flight_price_usd: float = 0.0
    in_batch: str | None = None  # the batch key of the in-flight request, in batch mode


class ItemColumns:
    """Per-item state of a replayed ledger, a row per item id."""

    def __init__(self) -> None:
        self.spent_usd = 0.0
        self.possibly_spent_usd = 0.0
        self.ids: list[str] = []  # row -> item id
        self._rows: dict[str, int] = {}
        self._attempts = array("q")  # _HUGE: see `_huge_attempts`
        self._huge_attempts: dict[int, int] = {}
        self._prints = bytearray()  # 32 bytes a row: the latest fingerprint's digest
        self._odd_prints: dict[int, str] = {}  # a latest fingerprint of another form
        self._outcomes = bytearray()  # code into `_names` (0: none)
        self._names: list[str | None] = [None]
        self._name_codes: dict[str, int] = {}
        self._rare_outcomes: dict[int, str] = {}
        self._billed = bytearray()  # code into _BILLS
        self._flags = bytearray()
        self._sent_prices = array("d")  # the price on the latest `sent` line
        self._flights: dict[int, tuple[int, str | None]] = {}  # (attempt, batch key) in flight
        self._specs: dict[int, Json] = {}
        self._outputs = OutputColumn()
        self._others: dict[int, dict[str, AttemptState | None]] = {}  # None: the latest one

    def row_of(self, item_id: str) -> int | None:
        """The row of an item id, or None when the ledger never named it."""
        return self._rows.get(item_id)

    def attempts_of(self, item_id: str) -> int:
        """The highest attempt number the ledger used for the item (0: none)."""
        row = self._rows.get(item_id)
        return 0 if row is None else self.attempts_at(row)

    def attempts_at(self, row: int) -> int:
        """The highest attempt number used for the item in `row`."""
        attempts = self._attempts[row]
        return self._huge_attempts[row] if attempts == _HUGE else attempts

    def fingerprint_at(self, row: int) -> str:
        """The latest fingerprint of the item in `row`."""
        odd = self._odd_prints.get(row)
        if odd is not None:
            return odd
        return _PREFIX + self._prints[32 * row : 32 * row + 32].hex()

    def is_latest(self, row: int, fingerprint: str) -> bool:
        """True when `fingerprint` is the latest one of the item in `row`."""
        odd = self._odd_prints.get(row)
        if odd is not None:
            return odd == fingerprint
        if not _STANDARD(fingerprint):
            return False
        return self._prints[32 * row : 32 * row + 32] == bytes.fromhex(fingerprint[7:])

    def sort_out(
        self, ids: Iterable[str], digests: bytes | bytearray, odd: Container[int]
    ) -> tuple[array[int], array[int], list[int]]:
        """For a job's items (their ids, their fingerprints' digests, 32 bytes each, and the
        indices of those whose fingerprint is of another form): the indices of the items the
        ledger never named, of those ok under that very fingerprint (nothing in flight), and of
        the others (to judge one by one)."""
        rows_get, prints, outcomes = self._rows.get, self._prints, self._outcomes
        flights, odd_prints = self._flights, self._odd_prints
        ok = self._name_codes.get(_OK)
        unknown, done, others = array("q"), array("q"), []
        for index, item_id in enumerate(ids):
            row = rows_get(item_id)
            if row is None:
                unknown.append(index)
            elif (
                outcomes[row] == ok
                and row not in flights
                and row not in odd_prints
                and index not in odd
                and digests[32 * index : 32 * index + 32] == prints[32 * row : 32 * row + 32]
            ):
                done.append(index)
            else:
                others.append(index)
        return unknown, done, others

    def pair_at(self, row: int, fingerprint: str) -> AttemptState | None:
        """The state of (the item in `row`, `fingerprint`), or None if the ledger has none."""
        if self.is_latest(row, fingerprint):
            return self.latest_pair(row)
        others = self._others.get(row)
        return others.get(fingerprint) if others else None

    def output_at(self, row: int) -> str | None:
        """The first image of the item's latest ok result."""
        return self._outputs.get(row, self.ids[row])

    def latest_pair(self, row: int) -> AttemptState:
        """The state of the latest fingerprint of the item in `row`."""
        code = self._outcomes[row]
        outcome = self._rare_outcomes.get(row) if code == _RARE else self._names[code]
        flight = self._flights.get(row)
        return AttemptState(
            outcome=outcome,
            billed=_BILLS[self._billed[row]],
            in_flight_attempt=flight[0] if flight else None,
            in_flight_price_usd=self._sent_prices[row],
            in_batch=flight[1] if flight else None,
        )

    def pending_prices(self) -> float:
        """The prices of every request still in flight (possibly spent)."""
        total = sum(self._sent_prices[row] for row in self._flights)
        for others in self._others.values():
            for pair in others.values():
                if pair is not None and pair.in_flight_attempt is not None:
                    total += pair.in_flight_price_usd
        return total

    def row_for(self, item_id: str, fingerprint: str) -> int:
        """The item's row, made (or switched) so that `fingerprint` is its latest one."""
        row = self._rows.get(item_id)
        if row is None:
            row = len(self.ids)
            self._rows[item_id] = row
            self.ids.append(item_id)
            self._attempts.append(0)
            if _STANDARD(fingerprint):
                self._prints += bytes.fromhex(fingerprint[7:])
            else:
                self._prints += _NO_DIGEST
                self._odd_prints[row] = fingerprint
            self._outcomes.append(0)
            self._billed.append(0)
            self._flags.append(0)
            self._sent_prices.append(0.0)
            self._outputs.add_row()
        elif not self.is_latest(row, fingerprint):
            self._switch(row, fingerprint)
        return row

    def _set_print(self, row: int, fingerprint: str) -> None:
        if _STANDARD(fingerprint):
            self._prints[32 * row : 32 * row + 32] = bytes.fromhex(fingerprint[7:])
            self._odd_prints.pop(row, None)
        else:
            self._odd_prints[row] = fingerprint

    def _switch(self, row: int, fingerprint: str) -> None:
        """Make `fingerprint` the latest of `row`, keeping the state of the one it replaces."""
        others = self._others.setdefault(row, {})
        others[self.fingerprint_at(row)] = self.latest_pair(row)
        known = others.get(fingerprint)
        others[fingerprint] = None
        self._set_print(row, fingerprint)
        self._flights.pop(row, None)
        pair = known or AttemptState()
        self.set_outcome(row, pair.outcome, pair.billed)
        self._sent_prices[row] = pair.in_flight_price_usd
        if pair.in_flight_attempt is not None:
            self._flights[row] = (pair.in_flight_attempt, pair.in_batch)

    def set_outcome(self, row: int, outcome: str | None, billed: str | None) -> None:
        """The latest fingerprint's outcome and billed mark (a Billed or its value)."""
        self._billed[row] = _BILL_CODE.get(billed, 0)
        self._rare_outcomes.pop(row, None)
        if outcome is None:
            self._outcomes[row] = 0
            return
        code = self._name_codes.get(outcome)
        if code is None and len(self._names) < _RARE:
            code = self._name_codes[outcome] = len(self._names)
            self._names.append(outcome)
        if code is None:
            code = _RARE
            self._rare_outcomes[row] = outcome
        self._outcomes[row] = code

    def fold(
        self, records: Iterable[Mapping[str, Any]], other: Callable[[Mapping[str, Any]], None]
    ) -> None:
        """Apply each `sent` and `result` record in order (read by records.read_step); any other
        record is handed to `other`. Money is summed in `spent_usd` and `possibly_spent_usd`,
        unrounded, without the prices of requests still in flight (`pending_prices`)."""
        rows, attempts, flights, specs = self._rows, self._attempts, self._flights, self._specs
        outcomes, billed_codes, flags = self._outcomes, self._billed, self._flags
        sent_prices, codes, rare = self._sent_prices, self._name_codes, self._rare_outcomes
        outputs, ids = self._outputs, self.ids
        ok, yes, unknown = Outcome.OK.value, Billed.YES, Billed.UNKNOWN
        spent = possibly = 0.0
        last_item, last_print, last_row = "", "", -1
        for record in records:
            step = read_step(record)
            if step is None:
                other(record)
                continue
            sent, item, attempt, fingerprint, price, spec, batch_key, outcome, billed, output = step
            if fingerprint is None:
                continue
            if item == last_item and fingerprint == last_print:
                row = last_row
            else:
                row = rows.get(item, -1)
                if row < 0:
                    row = self.row_for(item, fingerprint)
                elif not self.is_latest(row, fingerprint):
                    self._switch(row, fingerprint)
                last_item, last_print, last_row = item, fingerprint, row
            if attempt is not None and attempt > attempts[row]:
                if attempt < _HUGE:
                    attempts[row] = attempt
                else:  # an absurd number (a hand edit): kept as it is
                    attempts[row] = _HUGE
                    self._huge_attempts[row] = max(attempt, self._huge_attempts.get(row, attempt))
            price = price if price is not None and price >= 0 else 0.0
            if sent:
                flags[row] |= EVER_SENT
                outcomes[row] = 0
                billed_codes[row] = 0
                number = attempt if attempt is not None else self.attempts_at(row)
                flights[row] = (number, batch_key)
                sent_prices[row] = price
                if spec is not None:
                    specs[row] = spec
                continue
            flight = flights.get(row)
            if flight is not None and flight[0] == attempt:
                del flights[row]
            code = codes.get(outcome)
            if code is not None and not rare:  # else (a new name) as set_outcome does
                outcomes[row] = code
                billed_codes[row] = _BILL_CODE[billed]
            else:
                self.set_outcome(row, outcome, billed)
            if outcome == ok:
                specs.pop(row, None)  # only `retry` needs specs, and only of failed items
                outputs.set(row, ids[row], output)
            elif spec is not None:
                specs[row] = spec
            if billed is yes:
                spent += price
            elif billed is unknown:
                possibly += price
        self.spent_usd += spent
        self.possibly_spent_usd += possibly
