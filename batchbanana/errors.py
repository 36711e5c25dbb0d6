"""The exception tree: user mistakes become one readable stderr line, never a traceback; and
what keeps secrets out of every message (describe_error, make_scrubber)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence


def describe_error(exc: BaseException) -> str:
    """`ClassName: message` for an exception, for ledger lines and summaries."""
    text = str(exc).strip()
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__


def make_scrubber(secret_values: Sequence[str]) -> Callable[[str], str]:
    """A function that removes every secret (raw or JSON-escaped) from a text."""
    secrets_found = [value for value in secret_values if value and len(value) >= 4]
    variants = sorted(
        {form for value in secrets_found for form in (value, json.dumps(value)[1:-1])},
        key=len,
        reverse=True,
    )

    def scrub(text: str) -> str:
        for variant in variants:
            if variant in text:
                text = text.replace(variant, "***")
        return text

    return scrub


class BatchBananaError(Exception):
    """Base of every error batchbanana raises on purpose."""


class UserError(BatchBananaError):
    """A mistake in the input (manifest, files, options, environment): exit 2, nothing sent."""

    def __init__(self, problems: str | list[str]) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class LedgerLockedError(UserError):
    """Another process holds the ledger."""
