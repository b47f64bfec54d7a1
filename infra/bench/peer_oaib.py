"""Run a requests file through ``oaib`` (PyPI), the way its README shows, for the benchmark.

Runs in ``.venv-bench`` (oaib pins nothing, but pulls pandas, tqdm and the openai SDK)::

    .venv-bench/bin/python -m infra.bench.peer_oaib --requests REQ.jsonl --out OUT.jsonl
        --summary SUMMARY.json --base-url http://127.0.0.1:8605/v1 --rpm 6000 --tpm 2000000

``REQ.jsonl`` holds one chat-completions body per line with ``metadata.prompt_id`` (the
format the cookbook script reads too). oaib's ``Batch`` gets the same limits as the fake
server, its default 8 workers and the openai SDK's default retries. ``OUT.jsonl`` gets
one ``{"prompt_id", "ok"}`` line per row oaib returned (it drops a request that fails
after the SDK's retries: that prompt is missing); the summary records the time from
the first ``add`` to the end of ``run()`` (imports excluded).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    from oaib import Batch

    lines = [json.loads(line) for line in args.requests.read_text().splitlines() if line.strip()]
    batch = Batch(
        rpm=args.rpm,
        tpm=args.tpm,
        loglevel=0,
        timeout=60,
        api_key="bench",
        logdir=str(args.out.with_suffix(".log")),
        base_url=args.base_url,
    )
    started_epoch, started = time.time(), time.monotonic()
    for body in lines:
        metadata = body.pop("metadata")
        await batch.add("chat.completions.create", metadata=metadata, **body)
    output = await batch.run()
    work_s = time.monotonic() - started
    with args.out.open("w") as f:
        if len(output):
            for prompt_id, result in zip(output["prompt_id"], output["result"], strict=True):
                ok = isinstance(result, dict) and bool(result.get("choices"))
                f.write(json.dumps({"prompt_id": prompt_id, "ok": ok}) + "\n")
    return {"work_s": work_s, "started_epoch": started_epoch, "rows": len(output)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--summary", type=Path, required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--rpm", type=int, required=True)
    parser.add_argument("--tpm", type=int, required=True)
    args = parser.parse_args(argv)
    summary = asyncio.run(_run(args))
    args.summary.write_text(json.dumps(summary) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
