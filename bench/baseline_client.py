"""The baseline the benchmark compares against: a plain ThreadPoolExecutor + requests client.

It does what a careful script would do and no more: the same request bodies, `resp.json()`,
base64-decode, write the file. No ledger, no retries.
"""

from __future__ import annotations

import argparse
import base64
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

_local = threading.local()


def _session() -> requests.Session:
    session = getattr(_local, "session", None)
    if session is None:
        session = requests.Session()
        _local.session = session
    return session


def main() -> None:
    """Send N requests with C threads and save every image."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--items", type=int, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", default="gemini-3.1-flash-image-preview")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    endpoint = f"{args.url}/v1beta/models/{args.model}:generateContent"

    def one(index: int) -> bool:
        body = {
            "contents": [{"role": "user", "parts": [{"text": f"bench item {index}"}]}],
            "generationConfig": {
                "responseModalities": ["TEXT", "IMAGE"],
                "imageConfig": {"imageSize": "1K", "aspectRatio": "1:1"},
            },
        }
        response = _session().post(
            endpoint,
            data=json.dumps(body),
            headers={"Authorization": "Bearer bench", "Content-Type": "application/json"},
            timeout=300,
        )
        data = response.json()
        for part in data["candidates"][0]["content"]["parts"]:
            inline = part.get("inlineData")
            if inline:
                (args.out / f"{index}.png").write_bytes(base64.b64decode(inline["data"]))
                return True
        return False

    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        done = sum(pool.map(one, range(args.items)))
    if done != args.items:
        raise SystemExit(f"only {done} of {args.items} images")


if __name__ == "__main__":
    main()
