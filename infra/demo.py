"""The main job, end to end: start the local stack, create a key, submit a file of
prompts through the public API, show progress, download the results, check them.

    .venv/bin/python infra/demo.py [--file examples/prompts.jsonl] [--out results]
    .venv/bin/python infra/demo.py --llm     # `make demo-llm`: a real model, no API key

``--llm`` installs the local model server first (``infra/llm_install.sh``: pinned, once;
a fresh machine compiles llama.cpp for about 10 minutes), starts the stack with it as the
operator's ``openai_compatible`` endpoint ``llama``, runs ``examples/prompts-llm.jsonl``
(50 prompts, ``max_tokens`` 32) and prints every answer.

Uses only the public HTTP API and the signed URLs, as any client would. Stops the stack
at the end if it started it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from infra import model_server  # noqa: E402
from infra.stack import Stack  # noqa: E402

TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")


def create_key(stack: Stack) -> str:
    """A fresh key, made with the operator command as an operator would."""
    out = subprocess.run(
        [sys.executable, "-m", "promptforge.admin", "keys", "create", "--label", "demo", "--json"],
        cwd=ROOT / "functions",
        env=stack.env(),
        check=True,
        capture_output=True,
        text=True,
    )
    return str(json.loads(out.stdout)["api_key"])


def run_job(base_url: str, api_key: str, file: Path, out_dir: Path, job_spec: dict[str, Any]) -> Path:
    """Submit ``file`` as a job of ``job_spec`` (provider, model, ...), wait for it,
    download every result file into ``out_dir/JOB_ID``."""
    headers = {"X-API-Key": api_key}
    init = requests.post(f"{base_url}/v1/jobs/init", json=job_spec, headers=headers, timeout=30)
    init.raise_for_status()
    job = init.json()
    job_id: str = job["job_id"]
    print(f"job {job_id} created; uploading {file} ({file.stat().st_size:,} bytes)")
    with file.open("rb") as f:
        put = requests.put(job["upload_url"], data=f, headers=job["upload_headers"], timeout=300)
    put.raise_for_status()

    started = time.monotonic()
    last = ""
    while True:
        status = requests.get(f"{base_url}/v1/jobs/{job_id}/status", headers=headers, timeout=30).json()
        done, failed, total = status["completed_count"], status["failed_count"], status["prompt_count"]
        line = f"  {status['status']:<11} {done or 0:>6} done  {failed or 0:>5} failed  of {total if total is not None else '?'}"
        if line != last:
            print(f"{line}   ({time.monotonic() - started:5.1f}s)")
            last = line
        if status["status"] in TERMINAL:
            break
        time.sleep(min(1.0, float(status.get("retry_after") or 1)))
    if status["status"] != "COMPLETED":
        raise SystemExit(f"job ended {status['status']}: {status.get('error')}")

    results = requests.get(f"{base_url}/v1/jobs/{job_id}/results", headers=headers, timeout=30).json()
    target = out_dir / job_id
    target.mkdir(parents=True, exist_ok=True)
    for entry in results["files"]:
        body = requests.get(entry["url"], timeout=300)
        body.raise_for_status()
        (target / entry["filename"]).write_bytes(body.content)
    return target


def check(file: Path, target: Path) -> tuple[int, int]:
    """Every input prompt_id exactly once across the downloaded files."""
    wanted = [json.loads(line)["prompt_id"] for line in file.read_text().splitlines() if line.strip()]
    seen: list[str] = []
    results = errors = 0
    for part in sorted(target.glob("*.jsonl")):
        for line in part.read_text().splitlines():
            seen.append(json.loads(line)["prompt_id"])
            if part.name == "errors.jsonl":
                errors += 1
            else:
                results += 1
    if sorted(seen) != sorted(wanted):
        raise SystemExit(f"mismatch: {len(wanted)} prompts in, {len(seen)} rows out ({len(set(seen))} distinct)")
    return results, errors


def show_answers(file: Path, target: Path) -> None:
    """Each prompt and the model's answer, one line each, in the file's order."""
    prompts = {row["prompt_id"]: row["prompt"] for row in map(json.loads, file.read_text().splitlines()) if row}
    answers: dict[str, str] = {}
    for part in sorted(target.glob("*.jsonl")):
        for row in map(json.loads, part.read_text().splitlines()):
            if part.name == "errors.jsonl":
                answers[row["prompt_id"]] = f"ERROR {row['error']}"
            else:
                text = " ".join(row["result"].split())
                answers[row["prompt_id"]] = f"[{row['output_tokens']} tokens, {row['finish_reason']}] {text}"
    print("\nthe model's answers:")
    for prompt_id, prompt in prompts.items():
        print(f"  {prompt_id} {prompt}\n      -> {answers[prompt_id][:160]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=None, help="default: examples/prompts.jsonl (--llm: prompts-llm.jsonl)")
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    parser.add_argument("--provider", default="fake")
    parser.add_argument("--model", default="fake-small")
    parser.add_argument("--llm", action="store_true", help="a real model: the local llama.cpp server (see above)")
    parser.add_argument("--base-port", type=int, default=None, help="the stack's base port (default: the dev profile's)")
    args = parser.parse_args()

    t_start = time.monotonic()
    if args.llm:
        print("installing the model server (.venv-llm, pinned; once per machine) ...")
        model_server.install()
        installed_s = time.monotonic() - t_start
        print(f"model server ready after {installed_s:.1f}s")
        file = args.file or ROOT / "examples" / "prompts-llm.jsonl"
        job_spec: dict[str, Any] = {
            "provider": "openai_compatible",
            "endpoint": model_server.ENDPOINT,
            "model": model_server.MODEL,
            "params": {"max_tokens": 32},
        }
    else:
        file = args.file or ROOT / "examples" / "prompts.jsonl"
        job_spec = {"provider": args.provider, "model": args.model}

    stack = Stack("dev", base_port=args.base_port, model_server=args.llm)
    status = stack.status()
    started_here = not any(svc["running"] for svc in status.values())
    if args.llm and not started_here and not status["model-server"]["running"]:
        raise SystemExit("the dev stack is running without the model server: stop it first (make down)")
    if started_here:
        print("starting the local stack ...")
        stack.up()
    try:
        key = create_key(stack)
        t0 = time.monotonic()
        target = run_job(stack.base_url, key, file, args.out, job_spec)
        job_s = time.monotonic() - t0
        results, errors = check(file, target)
        if args.llm:
            show_answers(file, target)
        print(f"\ndone in {job_s:.1f}s: {results} results, {errors} errors, every prompt_id exactly once")
        print(f"files in {target}:")
        for part in sorted(target.iterdir()):
            print(f"  {part.name}  ({sum(1 for _ in part.open())} rows)")
    finally:
        if started_here:
            print("stopping the local stack ...")
            stack.down()
    if args.llm:
        print(f"demo-llm: {time.monotonic() - t_start:.1f}s in all, of which {installed_s:.1f}s installing the model server")
        if errors:
            raise SystemExit(f"{errors} prompts got no answer from the model (errors.jsonl)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
