"""Shards (contract section 12): which shard an item belongs to, what `--shard` means (K/N, or
`auto` from a scheduler's variables), a shard ledger's name, and a shard's share of the budget.

Pure: the environment is handed in as a mapping, never read here.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from batchbanana.errors import UserError

MAX_SHARDS = 100_000  # a sanity bound: more shards than this is a typo
SHARD_COUNT_ENV = "BATCHBANANA_SHARDS"  # the shard count an Indexed Job sets (= completions)
_SHARD_LEDGER = re.compile(r"ledger\.shard-(\d+)-of-(\d+)\.jsonl")
_AUTO_HINT = (
    "HINT: in a Kubernetes Indexed Job set BATCHBANANA_SHARDS to its completions"
    " (JOB_COMPLETION_INDEX is set for you); in a Slurm array (sbatch --array=0-N-1) the"
    " SLURM_ARRAY_* variables are; elsewhere give --shard K/N"
)


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard `index` of `count` (0 <= index < count)."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def holds(self, item_id: str) -> bool:
        """Whether the item with this id is this shard's to send."""
        return shard_of(item_id, self.count) == self.index

    @property
    def ledger_name(self) -> str:
        """The file name of this shard's ledger, beside the job's own ledger."""
        return f"ledger.shard-{self.index}-of-{self.count}.jsonl"

    @property
    def tag(self) -> str:
        """A short label for run ids and file names: `3of8`."""
        return f"{self.index}of{self.count}"


def shard_of(item_id: str, count: int) -> int:
    """The shard of an item: sha256 of its id, as an integer, mod the count. It depends on the
    id alone, so inserting, removing or reordering items moves no other item."""
    return int(hashlib.sha256(item_id.encode("utf-8")).hexdigest(), 16) % count


def shard_of_ledger(name: str) -> Shard | None:
    """The shard a ledger file belongs to (`ledger.shard-K-of-N.jsonl`), or None."""
    found = _SHARD_LEDGER.fullmatch(name)
    if found is None:
        return None
    index, count = int(found[1]), int(found[2])
    return Shard(index, count) if 0 <= index < count else None


def parse_shard(text: str, environ: Mapping[str, str]) -> Shard:
    """`--shard K/N` or `--shard auto`; raises UserError with a one-line hint otherwise."""
    if text.strip().lower() == "auto":
        return shard_from_environment(environ)
    index_text, slash, count_text = text.strip().partition("/")
    if not slash or not index_text.isdigit() or not count_text.isdigit():
        raise UserError(
            f"--shard: {text!r} is not K/N (for example 0/4: the first of 4 shards) or auto"
        )
    return _checked(int(index_text), int(count_text), "--shard")


def _checked(index: int, count: int, where: str, hint: str = "") -> Shard:
    if not 1 <= count <= MAX_SHARDS:
        raise UserError(f"{where}: the shard count must be 1 to {MAX_SHARDS}, not {count}{hint}")
    if not 0 <= index < count:
        raise UserError(
            f"{where}: shard {index} of {count} does not exist; shards are numbered 0 to"
            f" {count - 1}{hint}"
        )
    return Shard(index, count)


def _integer(environ: Mapping[str, str], name: str) -> int:
    value = environ.get(name, "").strip()
    if not value.lstrip("-").isdigit():
        raise UserError(f"--shard auto: {name}={value!r} is not an integer; {_AUTO_HINT}")
    return int(value)


def _has(environ: Mapping[str, str], what: str) -> bool:
    return bool(environ.get(f"SLURM_ARRAY_TASK_{what}", "").strip())


def shard_from_environment(environ: Mapping[str, str]) -> Shard:
    """`--shard auto`: a Kubernetes Indexed Job (JOB_COMPLETION_INDEX, with the count in
    BATCHBANANA_SHARDS), else a Slurm job array (SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT,
    counted from SLURM_ARRAY_TASK_MIN in steps of SLURM_ARRAY_TASK_STEP, so `--array=1-8`
    works too)."""
    if environ.get("JOB_COMPLETION_INDEX", "").strip():
        if not environ.get(SHARD_COUNT_ENV, "").strip():
            raise UserError(
                f"--shard auto: JOB_COMPLETION_INDEX is set but {SHARD_COUNT_ENV} is not;"
                f" HINT: set {SHARD_COUNT_ENV} to the Job's completions in its env"
            )
        index = _integer(environ, "JOB_COMPLETION_INDEX")
        return _checked(index, _integer(environ, SHARD_COUNT_ENV), "--shard auto (Kubernetes)")
    if environ.get("SLURM_ARRAY_TASK_ID", "").strip():
        task = _integer(environ, "SLURM_ARRAY_TASK_ID")
        count = _integer(environ, "SLURM_ARRAY_TASK_COUNT")
        first = _integer(environ, "SLURM_ARRAY_TASK_MIN") if _has(environ, "MIN") else 0
        step = _integer(environ, "SLURM_ARRAY_TASK_STEP") if _has(environ, "STEP") else 1
        offset = task - first
        hint = f"; HINT: submit a range, such as sbatch --array=0-{max(count - 1, 0)}"
        if step < 1 or offset % step:
            raise UserError(
                f"--shard auto (Slurm): task {task} is not on the array's range from {first} in"
                f" steps of {step}{hint}"
            )
        return _checked(offset // step, count, "--shard auto (Slurm)", hint)
    raise UserError(
        "--shard auto: neither JOB_COMPLETION_INDEX (Kubernetes Indexed Job) nor"
        f" SLURM_ARRAY_TASK_ID (Slurm job array) is set; {_AUTO_HINT}"
    )


def shard_budget_usd(
    budget_usd: float, shard: Shard, by_shard_usd: Mapping[int, float], others_usd: float
) -> float:
    """This shard's budget, counted against its own ledger: an even share of what the job's
    budget leaves after the folder's other ledgers (the unsharded one, other shard counts),
    less what shards of the same count committed beyond their share (an earlier budget let
    them). `by_shard_usd`: committed money (spent + possibly) per shard index of this count.

    So the folder as a whole stays within `budget_usd` however the shards run side by side."""
    share = max(0.0, budget_usd - others_usd) / shard.count
    excess = sum(
        max(0.0, usd - share) for index, usd in by_shard_usd.items() if index != shard.index
    )
    return max(0.0, share - excess)
