"""The first image of each item's latest ok result, by row (ledger/columns.py), held as a
pattern the job's outputs share: `<output_dir>/` + the item's id + `.png` is one byte a row."""

from __future__ import annotations


class OutputColumn:
    """Row -> output path (or None)."""

    __slots__ = ("_codes", "_forms", "_known", "_others")

    def __init__(self) -> None:
        self._codes = bytearray()  # 0: see `_others`; k: `_forms[k - 1]` around the item's id
        self._forms: list[tuple[str, str]] = []
        self._known: dict[tuple[str, str], int] = {}
        self._others: dict[int, str] = {}  # outputs no pattern holds

    def add_row(self) -> None:
        """A new row, without an output."""
        self._codes.append(0)

    def get(self, row: int, item_id: str) -> str | None:
        """The output of the item `item_id` in `row`."""
        code = self._codes[row]
        if code == 0:
            return self._others.get(row)
        prefix, suffix = self._forms[code - 1]
        return prefix + item_id + suffix

    def set(self, row: int, item_id: str, output: str | None) -> None:
        """The output of the item `item_id` in `row` is now `output`."""
        if output is None and not self._others:
            self._codes[row] = 0
            return
        self._others.pop(row, None)
        self._codes[row] = 0
        if output is None:
            return
        at = output.rfind(item_id)
        if at >= 0:
            form = (output[:at], output[at + len(item_id) :])
            code = self._known.get(form)
            if code is None and len(self._forms) < 255:
                self._forms.append(form)
                code = self._known[form] = len(self._forms)
            if code is not None:
                self._codes[row] = code
                return
        self._others[row] = output
