"""The benchmark's hand-written peer: the batch runner a competent user writes in an hour.

asyncio, aiohttp and aiolimiter (in ``.venv-bench``): an ``AsyncLimiter`` paces requests
(and, given ``--tpm``, a second one the estimated tokens) per second, a semaphore caps the
requests in flight, and a 429, a 5xx or a broken connection is retried with exponential
backoff (or after the server's ``retry-after``) up to ``--attempts`` times. Each prompt
ends as one line in ``--out`` (the answer) or ``--errors`` (the last error)::

    .venv-bench/bin/python -m infra.bench.peer_aiolimiter --requests REQ.jsonl --out OUT.jsonl
        --errors ERR.jsonl --summary SUMMARY.json --url http://127.0.0.1:8605/v1/chat/completions
        --rpm 6000 [--tpm 400000] [--concurrency 256] [--attempts 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiolimiter import AsyncLimiter

RETRYABLE = {429, 500, 502, 503, 504}


def estimate_tokens(body: dict[str, Any]) -> int:
    """About 4 characters a token, plus the output the request may use."""
    return sum(len(m["content"]) for m in body["messages"]) // 4 + int(body.get("max_tokens", 16))


async def run_one(body: dict[str, Any], ctx: dict[str, Any]) -> tuple[str, dict[str, Any] | None, str]:
    prompt_id = body.pop("metadata")["prompt_id"]
    error = ""
    for attempt in range(ctx["attempts"]):
        wait = None
        async with ctx["semaphore"]:
            await ctx["requests"].acquire()
            if ctx["tokens"] is not None:
                await ctx["tokens"].acquire(estimate_tokens(body))
            try:
                async with ctx["session"].post(ctx["url"], json=body) as response:
                    if response.status == 200:
                        return prompt_id, await response.json(), ""
                    error = f"HTTP {response.status}: {(await response.text())[:200]}"
                    if response.status not in RETRYABLE:
                        break
                    if "retry-after-ms" in response.headers:
                        wait = float(response.headers["retry-after-ms"]) / 1000
                    elif "retry-after" in response.headers:
                        wait = float(response.headers["retry-after"])
            except (TimeoutError, aiohttp.ClientError) as exc:
                error = f"{type(exc).__name__}: {exc}"
        if attempt + 1 < ctx["attempts"]:
            await asyncio.sleep(wait if wait is not None else min(30.0, 0.5 * 2**attempt) * random.uniform(0.5, 1.5))
    return prompt_id, None, error


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    bodies = [json.loads(line) for line in args.requests.read_text().splitlines() if line.strip()]
    started_epoch, started = time.time(), time.monotonic()
    headers = {"Authorization": "Bearer bench"}
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:
        ctx = {
            "session": session,
            "url": args.url,
            "attempts": args.attempts,
            "semaphore": asyncio.Semaphore(args.concurrency),
            "requests": AsyncLimiter(args.rpm / 60, 1),
            "tokens": AsyncLimiter(args.tpm / 60, 1) if args.tpm else None,
        }
        with args.out.open("w") as out, args.errors.open("w") as errors:
            for done in asyncio.as_completed([run_one(body, ctx) for body in bodies]):
                prompt_id, answer, error = await done
                if answer is not None:
                    out.write(json.dumps({"prompt_id": prompt_id, "response": answer}) + "\n")
                else:
                    errors.write(json.dumps({"prompt_id": prompt_id, "error": error}) + "\n")
    return {"work_s": time.monotonic() - started, "started_epoch": started_epoch}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("--requests", "--out", "--errors", "--summary"):
        parser.add_argument(name, type=Path, required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--rpm", type=float, required=True)
    parser.add_argument("--tpm", type=float, default=None)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--attempts", type=int, default=5)
    args = parser.parse_args(argv)
    args.summary.write_text(json.dumps(asyncio.run(main_async(args))) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
