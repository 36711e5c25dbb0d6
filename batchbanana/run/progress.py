"""The progress bar on stderr: items done, ok / failed, dollars spent, the in-flight target and
the pace found."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TextIO

from tqdm import tqdm

if TYPE_CHECKING:
    from batchbanana.run.totals import RunTotals


class Progress:
    """A tqdm bar that shows what an overnight job costs while it runs; silent when disabled."""

    def __init__(self, total: int, enabled: bool, stream: TextIO) -> None:
        self.ok = 0
        self.failed = 0
        self._bar: tqdm[Any] | None = None
        if enabled:
            self._bar = tqdm(
                total=total,
                file=stream,
                unit="img",
                dynamic_ncols=True,
                mininterval=0.5,
                bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]",
            )

    def _postfix(self, totals: RunTotals, limits: str) -> str:
        text = f"ok={self.ok} failed={self.failed} spent=${totals.run_spent_usd:.2f}"
        if totals.possibly_spent_usd:
            text += f" (+${totals.possibly_spent_usd:.2f}?)"
        return f"{text} {limits}"

    def item_done(self, ok: bool, totals: RunTotals, limits: str) -> None:
        """One item reached its final outcome for this run."""
        if ok:
            self.ok += 1
        else:
            self.failed += 1
        if self._bar is not None:
            self._bar.set_postfix_str(self._postfix(totals, limits), refresh=False)
            self._bar.update(1)

    def refresh(self, totals: RunTotals, limits: str) -> None:
        """Show new money or new limits without finishing an item."""
        if self._bar is not None:
            self._bar.set_postfix_str(self._postfix(totals, limits))

    def close(self) -> None:
        """Leave the final state of the bar on screen."""
        if self._bar is not None:
            self._bar.close()


class BatchProgress:
    """Batch mode's bar: requests answered across the batches waited for (the provider's
    counts), and their states; silent when disabled."""

    def __init__(self, total: int, enabled: bool, stream: TextIO) -> None:
        self.total = total
        self._bar: tqdm[Any] = tqdm(
            total=total, unit="req", desc="batch", file=stream,
            disable=not enabled or not total, dynamic_ncols=True,
        )  # fmt: skip

    def show(self, waiting: list[Any]) -> None:
        """`waiting`: the batches still waited for (with `requests`, `stats` and `state`)."""
        answered = sum(w.stats.get("succeeded", 0) + w.stats.get("failed", 0) for w in waiting)
        self._bar.n = self.total - sum(len(w.requests) for w in waiting) + answered
        states = ", ".join(sorted({w.state.value.lower() for w in waiting}))
        self._bar.set_postfix_str(
            f"{len(waiting)} batch(es) {states}" if states else "all collected"
        )

    def close(self) -> None:
        self._bar.close()
