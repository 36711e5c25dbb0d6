"""The Files API's storage: resumable upload sessions streamed into a temporary directory, the
files they become, and the responses files batches write there; all removed when the server stops.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import shutil
import string
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

MAX_FILE_BYTES = 2 * 1024**3  # Google's limit per file
UPLOAD_GRANULARITY = 256 * 1024  # every chunk but the last is a multiple of this
FILE_LIFETIME_S = 48 * 3600  # files expire 48 hours after they are created
_ID_ALPHABET = string.ascii_lowercase + string.digits
_NAME_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?")


def rfc3339(epoch_s: float) -> str:
    """A timestamp as Google writes it: UTC, microseconds, `Z`."""
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_id(length: int = 12) -> str:
    """A fresh resource id of lowercase letters and digits, as Google's are."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


def valid_file_id(file_id: str) -> bool:
    """Whether a caller-chosen id (the part after `files/`) is one Google accepts."""
    return _NAME_RE.fullmatch(file_id) is not None


@dataclass(slots=True)
class StoredFile:
    """One file of the Files API: its bytes on disk and what `GET files/{id}` says of it."""

    file_id: str
    path: Path
    mime_type: str
    size_bytes: int
    sha256_hex: str
    source: str  # UPLOADED or GENERATED
    display_name: str | None = None
    created_s: float = field(default_factory=time.time)
    downloads_503_left: int = 0  # downloads still to be answered 503 UNAVAILABLE


@dataclass(slots=True)
class UploadSession:
    """A resumable upload in progress: where its bytes go and how many have arrived."""

    upload_id: str
    file_id: str
    path: Path
    handle: IO[bytes]
    mime_type: str
    display_name: str | None
    declared_bytes: int | None
    received: int = 0
    hasher: Any = field(default_factory=hashlib.sha256)
    busy: bool = False  # a chunk is being received

    def write(self, data: bytes) -> None:
        """Append a piece (blocking: call it from a worker thread)."""
        self.handle.write(data)
        self.hasher.update(data)
        self.received += len(data)


class FileStore:
    """Every upload session and file of one simulator, under one temporary directory."""

    def __init__(self) -> None:
        self._root: Path | None = None  # made on first use
        self.sessions: dict[str, UploadSession] = {}
        self.files: dict[str, StoredFile] = {}

    def path_for(self, stem: str) -> Path:
        """A fresh path in the directory (nothing is created there yet)."""
        if self._root is None:
            self._root = Path(tempfile.mkdtemp(prefix="batchbanana-sim-"))
        return self._root / f"{stem}-{new_id(8)}"

    def taken(self, file_id: str) -> bool:
        """Whether a file or an upload in progress already has this id."""
        return file_id in self.files or any(s.file_id == file_id for s in self.sessions.values())

    def start(
        self, file_id: str | None, mime_type: str, display_name: str | None, declared: int | None
    ) -> UploadSession:
        """Open a resumable upload session (its file exists once the upload is finalized)."""
        file_id = file_id or new_id()
        path = self.path_for("upload")
        session = UploadSession(
            new_id(24), file_id, path, path.open("wb"), mime_type, display_name, declared
        )
        self.sessions[session.upload_id] = session
        return session

    def abandon(self, session: UploadSession) -> None:
        """Drop a session and whatever it received."""
        self.sessions.pop(session.upload_id, None)
        session.handle.close()
        session.path.unlink(missing_ok=True)

    def finalize(self, session: UploadSession) -> StoredFile:
        """Close a complete session: its bytes become an ACTIVE uploaded file."""
        self.sessions.pop(session.upload_id, None)
        session.handle.close()
        stored = StoredFile(
            session.file_id,
            session.path,
            session.mime_type,
            session.received,
            session.hasher.hexdigest(),
            "UPLOADED",
            session.display_name,
        )
        self.files[stored.file_id] = stored
        return stored

    def add_generated(
        self, file_id: str, path: Path, mime_type: str, sha256_hex: str, downloads_503: int
    ) -> StoredFile:
        """Register a file the simulator wrote itself (a batch's responses file)."""
        stored = StoredFile(file_id, path, mime_type, path.stat().st_size, sha256_hex, "GENERATED")
        stored.downloads_503_left = downloads_503
        self.files[file_id] = stored
        return stored

    def delete(self, file_id: str) -> bool:
        """Forget a file and remove its bytes; False if there was none."""
        stored = self.files.pop(file_id, None)
        if stored is None:
            return False
        stored.path.unlink(missing_ok=True)
        return True

    def close(self) -> None:
        """Close the sessions and remove the directory with everything in it."""
        for session in list(self.sessions.values()):
            session.handle.close()
        self.sessions.clear()
        self.files.clear()
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None


def file_json(stored: StoredFile, base_url: str) -> dict[str, Any]:
    """The File resource as `GET files/{id}` answers it (int64 as a string, hash base64)."""
    created = rfc3339(stored.created_s)
    body: dict[str, Any] = {
        "name": f"files/{stored.file_id}",
        "mimeType": stored.mime_type,
        "sizeBytes": str(stored.size_bytes),
        "createTime": created,
        "updateTime": created,
        "expirationTime": rfc3339(stored.created_s + FILE_LIFETIME_S),
        # Google's field is bytes, and what it holds is the hex digest: base64 of the hex text.
        "sha256Hash": base64.b64encode(stored.sha256_hex.encode()).decode(),
        "uri": f"{base_url}/v1beta/files/{stored.file_id}",
        "state": "ACTIVE",
        "source": stored.source,
    }
    if stored.display_name:
        body["displayName"] = stored.display_name
    if stored.source == "GENERATED":
        body["downloadUri"] = (
            f"{base_url}/download/v1beta/files/{stored.file_id}:download?alt=media"
        )
    return body
