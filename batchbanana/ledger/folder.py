"""The ledgers of a job's folder (contract section 12): which files they are, which of them
another process holds, and what they commit (fold.py reads them as one).

A job's ledgers are its own ledger and every `ledger*.jsonl` beside it: the unsharded
`ledger.jsonl` and one `ledger.shard-K-of-N.jsonl` per shard. Shards of one count run side by
side (each holds its own file, and their items are disjoint); anything else holding a ledger of
the folder (the unsharded run, shards of another count) must not run at the same time, since
both could send the same item: a process checks, after taking its own lock, that no such
ledger is held, and refuses to start (exit 2) otherwise.
"""

from __future__ import annotations

import fcntl
import glob
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from batchbanana.errors import LedgerLockedError, UserError
from batchbanana.ledger.fold import Tally, fold
from batchbanana.ledger.replay import LedgerState, scan_ledger
from batchbanana.rules.shards import Shard, shard_of_ledger

LEDGER_GLOB = "ledger*.jsonl"


def folder_ledgers(folder: Path) -> list[Path]:
    """Every `ledger*.jsonl` file in a folder, sorted by name."""
    return sorted(path for path in folder.glob(LEDGER_GLOB) if path.is_file())


def job_ledgers(own: Path, also: Iterable[Path] = ()) -> list[Path]:
    """The other ledgers of the job whose ledger `own` is: every `ledger*.jsonl` beside it, and
    `also` (the job's unsharded ledger, whatever its name), that exist."""
    found = {path.resolve(): path for path in [*folder_ledgers(own.parent), *also]}
    found.pop(own.resolve(), None)
    return [path for real, path in sorted(found.items()) if path.is_file()]


def expand_ledger_args(args: Sequence[Path]) -> list[Path]:
    """`report`'s arguments as ledger files: a file as it is, a folder as every `ledger*.jsonl`
    in it, a glob pattern (quoted, so the shell left it) as the files it matches."""
    files: list[Path] = []
    for arg in args:
        if arg.is_dir():
            found = folder_ledgers(arg)
            if not found:
                raise UserError(f"{arg}: no {LEDGER_GLOB} in this folder")
            files.extend(found)
        elif arg.is_file():
            files.append(arg)
        elif glob.has_magic(str(arg)):
            matched = sorted(Path(name) for name in glob.glob(str(arg)) if Path(name).is_file())
            if not matched:
                raise UserError(f"{arg}: no ledger file matches this pattern")
            files.extend(matched)
        else:
            raise UserError(f"{arg}: no such ledger file or folder")
    return files


def held_by_another(path: Path) -> bool:
    """Whether another process holds this ledger's lock now (probed without waiting)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases a lock taken by the probe
    return False


def group_of(path: Path) -> int | None:
    """The shard count of a shard ledger, None for any other ledger (an unsharded one)."""
    shard = shard_of_ledger(path.name)
    return shard.count if shard is not None else None


def refuse_concurrent(own: Path, others: Iterable[Path]) -> None:
    """Exit 2 if a ledger of the folder that must not run beside `own` is held: the unsharded
    ledger beside shards, or shards of another count (each could send the same item)."""
    mine = group_of(own)
    for path in others:
        if (mine is None or group_of(path) != mine) and held_by_another(path):
            what = "shards of another count" if group_of(path) else "an unsharded run"
            raise LedgerLockedError(
                f"{path}: in use by another batchbanana process ({what}), which could send the"
                f" same items as {own.name}; HINT: wait for it to finish (shards of one count"
                " run side by side; the unsharded run and other counts, one after another)"
            )


@dataclass(slots=True)
class FolderMoney:
    """What the folder's other ledgers commit, in USD: spent and possibly spent in all of them,
    and spent + possibly by shard of the own ledger's count (the own one included) and in the
    rest (the unsharded ledger, other counts)."""

    spent_usd: float = 0.0
    possibly_spent_usd: float = 0.0
    by_shard_usd: dict[int, float] = field(default_factory=dict)  # shards of own's count
    others_usd: float = 0.0  # committed in every ledger that is not a shard of own's count

    @classmethod
    def of(cls, own: Path, own_usd: float, others: Mapping[Path, Tally]) -> FolderMoney:
        """The money of `others` (each ledger's Tally), beside `own`, which commits `own_usd`."""
        money = cls()
        shard = shard_of_ledger(own.name)
        if shard is not None:
            money.by_shard_usd[shard.index] = own_usd
        for path, tally in others.items():
            committed = tally.committed_usd
            money.spent_usd += tally.spent_usd
            money.possibly_spent_usd += committed - tally.spent_usd
            other = shard_of_ledger(path.name)
            if shard is not None and other is not None and other.count == shard.count:
                money.by_shard_usd[other.index] = committed
            else:
                money.others_usd += committed
        return money

    def count_in(self, state: LedgerState) -> None:
        """Add the other ledgers' money to `state`'s, which then counts the whole folder."""
        state.spent_usd = round(state.spent_usd + self.spent_usd, 6)
        state.possibly_spent_usd = round(state.possibly_spent_usd + self.possibly_spent_usd, 6)


def read_folder(own: Path, warnings: list[str]) -> LedgerState:
    """Every ledger of the folder of `own` (which may not exist yet) folded into one state that
    counts all their money, read without taking any lock (for `plan`: nothing is written)."""
    others = job_ledgers(own)
    if not others:
        state, read_warnings = scan_ledger(own)
        warnings.extend(read_warnings)
        return state
    return fold(own, others, warnings).state


def shard_ledger(job_ledger: Path, shard: Shard) -> Path:
    """Shard K of N's ledger: `ledger.shard-K-of-N.jsonl` in the folder of the job's ledger."""
    return job_ledger.parent / shard.ledger_name
