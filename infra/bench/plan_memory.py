"""Peak memory and time of planning: one pass (the planner before issue 12, read from git)
against planning in steps, side by side, on the same synthetic files.

    .venv/bin/python -m infra.bench.plan_memory [--sizes 100000,1000000,10000000] [--old-ref ece004e]

Each planner runs in a fresh child process on the in-memory job store and a Cloud
Storage stand-in backed by local files (so the file being planned is not itself held in
memory), with the production defaults. The table gives each child's peak RSS, the same
for a child that only imports everything (the baseline), and wall time. The file holds
one repeated prompt_id per 100 lines and one bad line per 1,000.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

ROOT = Path(__file__).resolve().parents[2]


class _Range(io.RawIOBase):
    def __init__(self, f: BinaryIO, left: int | None) -> None:
        self._f, self._left = f, left

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self._left is not None:
            n = self._left if n is None or n < 0 else min(n, self._left)
        data = self._f.read(n)
        if self._left is not None:
            self._left -= len(data)
        return data


class DiskBlobs:
    """The BlobStore port on a local directory: objects are files, reads stream."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, bucket: str, name: str) -> Path:
        p = self.root / bucket / name
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def signed_upload_url(self, bucket: str, name: str, headers: Any, ttl: timedelta) -> str:
        return f"file://{self._path(bucket, name)}"

    def signed_download_url(self, bucket: str, name: str, filename: str, ttl: timedelta) -> str:
        return f"file://{self._path(bucket, name)}"

    @contextmanager
    def open_read(self, bucket: str, name: str, start: int = 0, end: int | None = None) -> Iterator[BinaryIO]:
        with open(self._path(bucket, name), "rb") as f:
            f.seek(start)
            yield _Range(f, None if end is None else end - start)  # type: ignore[misc]

    @contextmanager
    def open_write(self, bucket: str, name: str) -> Iterator[BinaryIO]:
        path = self._path(bucket, name)
        tmp = path.with_name(path.name + ".part")
        with open(tmp, "wb") as f:
            yield f
        os.replace(tmp, path)

    def write(self, bucket: str, name: str, data: bytes, content_type: str = "") -> None:
        with self.open_write(bucket, name) as f:
            f.write(data)

    def exists(self, bucket: str, name: str) -> bool:
        return self._path(bucket, name).exists()

    def stat(self, bucket: str, name: str) -> Any:
        from promptforge.service.ports import ObjectInfo

        p = self._path(bucket, name)
        return ObjectInfo(p.stat().st_size, datetime.now(UTC)) if p.exists() else None

    def compose(self, bucket: str, sources: list[str], target: str) -> int:
        with self.open_write(bucket, target) as out:
            for s in sources:
                with open(self._path(bucket, s), "rb") as f:
                    shutil.copyfileobj(f, out)
        return self._path(bucket, target).stat().st_size

    def delete(self, bucket: str, name: str) -> None:
        self._path(bucket, name).unlink(missing_ok=True)


def synthetic(path: Path, n: int) -> None:
    with open(path, "wb") as f:
        for i in range(n):
            if i % 1000 == 999:
                f.write(b'{"prompt_id": "bad-%d"}\n' % i)
            elif i % 100 == 50:
                f.write(b'{"prompt_id": "p%09d", "prompt": "again"}\n' % (i - 50))
            else:
                f.write(b'{"prompt_id": "p%09d", "prompt": "question number %d, please answer briefly"}\n' % (i, i))


