"""Submitting owed items as batches, in the order that never pays twice (contract section 10):
budget reserved for the whole batch, the input file (if any) uploaded, every request's `sent`
line (with its batch key) fsynced, then the create call, then the batch's name recorded. If the
process dies between the create and the record, the next run finds the batch by its display
name, the batch key; a batch is never created twice for the same requests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.to_thread

from batchbanana.errors import BatchCallError, ImageProblem, describe_error
from batchbanana.ledger.records import BatchLine, ResultLine, SentLine
from batchbanana.ledger.writer import LedgerWriter
from batchbanana.plan.inputs import EncodedImageCache
from batchbanana.plan.job import Job, WorkItem
from batchbanana.rules.batch import (
    BatchState,
    BatchStatus,
    Member,
    Split,
    batch_key,
    create_may_have_made,
    file_create_body,
    inline_create_body,
    inline_entry,
    not_created_outcome,
    request_key,
    request_line,
    split_batches,
)
from batchbanana.rules.outcomes import Outcome
from batchbanana.rules.pricing import money
from batchbanana.run.batch_api import BatchApi
from batchbanana.run.batch_collect import Member as Request
from batchbanana.run.batch_collect import collect_owner
from batchbanana.run.body import request_body
from batchbanana.run.meters import BudgetMeter
from batchbanana.run.outputs import temp_path


@dataclass(slots=True)
class Submitted:
    """A batch this run created (or found again after a failed create): what to wait for."""

    key: str
    status: BatchStatus
    requests: dict[tuple[str, int], Request]


@dataclass(slots=True)
class SubmitReport:
    """What submitting did besides creating batches: items not sent, and why."""

    unsent: list[WorkItem] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    over_budget_usd: float = 0.0
    stop_reason: str | None = None


class Submitter:
    """Turns owed items into batches for one run."""

    def __init__(
        self,
        job: Job,
        writer: LedgerWriter,
        api: BatchApi,
        run_id: str,
        attempts: dict[str, int],
        budget: BudgetMeter,
        committed_usd: Callable[[], float],
        downloads: dict[str, tuple[Path, str]] | None = None,
    ) -> None:
        self.job = job
        self.writer = writer
        self.api = api
        self.run_id = run_id
        self.attempts = attempts
        self.budget = budget
        self.committed_usd = committed_usd
        self.images = EncodedImageCache(
            optimize=job.optimize_inputs == "lossless", downloads=downloads or {}
        )
        self.report = SubmitReport()
        self.stopping = False

    def _body(self, item: WorkItem) -> bytes:
        return request_body(item, self.images)

    async def submit(self, items: list[WorkItem]) -> list[Submitted]:
        """Create the batches for `items`; stops creating new ones once `stopping` is set."""
        by_key: dict[str, WorkItem] = {}
        members: list[Member] = []
        for item in items:
            attempt = self.attempts.get(item.id, 0) + 1
            key = request_key(item.id, attempt)
            try:
                size = len(await anyio.to_thread.run_sync(self._body, item))
            except (OSError, ImageProblem) as exc:  # nothing written, nothing sent
                self._not_made(f"item '{item.id}'", exc)
                self.report.unsent.extend(items)
                return []
            by_key[key] = item
            members.append(Member(key, item.model, item.image_size, size))
        mode = self.job.batch.input
        limit = {"inline": 1 << 62, "file": 0}.get(mode)
        splits = split_batches(members, **({"inline_limit": limit} if limit is not None else {}))
        created: list[Submitted] = []
        counter: dict[tuple[str, str], int] = {}
        for split in splits:
            chosen = [by_key[key] for key in split.keys]
            if self.stopping:
                self.report.unsent.extend(chosen)
                continue
            number = counter[(split.model, split.image_size)] = (
                counter.get((split.model, split.image_size), 0) + 1
            )
            key = batch_key(self.job.name, self.run_id, split.model, split.image_size, number)
            made = await self._one(key, split, self._within_budget(chosen))
            if made is not None:
                created.append(made)
        return created

    def _within_budget(self, items: list[WorkItem]) -> list[WorkItem]:
        """The items whose prices fit the budget together (a whole batch is reserved before it is
        created); the rest get an `over_budget` line."""
        admitted: list[WorkItem] = []
        for item in items:
            price = item.price.ceiling_usd(item.image_size, len(item.images))
            if self.budget.admits(self.committed_usd(), price):
                self.budget.reserve(price)
                admitted.append(item)
                continue
            attempt = self.attempts[item.id] = self.attempts.get(item.id, 0) + 1
            limit = self.budget.budget_usd or 0
            why = f"not sent: ${price:g} more would exceed the budget of ${limit:g}"
            self.writer.append(
                ResultLine.for_attempt(
                    item.id,
                    attempt,
                    item.fingerprint,
                    Outcome.OVER_BUDGET,
                    price,
                    item.spec(),
                    error=why,
                )
            )
            self.report.over_budget_usd = money(self.report.over_budget_usd + price)
            self._count(item, Outcome.OVER_BUDGET, "over budget")
        return admitted

    def _count(self, item: WorkItem, outcome: Outcome, error: str) -> None:
        self.report.outcomes[outcome.value] = self.report.outcomes.get(outcome.value, 0) + 1
        self.report.failures.append((item.id, outcome.value, error))

    async def _one(self, key: str, split: Split, items: list[WorkItem]) -> Submitted | None:
        if not items:
            return None
        requests: dict[tuple[str, int], Request] = {}
        numbered: list[tuple[WorkItem, int]] = []
        for item in items:
            attempt = self.attempts[item.id] = self.attempts.get(item.id, 0) + 1
            numbered.append((item, attempt))
            requests[(item.id, attempt)] = Request(
                item.id, attempt, item.fingerprint, item.price, item.image_size, item.spec()
            )
        source = "inline"
        try:
            if split.inline:
                entries = [
                    inline_entry(request_key(item.id, attempt), self._body(item))
                    for item, attempt in numbered
                ]
                body = inline_create_body(key, split.model, entries)
                del entries
            else:
                source = await self._upload(key, numbered)
                body = file_create_body(key, split.model, source)
        except (BatchCallError, OSError, ImageProblem) as exc:  # not sent: the items wait
            self._not_made(f"batch {key}", exc)
            self.report.unsent.extend(items)
            self._give_back(items)
            return None
        for item, attempt in numbered:
            self.writer.append(
                SentLine(
                    item=item.id,
                    attempt=attempt,
                    fingerprint=item.fingerprint,
                    price_usd=item.price.ceiling_usd(item.image_size, len(item.images)),
                    model=item.model,
                    image_size=item.image_size,
                    spec=item.spec(),
                    batch_key=key,
                )
            )
        with anyio.CancelScope(shield=True):
            await self.writer.sync()  # every request on disk before the batch can exist
        try:
            status = await self.api.create(split.model, body)
        except BatchCallError as exc:
            try:
                found = await self._after_failed_create(key, exc)
            except BatchCallError as lookup:  # cannot tell: the next run asks again, by name
                self.report.stop_reason = (
                    f"batch {key}: the create failed ({exc}) and the provider's list could not"
                    f" be read ({lookup}); `batchbanana run` again finds out whether it exists"
                )
                self.stopping = True
                return None
            if found is None and create_may_have_made(exc.status, exc.sent):
                # Not listed yet is no proof (a list may lag a create): its `sent` lines stay open.
                self.report.stop_reason = (
                    f"batch {key}: the create's outcome is unclear ({exc}), and it is not listed"
                    " yet; `run` again in a few minutes finds it, or sends its requests again"
                )
                self.stopping = True
                return None
            if found is None:
                self._not_created(key, requests, exc)
                return None
            status = found
        self.writer.append_sync(
            BatchLine(
                batch_key=key,
                name=status.name,
                state=status.state.value,
                model=split.model,
                image_size=split.image_size,
                requests=len(requests),
                input=source,
            )
        )
        return Submitted(key, status, requests)

    def _not_made(self, what: str, exc: Exception) -> None:
        """Requests not made (an input changed since validation: the job stops) or uploaded."""
        why = exc if isinstance(exc, BatchCallError) else describe_error(exc)
        self.report.stop_reason = f"{what}: could not prepare or upload the requests: {why}"
        self.stopping = self.stopping or not isinstance(exc, BatchCallError)

    def _give_back(self, items: list[WorkItem]) -> None:
        for item in items:
            self.budget.release(item.price.ceiling_usd(item.image_size, len(item.images)))
            self.attempts[item.id] -= 1

    async def _after_failed_create(self, key: str, exc: BatchCallError) -> BatchStatus | None:
        """The batch a failed create made anyway, if the provider's list, by display name, has
        it; None without asking when a clear refusal came back or nothing was sent."""
        if not create_may_have_made(exc.status, exc.sent):
            return None
        return await self.api.find(key)

    def _not_created(
        self, key: str, requests: dict[tuple[str, int], Request], exc: BatchCallError
    ) -> None:
        outcome = not_created_outcome(exc.status, exc.sent)
        for request in requests.values():
            price = request.price.estimate_usd(request.image_size)
            self.writer.append(
                ResultLine.for_attempt(
                    request.item,
                    request.attempt,
                    request.fingerprint,
                    outcome,
                    price,
                    request.spec,
                    http_status=exc.status,
                    mode="batch",
                    error=f"batch {key} was not created: {exc}",
                )
            )
            self.budget.release(request.price.ceiling_usd(request.image_size, 0))
            self.report.outcomes[outcome.value] = self.report.outcomes.get(outcome.value, 0) + 1
            self.report.failures.append((request.item, outcome.value, str(exc)))
        self.writer.append_sync(
            BatchLine(batch_key=key, name=None, state="NOT_CREATED", note=str(exc)[:300])
        )
        if exc.status in (401, 402, 403) or exc.status == 400:
            self.report.stop_reason = f"the provider refused to create a batch: {exc}"
            self.stopping = True

    async def _upload(self, key: str, numbered: list[tuple[WorkItem, int]]) -> str:
        lines = (request_line(request_key(item.id, at), self._body(item)) for item, at in numbered)
        path = temp_path(self.job.output_dir, collect_owner(self.job.ledger_path), "requests")
        return await self.api.upload_lines(path, key, lines)


__all__ = ["BatchState", "Path", "SubmitReport", "Submitted", "Submitter"]
