"""`inline_urls: true`: fetch each URL image once per run, bounded in size and time, and check it
like a local file, before anything is sent to the provider. Downloads go through run/http.py, as
provider requests do: the same proxy settings, the same translation of network errors."""

from __future__ import annotations

import hashlib
import secrets
import shutil
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from batchbanana.errors import (
    AnswerTimeout,
    ConnectError,
    DownloadProblem,
    TransportError,
    UserError,
)
from batchbanana.rules.media import (
    MAX_IMAGE_BYTES,
    base64_bytes,
    body_size_problem,
    request_body_bytes,
    sniff_mime,
)
from batchbanana.run.http import HttpSession

if TYPE_CHECKING:
    from batchbanana.plan.job import WorkItem

DOWNLOAD_TIMEOUT_S = 30.0
DOWNLOADS_AT_ONCE = 8


@dataclass(frozen=True, slots=True)
class Download:
    """A URL image fetched for inlining: where its bytes are and what they are."""

    path: Path
    mime_type: str
    size_bytes: int


def _not_downloaded(url: str, exc: TransportError) -> DownloadProblem:
    if isinstance(exc, AnswerTimeout):
        return DownloadProblem(f"{url}: no full answer within {DOWNLOAD_TIMEOUT_S:g} s")
    if isinstance(exc, ConnectError):
        return DownloadProblem(
            f"{url}: no connection ({exc}); HINT: check the URL, and HTTPS_PROXY / HTTP_PROXY"
            " / NO_PROXY if a proxy is needed"
        )
    return DownloadProblem(f"{url}: could not be downloaded ({exc})")


async def _fetch(http: HttpSession, url: str, folder: Path) -> Download:
    try:
        async with http.request(
            "GET", url, timeout_s=DOWNLOAD_TIMEOUT_S, max_redirects=5
        ) as response:
            if response.status != 200:
                raise DownloadProblem(f"{url}: the server answered HTTP {response.status}")
            if response.url.scheme not in ("http", "https"):
                raise DownloadProblem(f"{url}: redirected to a non-http(s) address")
            data = bytearray()
            async for chunk in response.content.iter_chunked(256 * 1024):
                data += chunk
                if len(data) > MAX_IMAGE_BYTES:
                    raise DownloadProblem(f"{url}: larger than the 7 MB limit per image")
    except TransportError as exc:
        raise _not_downloaded(url, exc) from None
    mime = sniff_mime(bytes(data[:32]))
    if mime is None:
        raise DownloadProblem(f"{url}: not a PNG, JPEG, WebP, HEIC or HEIF image (by its bytes)")
    digest = hashlib.sha256(data).hexdigest()
    path = folder / f"{digest}.img"
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise DownloadProblem(f"{url}: could not be stored ({exc.strerror or exc})") from None
    return Download(path, mime, len(data))


async def download_all(urls: Iterable[str], folder: Path) -> tuple[dict[str, Download], list[str]]:
    """Fetch every distinct URL (a few at a time); returns the downloads and the problems."""
    distinct = sorted(set(urls))
    found: dict[str, Download] = {}
    problems: list[str] = []
    limiter = anyio.CapacityLimiter(DOWNLOADS_AT_ONCE)
    async with HttpSession() as http:

        async def one(url: str) -> None:
            async with limiter:
                try:
                    found[url] = await _fetch(http, url, folder)
                except DownloadProblem as exc:
                    problems.append(str(exc))

        async with anyio.create_task_group() as group:
            for url in distinct:
                group.start_soon(one, url)
    return found, sorted(problems)


DOWNLOADS_PREFIX = ".batchbanana-downloads-"


def _owner_tag(ledger: Path) -> str:
    # Download folders are named after their ledger, so a run cleans up only its own job's
    # leftovers (it holds that ledger's lock) when several jobs share an output folder.
    return hashlib.sha256(str(ledger.resolve()).encode()).hexdigest()[:8]


def new_download_folder(output_dir: Path, ledger: Path) -> Path:
    """A private folder inside the output folder for this run's downloads (removed at the end)."""
    folder = output_dir / f"{DOWNLOADS_PREFIX}{_owner_tag(ledger)}-{secrets.token_hex(4)}"
    folder.mkdir(parents=True)
    return folder


def remove_stale_downloads(output_dir: Path, ledger: Path) -> None:
    """Delete download folders a killed run of this job left behind."""
    for folder in output_dir.glob(f"{DOWNLOADS_PREFIX}{_owner_tag(ledger)}-*"):
        shutil.rmtree(folder, ignore_errors=True)


def remove_download_folder(folder: Path) -> None:
    """Delete a run's downloads."""
    shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def inline_downloads(
    output_dir: Path, ledger: Path, items: Sequence[WorkItem]
) -> Iterator[dict[str, tuple[Path, str]]]:
    """Download the URL images items send inline, check them, and delete them afterwards.

    Yields URL -> (file, sniffed MIME type). Raises UserError, naming each item and URL, when
    any cannot be used: nothing has been sent to the provider then.
    """
    users: dict[str, list[str]] = {}
    for item in items:
        for image in item.images:
            if image.inline:
                users.setdefault(image.reference, []).append(item.id)
    if not users:
        yield {}
        return
    folder = new_download_folder(output_dir, ledger)
    try:
        found, problems = anyio.run(download_all, list(users), folder)
        messages = []
        for problem in problems:
            url = problem.split(": ", 1)[0]
            names = ", ".join(f"'{item_id}'" for item_id in users.get(url, [])[:3])
            messages.append(f"item {names}: images: {problem}")
        for item in items:
            sizes = (
                base64_bytes(found[image.reference].size_bytes)
                if image.inline and image.reference in found
                else image.encoded_size()
                for image in item.images
            )
            too_large = body_size_problem(request_body_bytes(item.prompt, sizes))
            if too_large:
                messages.append(f"item '{item.id}': images: {too_large}")
        if messages:
            raise UserError(messages)
        yield {url: (download.path, download.mime_type) for url, download in found.items()}
    finally:
        remove_download_folder(folder)
