"""The exception tree: user mistakes become one readable stderr line, never a traceback."""

from __future__ import annotations


def describe_error(exc: BaseException) -> str:
    """`ClassName: message` for an exception, for ledger lines and summaries."""
    text = str(exc).strip()
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__


class BatchBananaError(Exception):
    """Base of every error batchbanana raises on purpose."""


class UserError(BatchBananaError):
    """A mistake in the input (manifest, files, options, environment): exit 2, nothing sent."""

    def __init__(self, problems: str | list[str]) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class LedgerLockedError(UserError):
    """Another process holds the ledger."""


class JobStopped(BatchBananaError):
    """A job-level condition (bad key, no balance, daily quota) stopped sending."""
