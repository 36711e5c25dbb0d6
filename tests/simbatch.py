"""Helpers for the simulator's Batch and Files API tests: request bodies, the resumable upload
protocol spoken by hand, and polling a batch until it is done."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
from typing import Any

import aiohttp

from batchbanana.simulator import RunningSimulator

PRO = "gemini-3-pro-image-preview"
FLASH_31 = "gemini-3.1-flash-image-preview"
KEY = {"x-goog-api-key": "sk-test-secret"}
FAST = {"batch_pending_s": 0.05, "batch_running_s": 0.1}
GRANULE = 256 * 1024


def gen_request(
    prompt: str, *, size: str | None = None, ratio: str | None = None, snake: bool = False
) -> dict[str, Any]:
    """A GenerateContentRequest as section 3 writes it (or with snake_case keys)."""
    image_config = {k: v for k, v in (("imageSize", size), ("aspectRatio", ratio)) if v}
    generation: dict[str, Any] = {"responseModalities": ["TEXT", "IMAGE"]}
    if image_config:
        generation["imageConfig"] = image_config
    body = {
        "contents": [{"role": "user", "parts": [{"text": prompt}]}],
        "generationConfig": generation,
    }
    if snake:
        body = json.loads(
            json.dumps(body)
            .replace("generationConfig", "generation_config")
            .replace("responseModalities", "response_modalities")
            .replace("imageConfig", "image_config")
            .replace("imageSize", "image_size")
            .replace("aspectRatio", "aspect_ratio")
        )
    return body


def inline_batch(prompts: list[str], display_name: str = "job", **request: Any) -> dict[str, Any]:
    """A batchGenerateContent body with inline requests keyed k0, k1, ..."""
    requests = [
        {"request": gen_request(p, **request), "metadata": {"key": f"k{i}"}}
        for i, p in enumerate(prompts)
    ]
    return {
        "batch": {
            "displayName": display_name,
            "inputConfig": {"requests": {"requests": requests}},
        }
    }


def jsonl(prompts: list[str], **request: Any) -> bytes:
    """A batch input file: one {"key", "request"} line per prompt, keyed f0, f1, ..."""
    return b"".join(
        json.dumps({"key": f"f{i}", "request": gen_request(p, **request)}).encode() + b"\n"
        for i, p in enumerate(prompts)
    )


class Reply:
    """Status, headers and body of one answer (the JSON if it parsed)."""

    def __init__(self, status: int, headers: Any, raw: bytes) -> None:
        self.status = status
        self.headers = headers
        self.raw = raw
        try:
            self.json: Any = json.loads(raw)
        except ValueError:
            self.json = None


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """One request; a JSON body (bytes as they are) sent as a stream, as aiohttp prefers."""
    data = None
    if body is not None:
        data = io.BytesIO(body if isinstance(body, bytes) else json.dumps(body).encode())
    async with http.request(
        method, url, data=data, headers=KEY if headers is None else headers
    ) as r:
        return Reply(r.status, r.headers, await r.read())


async def create(
    http: aiohttp.ClientSession, sim: RunningSimulator, body: Any, model: str = PRO
) -> Reply:
    return await call(http, "POST", f"{sim.url}/v1beta/models/{model}:batchGenerateContent", body)


async def wait_done(
    http: aiohttp.ClientSession, sim: RunningSimulator, name: str, within_s: float = 10
) -> dict[str, Any]:
    """Poll GET batches/{id} until done; the last Operation."""
    deadline = time.monotonic() + within_s
    while True:
        reply = await call(http, "GET", f"{sim.url}/v1beta/{name}")
        assert reply.status == 200, reply.raw
        if reply.json["done"]:
            return dict(reply.json)
        assert time.monotonic() < deadline, reply.json["metadata"]["state"]
        await asyncio.sleep(0.02)


async def upload(
    http: aiohttp.ClientSession,
    sim: RunningSimulator,
    data: bytes,
    *,
    chunk: int = GRANULE,
    mime: str = "jsonl",
    file: dict[str, Any] | None = None,
) -> Reply:
    """The resumable upload protocol by hand: start, then chunks, the last one finalizing."""
    start = await call(
        http,
        "POST",
        f"{sim.url}/upload/v1beta/files",
        {"file": file or {"displayName": "input"}},
        headers={
            **KEY,
            "X-Goog-Upload-Protocol": "resumable",
            "X-Goog-Upload-Command": "start",
            "X-Goog-Upload-Header-Content-Length": str(len(data)),
            "X-Goog-Upload-Header-Content-Type": mime,
        },
    )
    assert start.status == 200, start.raw
    url = start.headers["X-Goog-Upload-URL"]
    offset = 0
    while True:
        piece = data[offset : offset + chunk]
        last = offset + len(piece) >= len(data)
        reply = await call(
            http,
            "POST",
            url,
            piece,
            headers={
                "X-Goog-Upload-Command": "upload, finalize" if last else "upload",
                "X-Goog-Upload-Offset": str(offset),
            },
        )
        offset += len(piece)
        if last or reply.status != 200:
            return reply


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
