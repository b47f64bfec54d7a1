"""Economy against fast: the same prompts through each provider's batch API and at its rate limit.

    .venv/bin/python -m infra.bench.economy [--prompts 10000] [--providers openai,anthropic,gemini]
        [--batch-completion-s 60] [--rpm 10000] [--tpm 2000000] [--latency-ms 300]
        [--base-port 8700] [--out bench-out/economy]

A fresh local stack (profile ``dev`` on ``--base-port``, run directory ``.run/bench-economy``)
with openai, anthropic and gemini enabled against its fake LLM (``Stack.sdk_providers_env``),
which speaks each provider's format and its batch API. For each provider, one job of the
same ``--prompts`` prompts in each mode, one after the other, through the public API (init,
PUT, status polls, results download):

* **fast**: the fake at ``--rpm``/``--tpm`` with ``--latency-ms`` per answer, and PromptForge
  told those limits (``PROMPTFORGE_RATE_LIMITS``), as an operator would configure them.
* **economy**: each chunk goes to the provider as one batch; the fake finishes a batch's
  requests evenly over ``--batch-completion-s`` seconds from its creation. Once every chunk's
  batch is created, and again once the first batch has ended, the run delivers every
  chunk's last poll task again and its next one twice, straight to the function, as Cloud
  Tasks would redeliver them (``--at-once``: all at the same time), and kills
  ``process_chunk`` (SIGKILL of its process group) and starts it again.

Measured: wall time from the PUT to the status poll that sees ``COMPLETED``, HTTP calls the
fake provider received, the job's tokens and estimated cost (its status), the cost ratio
economy/fast per provider, and whether every prompt_id came back exactly once. Prints one
table and writes ``results.json`` and ``results.md`` to ``--out``. A measurement, not a
test: nothing here asserts a time.

The fake's batch timing is a pure function of its clock; a real provider's batch takes
minutes to 24 hours. The economy wall time is the fake's completion delay plus
PromptForge's own overhead (submit, poll backoff, mapping): the benchmark measures that
overhead and exactly-once through a kill and duplicate polls, not any provider's queue.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "functions"))
sys.path.insert(0, str(ROOT))

from infra.stack import HOST, Stack  # noqa: E402

PROVIDERS = ("openai", "anthropic", "gemini")
# A priced model of each provider (domain/prices.json): the fake answers any model name.
MODELS = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-3-5-haiku-latest",
    "gemini": "gemini-2.0-flash",
    "fake": "fake-small",
}
MAX_TOKENS = 50  # every job's params: Anthropic's default of 1024 would dominate the token limit
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")
POLL_S = 0.5
DELIVERY_TIMEOUT_S = 300.0
# How long a delivery may go unanswered before it is tried again (Cloud Tasks' dispatch
# deadline is the queue's; a chunk delivery normally answers in a second or two).
DISPATCH_DEADLINE_S = 30.0


def log(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


# --- jobs through the public API ------------------------------------------------------------


def prompt_lines(count: int, tag: str = "p") -> list[tuple[str, str]]:
    """Deterministic (prompt_id, prompt) pairs: the same prompts in both modes."""
    return [(f"{tag}{i:06d}", f"Prompt {i}: in one sentence, what does a batch API trade for its price?") for i in range(count)]


def jsonl(prompts: Iterable[tuple[str, str]]) -> bytes:
    return b"".join(json.dumps({"prompt_id": pid, "prompt": text}).encode() + b"\n" for pid, text in prompts)


def submit(base: str, key: str, data: bytes, provider: str, mode: str, **body: Any) -> str:
    """Create a job (init and signed PUT); returns its id."""
    spec = {"provider": provider, "model": MODELS[provider], "mode": mode, "params": {"max_tokens": MAX_TOKENS}, **body}
    init = requests.post(f"{base}/v1/jobs/init", json=spec, headers={"X-API-Key": key}, timeout=30)
    if init.status_code != 201:
        raise RuntimeError(f"init of a {mode} job on {provider} answered {init.status_code}: {init.text[:300]}")
    job = init.json()
    put = requests.put(job["upload_url"], data=data, headers=job["upload_headers"], timeout=300)
    put.raise_for_status()
    return str(job["job_id"])


def status(base: str, key: str, job_id: str) -> dict[str, Any]:
    res = requests.get(f"{base}/v1/jobs/{job_id}/status", headers={"X-API-Key": key}, timeout=30)
    res.raise_for_status()
    return dict(res.json())


def wait_for(base: str, key: str, job_id: str, check: Callable[[dict[str, Any]], bool], timeout_s: float) -> dict[str, Any]:
    """The job's first status that passes ``check`` (or ended); TimeoutError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        now = status(base, key, job_id)
        if check(now) or now["status"] in TERMINAL:
            return now
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {now['status']} after {timeout_s:.0f}s")
        time.sleep(POLL_S)


