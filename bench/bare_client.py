"""A reference row for the benchmark: the baseline's work done with bare aiohttp and asyncio.

Same request bodies, `await resp.read()`, `json.loads`, base64-decode, write the file, with C
coroutines instead of C threads. No validation, no ledger, no fsync, no retries, no checks: what
any asyncio client on this stack pays before doing anything that keeps money safe. It shows how
much of batchbanana's time is its own, and how much is Python, aiohttp and the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
from pathlib import Path

import aiohttp


async def run(url: str, items: int, concurrency: int, out: Path, model: str) -> int:
    """Send `items` requests with `concurrency` workers; the number of images saved."""
    endpoint = f"{url}/v1beta/models/{model}:generateContent"
    headers = {"Authorization": "Bearer bench", "Content-Type": "application/json"}
    todo = iter(range(items))
    saved = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal saved
        for index in todo:
            body = {
                "contents": [{"role": "user", "parts": [{"text": f"bench item {index}"}]}],
                "generationConfig": {
                    "responseModalities": ["TEXT", "IMAGE"],
                    "imageConfig": {"imageSize": "1K", "aspectRatio": "1:1"},
                },
            }
            async with session.post(endpoint, data=json.dumps(body), headers=headers) as response:
                data = json.loads(await response.read())
            for part in data["candidates"][0]["content"]["parts"]:
                inline = part.get("inlineData")
                if inline:
                    (out / f"{index}.png").write_bytes(base64.b64decode(inline["data"]))
                    saved += 1
                    break

    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return saved


def main() -> None:
    """Command line: the same options as baseline_client.py."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--items", type=int, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", default="gemini-3.1-flash-image-preview")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    done = asyncio.run(run(args.url, args.items, args.concurrency, args.out, args.model))
    if done != args.items:
        raise SystemExit(f"only {done} of {args.items} images")


if __name__ == "__main__":
    main()
