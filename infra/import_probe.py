"""Import ``functions/main.py`` in a fresh interpreter and report what it cost.

    .venv/bin/python infra/import_probe.py            # one JSON line
    .venv/bin/python infra/import_probe.py --runs 7   # a table: median and spread

The figures are wall-clock seconds on a shared machine: compare them side by side, not
against a fixed number. The tests use the module list, which is deterministic.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"
HEAVY = (
    "google.cloud.tasks_v2",
    "google.cloud.firestore",
    "google.cloud.storage",
    "grpc",
    "httpx",
    "openai",
    "anthropic",
    "google.genai",
)

_CHILD = """
import json, sys, time
t = time.perf_counter()
import main
elapsed = time.perf_counter() - t
heavy = sorted(h for h in __NAMES__ if any(m == h or m.startswith(h + ".") for m in sys.modules))
print(json.dumps({"seconds": elapsed, "heavy_modules_loaded": heavy}))
""".replace("__NAMES__", repr(HEAVY))


def probe() -> dict[str, object]:
    """One fresh interpreter's import of main.py."""
    out = subprocess.run([sys.executable, "-c", _CHILD], cwd=FUNCTIONS, capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    results = [probe() for _ in range(args.runs)]
    if args.runs == 1:
        print(json.dumps(results[0]))
        return 0
    times = sorted(float(r["seconds"]) for r in results)  # type: ignore[arg-type]
    print(f"{'runs':>5} {'median s':>9} {'min s':>7} {'max s':>7}  heavy modules loaded")
    heavy = results[0]["heavy_modules_loaded"] or "none"
    print(f"{args.runs:>5} {statistics.median(times):>9.3f} {times[0]:>7.3f} {times[-1]:>7.3f}  {heavy}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