def _old_planner(ref: str) -> Any:
    """The planner as it was at ``ref``, loaded beside today's modules."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{ref}:functions/promptforge/service/plan.py"], check=True, capture_output=True
    ).stdout
    spec = importlib.util.spec_from_loader("promptforge.service.plan_before", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "promptforge.service"
    exec(compile(source, f"{ref}:plan.py", "exec"), module.__dict__)
    return module


def child(which: str, upload: Path, work: Path, ref: str) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "functions"))
    sys.path.insert(0, str(ROOT))
    import dataclasses

    from promptforge import config, logs
    from promptforge.service import keys, lifecycle
    from promptforge.service import plan as plan_new
    from promptforge.service.deps import StaticDeps
    from tests.fakes import MemoryStore, RecordingTasks

    planner = _old_planner(ref) if which == "old" else plan_new
    logs.log = lambda *a, **k: None
    settings = dataclasses.replace(config.load(), providers=("fake",))
    blobs = DiskBlobs(work)
    deps = StaticDeps(settings, MemoryStore(), blobs, RecordingTasks())
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if which == "baseline":
        return {"peak_mib": base / 1024, "seconds": 0.0, "invocations": 0}
    _, key = keys.create_key(deps)
    new = lifecycle.create_job(deps, key.client_id, {"provider": "fake", "model": "m"})
    from promptforge.domain import paths

    name = paths.upload_object(key.client_id, new.job.job_id)
    shutil.copyfile(upload, blobs._path(settings.upload_bucket, name))
    lifecycle.accept_upload(deps, settings.upload_bucket, name, upload.stat().st_size, deps.now())
    tasks = deps.tasks
    assert isinstance(tasks, RecordingTasks)
    t0 = time.perf_counter()
    invocations = 0
    while tasks.plans:
        planner.plan_job(deps, tasks.plans.pop(0))
        invocations += 1
    seconds = time.perf_counter() - t0
    job = deps.store.get_job(new.job.job_id)
    assert job is not None and job.status.value == "PROCESSING", job
    return {
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "seconds": seconds,
        "invocations": invocations,
        "prompts": job.prompt_count,
        "invalid": job.invalid_count,
        "invalid_bytes": job.invalid_bytes,
        "chunks": job.chunk_count,
        "enqueued": len(tasks.chunks),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100000,1000000,10000000")
    ap.add_argument("--old-ref", default="ece004e")
    ap.add_argument("--child", choices=("old", "new", "baseline"))
    ap.add_argument("--upload")
    ap.add_argument("--work")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, Path(args.upload), Path(args.work), args.old_ref)))
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="plan-bench-") as tmp:
        base = Path(tmp)

        def run(which: str, upload: Path) -> dict[str, Any]:
            work = base / f"work-{which}"
            shutil.rmtree(work, ignore_errors=True)
            cmd = [sys.executable, "-m", "infra.bench.plan_memory", "--child", which, "--upload", str(upload)]
            cmd += ["--work", str(work), "--old-ref", args.old_ref]
            out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout
            shutil.rmtree(work, ignore_errors=True)
            return dict(json.loads(out.strip().splitlines()[-1]))

        baseline = run("baseline", base / "none")["peak_mib"]
        for n in (int(x) for x in args.sizes.split(",")):
            upload = base / f"prompts-{n}.jsonl"
            synthetic(upload, n)
            old, new = run("old", upload), run("new", upload)
            same = all(old[k] == new[k] for k in ("prompts", "invalid", "invalid_bytes", "chunks", "enqueued"))
            rows.append((n, upload.stat().st_size, old, new, same))
            upload.unlink()
            print(f"# {n:,} prompts done", file=sys.stderr, flush=True)
    print(f"baseline (imports only): {baseline:.0f} MiB peak RSS")
    print("| prompts | file | one pass: peak RSS | time | in steps: peak RSS | time | invocations | same plan |")
    print("|---:|---:|---:|---:|---:|---:|---:|:---:|")
    for n, size, old, new, same in rows:
        print(
            f"| {n:,} | {size / 2**20:,.0f} MiB | {old['peak_mib']:,.0f} MiB | {old['seconds']:.1f} s "
            f"| {new['peak_mib']:,.0f} MiB | {new['seconds']:.1f} s | {new['invocations']} | {'yes' if same else 'NO'} |"
        )


if __name__ == "__main__":
    main()
