"""An ok answer's images made durable under their final names, or the `write_error` it becomes:
the answer is paid for either way, so whatever fails here still ends in a result line."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from batchbanana.errors import describe_error
from batchbanana.plan.job import WorkItem
from batchbanana.rules.outcomes import Outcome
from batchbanana.run.client import AttemptResult
from batchbanana.run.committer import ImageCommitter


@dataclass(frozen=True, slots=True)
class Kept:
    """What an attempt's result line says about its images: its outcome once they were saved
    (or not), the files saved, their bytes, and the error if any."""

    outcome: Outcome
    outputs: list[Path]
    size_bytes: int | None
    error: str | None


async def keep_images(
    saver: ImageCommitter, item: WorkItem, attempt: int, price_usd: float, result: AttemptResult
) -> Kept:
    """Save an ok answer's images (other outcomes have none), with the record of their making
    the job asks for; a failure makes it `write_error`, naming any image of the answer that was
    saved before it."""
    if result.outcome is not Outcome.OK:
        return Kept(result.outcome, [], None, result.error)
    outputs: list[Path] = []
    try:
        saved = await saver.commit_answer(item, attempt, price_usd, result)
        outputs = saved.paths
        if saved.error is None:
            return Kept(Outcome.OK, outputs, sum(image.size for image in result.images), None)
        # paid for and not (all) saved; the line names any file that was
        error = f"could not write the image: {describe_error(saved.error)}"
        if outputs:
            error += f" ({len(outputs)} of {len(result.images)} images saved)"
        return Kept(Outcome.WRITE_ERROR, outputs, None, error)
    except Exception as exc:  # a bug must not cost a paid answer its result line
        outputs = []
        error = f"could not write the image: {describe_error(exc)}"
        return Kept(Outcome.WRITE_ERROR, [], None, error)
    finally:
        for image in result.images[len(outputs) :]:
            if image.path is not None:
                # Not committed: no stray temp. A failure here must not cost the paid answer
                # its result line (the next start removes the temp anyway).
                with contextlib.suppress(OSError):
                    image.path.unlink(missing_ok=True)
