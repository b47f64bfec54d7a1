"""Run the OpenAI cookbook's ``api_request_parallel_processor.py`` from its path, unchanged, and time it.

Runs in ``.venv-bench`` (aiohttp, tiktoken)::

    .venv-bench/bin/python -m infra.bench.peer_cookbook --script PATH --summary SUMMARY.json -- SCRIPT_ARGS...

The script runs as ``__main__`` with ``SCRIPT_ARGS`` as its command line (``runpy``),
exactly as ``python PATH SCRIPT_ARGS...`` would run it; this wrapper only imports its two
dependencies first and records the time the script itself took, so the comparison leaves
out interpreter start-up and imports for every tool alike. The benchmark sets the
environment that makes the script work offline: ``SSL_CERT_FILE`` (to trust the TLS
front) and ``PYTHONPATH`` with ``infra/bench/tiktoken_plugin`` (a local encoding).
"""

from __future__ import annotations

import argparse
import json
import runpy
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--script", type=Path, required=True)
    parser.add_argument("--summary", type=Path, required=True)
    parser.add_argument("script_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    script_args = args.script_args[1:] if args.script_args[:1] == ["--"] else args.script_args

    import aiohttp  # noqa: F401  (the script's own imports, loaded before the clock starts)
    import tiktoken  # noqa: F401

    sys.argv = [str(args.script), *script_args]
    started_epoch, started = time.time(), time.monotonic()
    runpy.run_path(str(args.script), run_name="__main__")
    summary = {"work_s": time.monotonic() - started, "started_epoch": started_epoch}
    args.summary.write_text(json.dumps(summary) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
