"""Collecting a finished batch: each response classified exactly like a synchronous answer
(contract section 5; an error line by its code), its images made durable under their final
names, then its `result` line (mode batch, the batch's name, the batch price); every request the
batch left without a response gets its line too.

Runs in a worker thread: it reads a file that may hold gigabytes of images, and writes the
ledger while the event loop waits for it.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchbanana.errors import SinkError, describe_error
from batchbanana.ledger.records import ResultLine
from batchbanana.ledger.writer import LedgerWriter
from batchbanana.plan.job import Job
from batchbanana.rules.answer import Answer
from batchbanana.rules.batch import BatchState, error_http_status
from batchbanana.rules.error_answer import parse_error
from batchbanana.rules.grounding import scrub_grounding
from batchbanana.rules.outcomes import Billed, Outcome, billed, classify_answer, classify_error
from batchbanana.rules.pricing import PriceRule, money
from batchbanana.rules.shards import shard_of_ledger
from batchbanana.run.batch_stream import Response
from batchbanana.run.making import Making

COLLECT_OWNER = "batchbanana-collect"  # the owner of temporary files made while collecting


def collect_owner(ledger: Path) -> str:
    """Whose temporary files a run's batch downloads are: one name per ledger, so a shard that
    starts never deletes the files of another shard collecting at the same time."""
    shard = shard_of_ledger(ledger.name)
    return COLLECT_OWNER if shard is None else f"{COLLECT_OWNER}-{shard.tag}"


@dataclass(frozen=True, slots=True)
class Member:
    """One request inside a batch, as its `sent` line recorded it."""

    item: str
    attempt: int
    fingerprint: str
    price: PriceRule
    image_size: str
    spec: dict[str, Any] | None


@dataclass(slots=True)
class Collected:
    """How a batch's requests ended: counts, money, and the failures to show."""

    outcomes: dict[str, int] = field(default_factory=dict)
    spent_usd: float = 0.0
    possibly_spent_usd: float = 0.0
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    unknown_keys: int = 0
    stop_reason: str | None = None  # a write error stops the job, as in sync mode


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _save(
    answer: Answer, member: Member, output_dir: Path, making: Making, price_usd: float
) -> list[Path]:
    """The answer's images under their final names, with the record of their making as the
    job's `metadata` says (contract section 11), as a sync answer's are."""
    from batchbanana.run.committer import save_images

    spec = member.spec or {}
    record = making.record(member.item, spec, member.fingerprint, member.attempt, price_usd, answer)
    saved = save_images(output_dir, member.item, answer.images, record, making.embed)
    if saved.error is not None:
        raise saved.error
    _sync_folder(output_dir)
    return saved.paths


def _discard(answer: Answer | None) -> None:
    for image in answer.images if answer is not None else ():
        if image.path is not None:
            with contextlib.suppress(OSError):
                image.path.unlink(missing_ok=True)


