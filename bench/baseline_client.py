"""The baseline the benchmark compares against: a plain ThreadPoolExecutor + requests client.

It does what a careful script would do and no more: the same request bodies, `resp.json()`,
base64-decode, write the file. No ledger. With `--retries N` (the limit workloads W4 and W5) it
retries a 429 or 503 up to N times, with exponential backoff and full jitter that waits at least
what Retry-After or RetryInfo asks, each thread on its own; `--report FILE` writes how many images
it saved and how many requests were refused, instead of failing when some items got no image.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import re
import threading
import time
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
    parser.add_argument("--retries", type=int, default=0)
    parser.add_argument("--base-delay", type=float, default=2.0)
    parser.add_argument("--max-delay", type=float, default=120.0)
    parser.add_argument("--report", type=Path)
    args = parser.parse_args()
    refused = 0
    lock = threading.Lock()
    args.out.mkdir(parents=True, exist_ok=True)
    endpoint = f"{args.url}/v1beta/models/{args.model}:generateContent"

    def one(index: int) -> bool:
        nonlocal refused
        body = {
            "contents": [{"role": "user", "parts": [{"text": f"bench item {index}"}]}],
            "generationConfig": {
                "responseModalities": ["TEXT", "IMAGE"],
                "imageConfig": {"imageSize": "1K", "aspectRatio": "1:1"},
            },
        }
        for attempt in range(args.retries + 1):
            response = _session().post(
                endpoint,
                data=json.dumps(body),
                headers={"Authorization": "Bearer bench", "Content-Type": "application/json"},
                timeout=300,
            )
            if response.status_code not in (429, 503):
                break
            with lock:
                refused += 1
            if attempt == args.retries:
                return False
            time.sleep(_backoff(attempt, args.base_delay, args.max_delay, response))
        if response.status_code != 200:
            return False
        data = response.json()
        for part in data["candidates"][0]["content"]["parts"]:
            inline = part.get("inlineData")
            if inline:
                (args.out / f"{index}.png").write_bytes(base64.b64decode(inline["data"]))
                return True
        return False

    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        done = sum(pool.map(one, range(args.items)))
    if args.report:
        args.report.write_text(json.dumps({"ok": done, "refused": refused}))
    elif done != args.items:
        raise SystemExit(f"only {done} of {args.items} images")


def _backoff(attempt: int, base_s: float, max_s: float, response: requests.Response) -> float:
    """Full jitter, never shorter than the server's Retry-After or RetryInfo."""
    delay = random.uniform(0, min(max_s, base_s * 2**attempt))
    asked = [float(response.headers.get("Retry-After", 0) or 0)]
    said = re.search(r'"retryDelay":\s*"([0-9.]+)s"', response.text)
    if said:
        asked.append(float(said.group(1)))
    return max(delay, *asked)


if __name__ == "__main__":
    main()
