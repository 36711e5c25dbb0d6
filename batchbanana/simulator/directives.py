"""Prompt directives such as `[sim:429x2,retry_after:3]`: parsing, and the plan for each request.

Batch-wide directives (`batch_failed`, `batch_expired`, `batch_cancelled`, `batch_stuck`,
`download503xN`) shape the whole batch a prompt is sent in; generateContent ignores them."""

from __future__ import annotations

import dataclasses
import random
import re
from dataclasses import dataclass

from batchbanana.simulator.config import SimulatorConfig

# Answered instead of the image, in the order written, each N times (default 1); then normal.
_FAULTS = frozenset({
    "400", "401", "402", "403", "429", "500", "502", "503", "504",
    "echo_key_403", "quota_day", "quota_zero", "html503", "spend_cap", "prepaid",
})  # fmt: skip
# Shape every answer after the faults (or only the first N of them when written "namexN").
_SHAPES = frozenset({
    "refuse", "block", "no_image", "drop", "cut", "bad_json", "bad_b64", "gzip", "snake",
    "urlsafe", "nopad", "escaped_slashes", "thought", "two_images", "jpeg",
    "mime_jpg", "mime_text", "many_sources",
})  # fmt: skip
_TIMED_SHAPES = frozenset({"slow", "trickle"})  # need ":S" seconds
_RETRY_HINTS = frozenset({"retry_after", "retry_date", "retry_info"})  # need ":S", no count
# How a whole batch ends (no count), and its responses file's first N downloads answering 503.
BATCH_ENDINGS = frozenset({"batch_failed", "batch_expired", "batch_cancelled", "batch_stuck"})
_BATCH_WIDE = BATCH_ENDINGS | {"download503"}
RETRYABLE_FAULTS = frozenset(
    {"429", "503", "html503", "quota_day", "quota_zero", "spend_cap", "prepaid"}
)
BILLED_FAULTS = frozenset({"502", "504"})  # the model ran; the answer was lost on the way

_BLOCK_RE = re.compile(r"\[sim:([^\]]*)\]")
_TOKEN_RE = re.compile(r"(?P<name>[a-z0-9_]+?)(?::(?P<value>\d+(?:\.\d+)?))?(?:x(?P<count>\d+))?")


class DirectiveError(ValueError):
    """A `[sim:...]` directive the simulator does not understand."""


@dataclass(frozen=True, slots=True)
class Directive:
    """One parsed directive: a name, its seconds (slow:S) and its count (429x2)."""

    name: str
    value_s: float | None = None
    count: int | None = None


@dataclass(frozen=True, slots=True)
class Directives:
    """Every directive found in one prompt, sorted into faults, shapes and retry hints."""

    faults: tuple[Directive, ...] = ()
    shapes: tuple[Directive, ...] = ()
    retry_after_s: float | None = None
    retry_date_s: float | None = None
    retry_info_s: float | None = None
    batch: tuple[Directive, ...] = ()  # batch-wide: how the batch ends, download 503s

    @property
    def empty(self) -> bool:
        """True when the prompt carries no directive, so the random fault rates apply."""
        return not (self.faults or self.shapes)


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do with one request: a fault to answer, or shapes for the 200 answer."""

    fault: str | None = None
    shapes: frozenset[str] = frozenset()
    slow_s: float | None = None
    trickle_s: float | None = None
    retry_after_s: float | None = None
    retry_date_s: float | None = None
    retry_info_s: float | None = None


def _known_names() -> str:
    names = sorted(_FAULTS | _SHAPES | _BATCH_WIDE)
    names += [f"{n}:S" for n in sorted(_TIMED_SHAPES | _RETRY_HINTS)]
    return ", ".join(names)


def parse_directives(prompt: str) -> Directives:
    """The `[sim:...]` directives in a prompt; DirectiveError (with a hint) if one is unknown."""
    faults: list[Directive] = []
    shapes: list[Directive] = []
    batch: list[Directive] = []
    hints: dict[str, float] = {}
    for block in _BLOCK_RE.findall(prompt):
        for raw in block.split(","):
            token = raw.strip()
            match = _TOKEN_RE.fullmatch(token)
            if match is None:
                raise DirectiveError(
                    f"[sim:{token}] is not a directive; HINT: known: {_known_names()}"
                )
            name, value, count = match["name"], match["value"], match["count"]
            directive = Directive(
                name, float(value) if value else None, int(count) if count else None
            )
            needs_value = name in _TIMED_SHAPES or name in _RETRY_HINTS
            if name not in _FAULTS | _SHAPES | _TIMED_SHAPES | _RETRY_HINTS | _BATCH_WIDE:
                raise DirectiveError(
                    f"unknown simulator directive {name!r}; HINT: known: {_known_names()}"
                )
            if count is not None and int(count) < 1:
                raise DirectiveError(f"[sim:{token}] counts nothing; HINT: write {name}x1 or more")
            if needs_value != (value is not None):
                form = f"{name}:S (seconds)" if needs_value else name
                raise DirectiveError(f"[sim:{token}] is malformed; HINT: write it as {form}")
            if name in BATCH_ENDINGS and count is not None:
                raise DirectiveError(f"[sim:{token}] takes no count; HINT: write {name}")
            if name in _BATCH_WIDE:
                batch.append(Directive(name, None, directive.count or 1))
            elif name in _RETRY_HINTS:
                if count is not None:
                    raise DirectiveError(f"[sim:{token}] takes no count; HINT: write {name}:S")
                hints[name] = float(value)
            elif name in _FAULTS:
                faults.append(Directive(name, None, directive.count or 1))
            else:
                shapes.append(directive)
    if hints and not any(f.name in RETRYABLE_FAULTS for f in faults):
        faults.append(Directive("429", None, 1))  # a retry hint alone means "one 429 carrying it"
    return Directives(
        faults=tuple(faults),
        shapes=tuple(shapes),
        retry_after_s=hints.get("retry_after"),
        retry_date_s=hints.get("retry_date"),
        retry_info_s=hints.get("retry_info"),
        batch=tuple(batch),
    )


def plan_request(directives: Directives, index: int) -> Plan:
    """The plan for the request that is the `index`-th (from 0) with this prompt."""
    hints = Plan(
        retry_after_s=directives.retry_after_s,
        retry_date_s=directives.retry_date_s,
        retry_info_s=directives.retry_info_s,
    )
    for fault in directives.faults:
        count = fault.count or 1
        if index < count:
            return dataclasses.replace(hints, fault=fault.name)
        index -= count
    active = [s for s in directives.shapes if s.count is None or index < s.count]
    timed = {s.name: s.value_s for s in active if s.name in _TIMED_SHAPES}
    return dataclasses.replace(
        hints,
        shapes=frozenset(s.name for s in active if s.name in _SHAPES),
        slow_s=timed.get("slow"),
        trickle_s=timed.get("trickle"),
    )


def random_plan(config: SimulatorConfig, rng: random.Random) -> Plan:
    """A plan drawn from the configured fault rates (one draw, so each rate is exact)."""
    roll = rng.random()
    for rate, fault in (
        (config.rate_429, "429"),
        (config.rate_503, "503"),
        (config.rate_500, "500"),
    ):
        if roll < rate:
            return Plan(fault=fault, retry_after_s=config.retry_after_s)
        roll -= rate
    for rate, shape in (
        (config.rate_refuse, "refuse"),
        (config.rate_no_image, "no_image"),
        (config.rate_drop, "drop"),
    ):
        if roll < rate:
            return Plan(shapes=frozenset({shape}))
        roll -= rate
    if roll < config.rate_slow:
        return Plan(slow_s=config.slow_s)
    return Plan()
