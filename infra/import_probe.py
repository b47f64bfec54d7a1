"""Import ``functions/main.py`` in a fresh interpreter and report what it cost.

    .venv/bin/python infra/import_probe.py            # one JSON line
    .venv/bin/python infra/import_probe.py --runs 7   # a table: median and spread
    .venv/bin/python infra/import_probe.py --provider anthropic --runs 7

With ``--provider NAME`` the fresh interpreter imports main.py and then opens that
provider as a chunk worker does (``open_provider``, which imports the provider's SDK),
timing the two steps: the worker's import cost with that provider. A dummy key is put
in the child's environment for the SDK providers; nothing is sent anywhere.

The figures are wall-clock seconds on a shared machine: compare them side by side, not
against a fixed number. The tests use the module list, which is deterministic.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"
sys.path.insert(0, str(FUNCTIONS))
from promptforge.domain.provider_registry import CREDENTIAL_ENVS, NAMES, SDKS  # noqa: E402

# The clients worth watching: Google Cloud's, the HTTP clients and every provider SDK
# of the registry.
HEAVY = (
    "google.cloud.tasks_v2",
    "google.cloud.firestore",
    "google.cloud.storage",
    "grpc",
    "httpx",
    *SDKS,
    "httpx2",
    "aiohttp",
)

_CHILD = """
import json, sys, time
t = time.perf_counter()
import main
elapsed = time.perf_counter() - t
heavy = sorted(h for h in __NAMES__ if any(m == h or m.startswith(h + ".") for m in sys.modules))
report = {"seconds": elapsed, "heavy_modules_loaded": heavy}
provider = sys.argv[1] if len(sys.argv) > 1 else ""
if provider:
    import asyncio, dataclasses
    from promptforge import config
    from promptforge.adapters.providers import open_provider
    t = time.perf_counter()
    probe = {"probe": config.Endpoint("probe", "http://127.0.0.1:9/v1")}
    opened = open_provider(provider, dataclasses.replace(config.load(), providers=(provider,), endpoints=probe), "probe")
    report["provider"] = provider
    report["provider_seconds"] = time.perf_counter() - t
    report["total_seconds"] = elapsed + report["provider_seconds"]
    asyncio.run(opened.aclose())
    report["heavy_modules_loaded"] = sorted(h for h in __NAMES__ if any(m == h or m.startswith(h + ".") for m in sys.modules))
print(json.dumps(report))
""".replace("__NAMES__", repr(HEAVY))
_DUMMY_KEYS = dict.fromkeys(CREDENTIAL_ENVS, "probe")


def _seconds(result: dict[str, object], key: str) -> float:
    value = result[key]
    if not isinstance(value, int | float):
        raise SystemExit(f"import probe: {key} is {value!r}, not a number of seconds")
    return float(value)


def probe(provider: str = "") -> dict[str, object]:
    """One fresh interpreter's import of main.py (then, with ``provider``, its opening)."""
    args = [sys.executable, "-c", _CHILD] + ([provider] if provider else [])
    env = {**os.environ, **_DUMMY_KEYS} if provider else None
    out = subprocess.run(args, cwd=FUNCTIONS, capture_output=True, text=True, check=True, env=env)
    return dict(json.loads(out.stdout))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--provider", default="", choices=("", *NAMES), help="also open this provider (one of the registry's)")
    args = parser.parse_args()
    results = [probe(args.provider) for _ in range(args.runs)]
    if args.runs == 1:
        print(json.dumps(results[0]))
        return 0
    heavy = results[0]["heavy_modules_loaded"] or "none"
    times = sorted(_seconds(r, "seconds") for r in results)
    if not args.provider:
        print(f"{'runs':>5} {'median s':>9} {'min s':>7} {'max s':>7}  heavy modules loaded")
        print(f"{args.runs:>5} {statistics.median(times):>9.3f} {times[0]:>7.3f} {times[-1]:>7.3f}  {heavy}")
        return 0
    opened = sorted(_seconds(r, "provider_seconds") for r in results)
    totals = sorted(_seconds(r, "total_seconds") for r in results)
    print(f"{'provider':<18} {'runs':>4} {'main s':>7} {'provider s':>10} {'total s':>8} {'min':>6} {'max':>6}  loaded")
    print(
        f"{args.provider:<18} {args.runs:>4} {statistics.median(times):>7.3f} {statistics.median(opened):>10.3f} "
        f"{statistics.median(totals):>8.3f} {totals[0]:>6.3f} {totals[-1]:>6.3f}  {heavy}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