def all_batches_created(prompts: int) -> Callable[[dict[str, Any]], bool]:
    """True once the status counts every prompt in a provider batch (each chunk's batch created)."""

    def check(now: dict[str, Any]) -> bool:
        batches = now.get("provider_batches") or {}
        return int(batches.get("requests", 0)) >= prompts

    return check


def download(base: str, key: str, job_id: str) -> dict[str, list[dict[str, Any]]]:
    """Every result file of a completed job: name -> rows."""
    res = requests.get(f"{base}/v1/jobs/{job_id}/results", headers={"X-API-Key": key}, timeout=60)
    res.raise_for_status()
    files = {}
    for f in res.json()["files"]:
        body = requests.get(f["url"], timeout=300)
        body.raise_for_status()
        files[f["filename"]] = [json.loads(line) for line in body.text.splitlines() if line.strip()]
    return files


def exactly_once(expected: Iterable[str], files: dict[str, list[dict[str, Any]]]) -> bool:
    """Every expected prompt_id in exactly one row (result or error), and no other id
    (rows of invalid lines without a prompt_id aside)."""
    seen = Counter(r["prompt_id"] for rows in files.values() for r in rows if r.get("prompt_id") is not None)
    return seen == Counter(set(expected))


# --- what Cloud Tasks and a crash do to the worker ---------------------------------------------


def chunk_store(stack: Stack) -> Any:
    """The stack's Firestore as the service reads it (chunk records and all). Needs
    ``FIRESTORE_EMULATOR_HOST`` in this process's environment (the caller sets it)."""
    from google.cloud import firestore

    from promptforge.adapters.firestore_store import FirestoreJobStore

    env = stack.env()
    return FirestoreJobStore(
        firestore.Client(project=env["GOOGLE_CLOUD_PROJECT"], database=env["PROMPTFORGE_FIRESTORE_DATABASE"])
    )


