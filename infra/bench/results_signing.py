"""How long GET /v1/jobs/{id}/results spends signing download URLs, one file after
another against all at once, for a job with up to 999 parts.

In production each signature is a signBlob call to IAM: a blob store here answers each
after ``--delay-ms`` (default 50 ms), and the results service signs a job's files as it
does for the endpoint. Prints a table; both ways run side by side in one process.

    .venv/bin/python -m infra.bench.results_signing [--delay-ms 50] [--files 10 100 1000]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "functions"))

from promptforge.domain import paths  # noqa: E402
from promptforge.service import results  # noqa: E402


@dataclass
class SlowSigner:
    """Signs after a fixed wait, as a signBlob round trip would take; counts the calls
    in flight at once."""

    delay_s: float
    in_flight: int = 0
    peak: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def signed_download_url(self, bucket: str, name: str, filename: str, ttl: timedelta) -> str:
        with self._lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        time.sleep(self.delay_s)
        with self._lock:
            self.in_flight -= 1
        return f"https://storage.example/{bucket}/{name}?ttl={int(ttl.total_seconds())}"


def measure(files: int, delay_s: float) -> tuple[float, float, int]:
    names = tuple(paths.part_filename(i) for i in range(min(files - 1, paths.MAX_PARTS))) + (paths.ERRORS_FILENAME,)
    job: Any = SimpleNamespace(client_id="c", job_id="j")
    ttl = timedelta(minutes=60)
    serial_signer = SlowSigner(delay_s)
    start = time.perf_counter()
    serial = [serial_signer.signed_download_url("b", paths.result_object("c", "j", n), n, ttl) for n in names]
    serial_s = time.perf_counter() - start
    signer = SlowSigner(delay_s)
    deps: Any = SimpleNamespace(settings=SimpleNamespace(results_bucket="b"), blobs=signer)
    start = time.perf_counter()
    together = results.download_urls(deps, job, names, ttl)
    together_s = time.perf_counter() - start
    assert together == serial  # the same URLs, in the same order
    return serial_s, together_s, signer.peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay-ms", type=float, default=50.0)
    parser.add_argument("--files", type=int, nargs="+", default=[10, 100, 1000])
    args = parser.parse_args()
    print(f"signing with {args.delay_ms:g} ms a signature, {results.SIGN_THREADS} threads")
    print(f"{'files':>6} | {'one by one (s)':>14} | {'concurrent (s)':>14} | {'speed-up':>8} | {'peak in flight':>14}")
    print(f"{'-' * 6}-|-{'-' * 14}-|-{'-' * 14}-|-{'-' * 8}-|-{'-' * 14}")
    for n in args.files:
        serial_s, together_s, peak = measure(n, args.delay_ms / 1000)
        print(f"{n:>6} | {serial_s:>14.2f} | {together_s:>14.2f} | {serial_s / together_s:>7.1f}x | {peak:>14}")


if __name__ == "__main__":
    main()