class Collector:
    """Writes the result lines of one batch's responses."""

    def __init__(
        self,
        name: str,
        members: dict[tuple[str, int], Member],
        output_dir: Path,
        writer: LedgerWriter,
        scrub: Callable[[str], str],
        making: Making | None = None,
    ) -> None:
        self.name = name
        self.making = making or Making()  # no record unless the job's `metadata` asks for one
        self.members = dict(members)
        self.output_dir = output_dir
        self.writer = writer
        self.scrub = scrub
        self.collected = Collected()
        self.stopped = False  # a write failed: the requests not collected stay open

    @classmethod
    def for_job(
        cls,
        name: str,
        members: dict[tuple[str, int], Member],
        job: Job,
        writer: LedgerWriter,
        scrub: Callable[[str], str],
    ) -> Collector:
        """The collector of one of a job's batches, saving into its output folder and recording
        its images' making as the job's `metadata` says."""
        return cls(name, members, job.output_dir, writer, scrub, Making.for_job(job, scrub))

    def take(self, responses: Iterator[Response]) -> None:
        """Record every response that belongs to one of the batch's requests, until an image
        cannot be written (a full disk): then `stopped`, and the requests not reached stay open
        in the ledger, for the next `run` to collect from the provider (still paid once)."""
        try:
            for response in responses:
                member = self.members.pop(response.key, None) if response.key else None
                if member is None:
                    self.collected.unknown_keys += 1
                    _discard(response.answer)
                    continue
                try:
                    self._one(member, response)
                except BaseException:
                    _discard(response.answer)
                    raise
                if self.collected.stop_reason:
                    break
        except SinkError as exc:  # an image could not be spilled to a temporary file
            self.collected.stop_reason = f"could not write an image of batch {self.name}: {exc}"
        finally:
            close = getattr(responses, "close", None)
            if close is not None:
                close()
        if self.collected.stop_reason:
            self.stopped = True
            self.writer.sync_now()

    def _one(self, member: Member, response: Response) -> None:
        fields: dict[str, Any] = {}
        answer = response.answer
        if response.error is not None:
            error = response.error
            status = error_http_status(error)
            verdict = classify_error(status, parse_error(json.dumps({"error": error}).encode()))
            outcome, message = verdict.outcome, verdict.error
            fields["http_status"] = status
        elif answer is None:
            outcome, message = Outcome.BAD_RESPONSE, response.problem
            fields["http_status"] = 200
        else:
            verdict = classify_answer(answer)
            outcome, message = verdict.outcome, verdict.error
            fields.update(
                http_status=200,
                finish_reason=answer.finish_reason or answer.block_reason,
                usage=answer.usage,
            )
            for key in ("text", "response_id", "model_version"):
                if getattr(answer, key) is not None:
                    fields[key] = getattr(answer, key)
            if answer.grounding is not None:
                fields["grounding"] = scrub_grounding(answer.grounding, self.scrub)
        images = len(answer.images) if answer is not None and outcome is Outcome.OK else 0
        usage = answer.usage if answer is not None else None
        price = member.price.actual_usd(member.image_size, usage, images)
        if outcome is Outcome.OK and answer is not None:
            try:
                saved = _save(answer, member, self.output_dir, self.making, price)
                fields.update(output=str(saved[0]), bytes=sum(i.size for i in answer.images))
                if len(saved) > 1:
                    fields["outputs"] = [str(path) for path in saved]
            except Exception as exc:  # paid for and not saved: the line says so; the job stops
                _discard(answer)
                outcome = Outcome.WRITE_ERROR
                message = f"could not write the image: {describe_error(exc)}"
                self.collected.stop_reason = f"item '{member.item}': {message}"
        else:
            _discard(answer)
        self._record(member, outcome, price, message, fields)

    def finish(self, state: BatchState, reason: str | None = None) -> Collected:
        """Give every request left without a response its line: not billed when the batch ended
        FAILED, EXPIRED or CANCELLED (owed to the next run); unknown if it claims success or
        its state cannot be known (UNKNOWN: a batch the provider no longer has)."""
        for member in list(self.members.values()):
            if state in (BatchState.SUCCEEDED, BatchState.UNKNOWN):  # may have been paid for
                outcome = Outcome.SERVER_ERROR
                why = reason or f"batch {self.name} succeeded but gave no response for this request"
            else:
                outcome = Outcome.UNAVAILABLE
                why = (
                    reason
                    or f"batch {self.name} ended {state.value} without answering this request"
                ) + " (not billed; the next `run` sends it again)"
            self._record(member, outcome, member.price.estimate_usd(member.image_size), why, {})
        self.members.clear()
        self.writer.sync_now()
        return self.collected

    def _record(
        self, member: Member, outcome: Outcome, price: float, error: str | None, fields: Any
    ) -> None:
        line = ResultLine.for_attempt(
            member.item,
            member.attempt,
            member.fingerprint,
            outcome,
            price,
            member.spec,
            error=self.scrub(error) if error else None,
            mode="batch",
            batch=self.name,
            **fields,
        )
        self.writer.append(line)
        collected = self.collected
        collected.outcomes[outcome.value] = collected.outcomes.get(outcome.value, 0) + 1
        kind = billed(outcome)
        if kind is Billed.YES:
            collected.spent_usd = money(collected.spent_usd + price)
        elif kind is Billed.UNKNOWN:
            collected.possibly_spent_usd = money(collected.possibly_spent_usd + price)
        if outcome is not Outcome.OK:
            collected.failures.append((member.item, outcome.value, self.scrub(error or "")))