def deliver(url: str, body: dict[str, Any], timeout_s: float = DELIVERY_TIMEOUT_S) -> tuple[str, int]:
    """POST a chunk task's body to process_chunk until it answers 2xx, as Cloud Tasks
    retries a delivery (a 503 while another delivery holds the chunk, a worker that is
    starting, no answer within the dispatch deadline); returns the outcome it reported and
    how many attempts went unanswered for ``DISPATCH_DEADLINE_S``."""
    deadline = time.monotonic() + timeout_s
    unanswered = 0
    while True:
        try:
            res = requests.post(url, json=body, timeout=DISPATCH_DEADLINE_S)
        except requests.Timeout:
            unanswered += 1
        except requests.ConnectionError:
            pass
        else:
            if res.ok:
                return str(res.json().get("outcome")), unanswered
            if res.status_code not in (429, 503):
                raise RuntimeError(f"process_chunk answered {res.status_code} to {body}: {res.text[:300]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"process_chunk did not take {body} in {timeout_s:.0f}s")
        time.sleep(0.2)


@dataclass(frozen=True)
class Delivery:
    """One poll task delivered again, and what process_chunk said it did."""

    chunk: int
    poll: int
    outcome: str
    unanswered: int = 0  # attempts that got no answer within DISPATCH_DEADLINE_S


def duplicate_polls(stack: Stack, store: Any, job_id: str, chunks: int, at_once: bool = True) -> list[Delivery]:
    """Deliver poll tasks again straight to process_chunk, as Cloud Tasks redelivers a task
    (``{"job_id", "chunk", "poll"}``): for each chunk with a batch, the poll it ran last (a
    redelivery of a task already served) and twice the poll it expects next (whose
    scheduled task still arrives later, one copy more). ``at_once``: all of them at the
    same time; otherwise each chunk's one after the other (a redelivery after the
    delivery before it was answered), the chunks side by side."""
    per_chunk = []
    for index in range(chunks):
        chunk = store.get_chunk(job_id, index)
        if chunk is None or not chunk.batch_ids:
            continue
        polls = [chunk.batch_polls - 1] if chunk.batch_polls else []
        per_chunk.append([{"job_id": job_id, "chunk": index, "poll": p} for p in [*polls, chunk.batch_polls, chunk.batch_polls]])
    url = stack.function_url("process_chunk")

    def one(body: dict[str, Any]) -> Delivery:
        return Delivery(body["chunk"], body["poll"], *deliver(url, body))

    def in_turn(bodies: list[dict[str, Any]]) -> list[Delivery]:
        return [one(body) for body in bodies]

    groups = [[body] for bodies in per_chunk for body in bodies] if at_once else per_chunk
    with ThreadPoolExecutor(max(1, min(16, len(groups)))) as pool:
        return [d for done in pool.map(in_turn, groups) for d in done]


def restart_worker(stack: Stack) -> float:
    """SIGKILL process_chunk's process group (a crash) and start it again; seconds it was down."""
    started = time.monotonic()
    stack.kill("process_chunk")
    stack.start("process_chunk")
    return time.monotonic() - started


# --- the benchmark ------------------------------------------------------------------------------


@dataclass
class Run:
    provider: str
    mode: str
    prompts: int
    wall_s: float | None = None
    provider_calls: int | None = None  # HTTP requests the fake provider received, any route
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    exactly_once: bool = False
    rows: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # prompt_id -> its row's keys and values but attempts
    result_rows: int = 0
    error_rows: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    note: str = ""


class FakeLLM:
    def __init__(self, base: str) -> None:
        self.base = base

    def configure(self, **changes: Any) -> None:
        requests.post(f"{self.base}/_config", json=changes, timeout=10).raise_for_status()

    def calls(self) -> int:
        return int(requests.get(f"{self.base}/_stats", timeout=10).json()["requests_total"])


def run_job(bench: Bench, provider: str, mode: str, prompts: list[tuple[str, str]]) -> Run:
    run = Run(provider, mode, len(prompts))
    base, key = bench.stack.base_url, bench.new_key()
    data = jsonl(prompts)
    calls_before = bench.fake.calls()
    started = time.monotonic()
    job_id = submit(base, key, data, provider, mode)
    timeout_s = bench.args.timeout_s
    try:
        if mode == "economy":
            now = wait_for(base, key, job_id, all_batches_created(len(prompts)), timeout_s)
            run.extra["provider_batches"] = now.get("provider_batches")
            if now["status"] == "PROCESSING":
                run.extra["created_s"] = round(time.monotonic() - started, 1)
                chunks = int(now["provider_batches"]["batches"])
                polls = duplicate_polls(bench.stack, bench.store, job_id, chunks, at_once=bench.args.at_once)
                kills = [restart_worker(bench.stack)]  # every worker dies between polls
                # And again once a batch ended: deliveries are mapping outcomes to rows.
                now = wait_for(base, key, job_id, lambda s: (s.get("provider_batches") or {}).get("ended", 0) > 0, timeout_s)
                if now["status"] == "PROCESSING":
                    kills.append(restart_worker(bench.stack))
                    polls += duplicate_polls(bench.stack, bench.store, job_id, chunks, at_once=bench.args.at_once)
                outcomes = Counter(d.outcome for d in polls)
                run.extra.update(kills=[round(k, 1) for k in kills], duplicate_polls=dict(outcomes))
                unanswered = sum(d.unanswered for d in polls)
                if unanswered:
                    run.note = f"{unanswered} redelivered polls unanswered for {DISPATCH_DEADLINE_S:g} s"
            else:
                run.note = f"ended {now['status']} before every batch was created"
        final = wait_for(base, key, job_id, lambda s: False, timeout_s)
    except TimeoutError as exc:
        run.note = str(exc)
        return run
    run.wall_s = time.monotonic() - started
    run.provider_calls = bench.fake.calls() - calls_before
    run.input_tokens, run.output_tokens = final.get("input_tokens"), final.get("output_tokens")
    run.cost_usd = final.get("estimated_cost_usd")
    run.extra["job_id"] = job_id
    if final["status"] != "COMPLETED":
        run.note = f"ended {final['status']}: {final.get('error')}"
        return run
    files = download(base, key, job_id)
    run.exactly_once = exactly_once((pid for pid, _ in prompts), files)
    # What a client reads in each row (attempts aside: a batch tries a request once).
    run.rows = {
        str(r["prompt_id"]): tuple(sorted((k, json.dumps(v)) for k, v in r.items() if k != "attempts"))
        for rows in files.values()
        for r in rows
        if r.get("prompt_id") is not None
    }
    run.error_rows = len(files.get("errors.jsonl", []))
    run.result_rows = sum(len(rows) for name, rows in files.items() if name != "errors.jsonl")
    if run.error_rows:
        run.extra["errors"] = dict(Counter(r.get("error") for r in files["errors.jsonl"]))
    return run


@dataclass
class Bench:
    args: argparse.Namespace
    stack: Stack
    fake: FakeLLM
    store: Any

    def new_key(self) -> str:
        """A key of a new client: one job at a time per client, and each run its own."""
        from infra.demo import create_key

        return create_key(self.stack)


def bench_stack(args: argparse.Namespace) -> Stack:
    limits = {p: {"rpm": args.rpm, "tpm": args.tpm} for p in args.providers}
    stack = Stack("dev", base_port=args.base_port, run_dir=ROOT / ".run" / "bench-economy")
    stack.extra_env.update(stack.sdk_providers_env())
    stack.extra_env.update(
        {
            "PROMPTFORGE_RATE_LIMITS": json.dumps(limits),
            # A killed worker's chunk is free again in 15 s rather than a minute, so the
            # kill costs the economy run that at most (its fast twin has no kill).
            "PROMPTFORGE_CHUNK_LEASE_SECONDS": "15",
        }
    )
    return stack


def measure(args: argparse.Namespace) -> list[Run]:
    stack = bench_stack(args)
    stack.down()  # whatever an interrupted run left in the run directory
    runs: list[Run] = []
    try:
        log(f"starting a fresh stack on ports {args.base_port}-{args.base_port + 23} ...")
        stack.up()
        os.environ["FIRESTORE_EMULATOR_HOST"] = stack.env()["FIRESTORE_EMULATOR_HOST"]
        fake = FakeLLM(f"http://{HOST}:{stack.ports['fake-llm']}")
        bench = Bench(args, stack, fake, chunk_store(stack))
        warm = run_job(bench, "fake", "fast", prompt_lines(20, "w"))
        if not warm.exactly_once:
            raise SystemExit(f"bench: the warm-up job did not complete correctly: {warm.note}")
        fake.configure(
            rpm=args.rpm,
            tpm=args.tpm,
            burst_s=1.0,
            latency_ms=args.latency_ms,
            batch_completion_s=args.batch_completion_s,
        )
        prompts = prompt_lines(args.prompts)
        for provider in args.providers:
            for mode in ("fast", "economy"):
                log(f"{provider} {mode}: {args.prompts:,} prompts ...")
                run = run_job(bench, provider, mode, prompts)
                log(f"  {run.wall_s or 0:.1f}s, {run.provider_calls} provider calls, once: {run.exactly_once} {run.note}")
                runs.append(run)
    finally:
        for problem in stack.down():
            log(f"LEFT OVER: {problem}")
    return runs


def ratio(runs: list[Run], run: Run) -> str:
    if run.mode != "economy":
        return ""
    fast = next((r for r in runs if r.provider == run.provider and r.mode == "fast"), None)
    if fast is None or not fast.cost_usd or run.cost_usd is None:
        return "n/a"
    return f"{run.cost_usd / fast.cost_usd:.3f}"


def same_rows(runs: list[Run], run: Run) -> str:
    """Whether an economy job's rows are its fast twin's, field by field (attempts aside)."""
    if run.mode != "economy":
        return ""
    fast = next((r for r in runs if r.provider == run.provider and r.mode == "fast"), None)
    if fast is None or not fast.rows or not run.rows:
        return "n/a"
    return "yes" if run.rows == fast.rows else "NO"


def render(runs: list[Run], args: argparse.Namespace, markdown: bool = False) -> str:
    head = [
        "provider",
        "mode",
        "wall s to COMPLETED",
        "provider HTTP calls",
        "tokens in/out",
        "est. cost USD",
        "economy/fast",
        "rows as fast's",
        "each prompt_id once",
    ]
    rows = [
        [
            r.provider,
            r.mode,
            f"{r.wall_s:.1f}" if r.wall_s is not None else "-",
            f"{r.provider_calls:,}" if r.provider_calls is not None else "-",
            f"{r.input_tokens:,}/{r.output_tokens:,}" if r.input_tokens is not None and r.output_tokens is not None else "-",
            f"{r.cost_usd:.4f}" if r.cost_usd is not None else "-",
            ratio(runs, r),
            same_rows(runs, r),
            ("yes" if r.exactly_once else "NO") + (f" ({r.note})" if r.note else ""),
        ]
        for r in runs
    ]
    notes = [
        f"{args.prompts:,} prompts per job, max_tokens {MAX_TOKENS}, on a fresh local stack, whose economy polls wait 1 s, "
        "doubling to 5 s at most (PROMPTFORGE_ECONOMY_POLL_FIRST_SECONDS=1, _MAX_SECONDS=5; production: 30 s to 10 min).",
        f"fast: the fake at {args.rpm:,} rpm / {args.tpm:,} tpm, {args.latency_ms:g} ms an answer; "
        "PromptForge configured with those limits.",
        f"economy: the fake finishes each batch's requests evenly over {args.batch_completion_s:g} s after its creation; "
        "each run went through a SIGKILL of process_chunk once every batch was created and again once the first one "
        "ended, each time with the chunks' last poll task delivered again and their next one twice "
        + ("(all at once)." if args.at_once else "(each chunk's one after the other)."),
        "The fake's batch timing is a pure function of its clock; real providers take minutes to 24 h. "
        "This measures PromptForge's overhead and exactly-once, not a provider's queue.",
    ]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=False)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)) for line in [head, *rows]]
    return "\n".join(lines) + "\n\n" + "\n".join(f"* {n}" for n in notes)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--prompts", type=int, default=10_000)
    p.add_argument("--providers", type=lambda s: [x for x in s.split(",") if x], default=list(PROVIDERS))
    p.add_argument("--batch-completion-s", type=float, default=60.0, help="the fake's batch_completion_s")
    p.add_argument("--rpm", type=int, default=10_000, help="the fake's (and PromptForge's) request limit for fast jobs")
    p.add_argument("--tpm", type=int, default=2_000_000, help="the fake's (and PromptForge's) token limit for fast jobs")
    p.add_argument("--latency-ms", type=float, default=300.0, help="the fake's answer time for fast jobs")
    p.add_argument(
        "--at-once",
        action="store_true",
        help="deliver the redelivered polls all at once (default: each chunk's one after the other)",
    )
    p.add_argument("--base-port", type=int, default=8700)
    p.add_argument("--timeout-s", type=float, default=900.0, help="give up on a job after this long")
    p.add_argument("--out", type=Path, default=ROOT / "bench-out" / "economy")
    args = p.parse_args(argv)
    unknown = set(args.providers) - set(PROVIDERS)
    if unknown:
        p.error(f"unknown providers: {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    runs = measure(args)
    command = " ".join([".venv/bin/python -m infra.bench.economy", *(argv if argv is not None else sys.argv[1:])])
    print("\n" + render(runs, args), flush=True)
    meta = {"when": datetime.now().isoformat(timespec="seconds"), "command": command, "cpus": os.cpu_count(), **vars(args)}
    meta["out"] = str(args.out)
    (args.out / "results.json").write_text(
        json.dumps({"meta": meta, "runs": [{**asdict(r), "rows": len(r.rows)} for r in runs]}, indent=2) + "\n"
    )
    (args.out / "results.md").write_text(f"`{command}` ({meta['when']})\n\n{render(runs, args, markdown=True)}\n")
    print(f"\nwrote {args.out / 'results.json'} and {args.out / 'results.md'}")
    return 0 if runs and all(r.wall_s is not None and r.exactly_once and same_rows(runs, r) != "NO" for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
