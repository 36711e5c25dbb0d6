"""The exception tree, every class batchbanana raises on purpose, and what keeps secrets out of
every message (describe_error, make_scrubber). It imports nothing of the package, so every part
of it, rules/ included, may raise these.

    BatchBananaError
    ├── UserError            input mistake: one readable line per problem, exit 2, nothing sent
    │   └── LedgerLockedError
    ├── ImageProblem         an input image that cannot be sent
    │   └── DownloadProblem  a URL image that cannot be downloaded and inlined
    ├── BadResponse          a 200 answer that cannot be read (bad_response, billed)
    ├── SinkError            an answer's image that cannot be written (write_error, billed)
    └── TransportError       the network failed a request (raised by run/http.py, nowhere else)
        ├── ConnectError     no connection: nothing was sent, safe to retry
        ├── AnswerTimeout    sent, no full answer in time: billed
        └── ConnectionLost   sent, then the connection failed: maybe billed
"""

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


class ManifestUnreadable(BatchBananaError):
    """The manifest is not a YAML mapping at all: the one problem, nothing more can be checked."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


class ImageProblem(BatchBananaError):
    """An input image that cannot be sent; the message says why, the caller names the item."""


class DownloadProblem(ImageProblem):
    """A URL image (`inline_urls: true`) that cannot be downloaded and inlined."""


class BadResponse(BatchBananaError):
    """A 200 answer that is not valid JSON, or whose image data cannot be decoded."""


class SinkError(BatchBananaError):
    """The decoded image could not be written (disk full, permissions): the answer was paid for."""


class TransportError(BatchBananaError):
    """The network failed a request; the subclass says whether the request was sent."""


class ConnectError(TransportError):
    """No connection was made (refused, DNS, proxy, connect timeout): nothing was sent."""


class AnswerTimeout(TransportError):
    """The request was sent but no full answer came in time: the provider bills disconnects."""


class ConnectionLost(TransportError):
    """The request was sent, then the connection failed: maybe billed (a cut-off 200 surely)."""


class BatchCallError(BatchBananaError):
    """A Batch or Files API call failed (status None: no answer; sent: it may have arrived)."""

    def __init__(
        self,
        message: str,
        status: int | None,
        sent: bool,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.sent = sent
        self.retry_after_s = retry_after_s
