"""Throughput benchmark: PromptForge end to end against peer tools, on one rate-limited fake LLM.

    .venv/bin/python -m infra.bench.throughput --suite [--prompts 10000] [--base-port 8600] [--out bench-out/]
    .venv/bin/python -m infra.bench.throughput --scenario learned --scenario faults ...
    .venv/bin/python -m infra.bench.throughput [--prompts 10000] [--rpm 6000] [--latency-ms 300] [--grid]

One run starts its own local stack (profile ``dev`` on ``--base-port``, run directory
``.run/bench``), and configures the stack's fake LLM server as a provider would behave:
limits in requests and tokens per minute enforced by buckets holding ``--burst-s`` (1)
seconds of them, tokens charged up front as prompt + ``max_tokens`` and never refunded,
OpenAI's per-minute ``x-ratelimit-*`` headers, lognormal latency (``--latency-ms`` is
the median, the 99th percentile is 4x it). It then runs the same prompts through each
tool in turn, resetting the server's counters and buckets and re-seeding its latency and
fault draws between tools, each scenario on a model name of its own (separate buckets,
separate budgets in PromptForge).

The scenarios (``--suite`` runs all four; sizes scale with ``--prompts``, N):

* ``configured``: N prompts at ``--rpm`` (6,000), limits given to PromptForge in
  ``PROMPTFORGE_RATE_LIMITS``, at each of ``--latencies`` (100, 300, 1000 ms); the peers
  run at ``--latency-ms`` (300);
* ``learned``: the same at ``--latency-ms`` with NO configured limits: PromptForge learns
  them from the answers' headers (PromptForge only: the peers need the limit given);
* ``tokens``: 0.3 N prompts of 200-4,000 characters with ``max_tokens`` 256 at 400k tokens
  a minute, so the token limit binds (PromptForge and the hand-written script);
* ``faults``: 0.3 N prompts with 3% of answers HTTP 500 and 1% connections reset.

The tools:

* ``promptforge``: the public API as any client uses it (init, PUT the JSONL file to the
  signed URL, poll the status every 0.5 s, download the results). Time: from the PUT to
  the poll that sees ``COMPLETED``.
* ``oaib``: the PyPI batch runner, ``Batch(rpm=limit, tpm=limit)`` (its ``safety`` left at 0.1).
* ``aiolimiter``: a hand-written asyncio + aiohttp + aiolimiter script
  (:mod:`infra.bench.peer_aiolimiter`), given the limits.
* ``cookbook``: the OpenAI cookbook's ``api_request_parallel_processor.py``, unchanged,
  from ``--cookbook-script`` (or ``$COOKBOOK_SCRIPT``), through a local TLS front (it
  only accepts https URLs) with a local tiktoken encoding, at 100% of the limit.

For each: wall time, throughput as a ratio of the ideal (see :mod:`infra.bench.metrics`),
the requests the server received and the share answered 429 (overall and from the
second second of the provider's timeline on), prompts answered, failed, lost (no line at
all) and duplicated. Peers run as subprocesses in ``.venv-bench`` (created here from
``requirements-bench.txt``), so none of their packages touch the service's environment.
Prints the table and writes ``results.json``, ``results.md`` and the plots (a summary and
one per-second provider timeline per scenario) to ``--out``.

``--grid`` instead runs a smaller job (``--grid-prompts``) at each latency of
``--grid-latencies`` (at ``--rpm``) and each limit of ``--grid-rpms`` (at ``--latency-ms``).

This is a measurement, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

from infra.bench.metrics import RunResult, after_first_second, check_ids, format_table, ideal_seconds
from infra.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
BENCH_VENV = ROOT / ".venv-bench"
REQUIREMENTS = HERE / "requirements-bench.txt"
TIKTOKEN_PLUGIN = HERE / "tiktoken_plugin"
ENCODING_NAME = "promptforge_bench_bytes"  # infra/bench/tiktoken_plugin/tiktoken_ext/promptforge_bench.py
HOST = "127.0.0.1"
MAX_TOKENS = 16  # what a prompt asks for at most, in every tool, except in the tokens scenario
POLL_S = 0.5
TOOLS = ("promptforge", "oaib", "aiolimiter", "cookbook")
SCENARIOS = ("configured", "learned", "tokens", "faults")
# The tokens scenario: long prompts and a large max_tokens against a token limit that binds.
TOKENS_TPM = 400_000
TOKENS_MAX_TOKENS = 256
TOKENS_PROMPT_CHARS = (200, 4000)
# The faults scenario: a share of HTTP 500s and of connections reset before any answer.
FAULTS = (("server_error", 0.03), ("reset", 0.01))
# The tokens and faults scenarios run this share of --prompts (3,000 of 10,000).
SMALL_SHARE = 0.3
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")
# The cookbook's token estimate (a byte-level encoding) is about 4x the real count; it gets
# a token limit far above anything the run needs, so only the request limit binds.
COOKBOOK_TPM = 1_000_000_000


def log(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


# --- the benchmark's own virtual environment ------------------------------------------


def bench_python(venv: Path = BENCH_VENV, requirements: Path = REQUIREMENTS) -> Path:
    """``.venv-bench``'s interpreter, creating or updating the venv when the requirements changed."""
    python = venv / "bin" / "python"
    stamp = venv / ".promptforge-requirements.sha256"
    digest = hashlib.sha256(sys.version.encode() + b"\0" + requirements.read_bytes()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        return python
    if not python.exists():
        log(f"creating {venv.name} for the peer tools and matplotlib")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # Keep the venv out of git and out of ruff (which honours .gitignore files).
    (venv / ".gitignore").write_text("*\n")
    log(f"installing {requirements.relative_to(ROOT)} into {venv.name}")
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", str(requirements)]
    done = subprocess.run(pip, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"bench: pip could not install {requirements.name} into {venv}:\n{done.stdout}{done.stderr}")
    stamp.write_text(digest + "\n")  # last, so an interrupted install is retried
    return python


# --- scenarios and their files ----------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """One point: the prompts, the limit, the latency and the faults the fake server applies."""

    prompts: int
    rpm: int
    tpm: int
    latency_ms: float
    kind: str = "headline"  # configured, learned, tokens, faults; headline or grid for single points
    configured: bool = True  # PromptForge is given the limits (PROMPTFORGE_RATE_LIMITS)
    faults: tuple[tuple[str, float], ...] = ()
    prompt_chars: tuple[int, int] | None = None  # prompt lengths drawn in this range; None: one sentence
    max_tokens: int = MAX_TOKENS
    tools: tuple[str, ...] = TOOLS
    name: str | None = None  # a model name of its own (the warm-up)

    @property
    def model(self) -> str:
        # The fake server keeps one pair of buckets per model, and PromptForge looks its
        # limits up (and keeps what it learns) by "provider/model": one model name per
        # point keeps scenarios and tools' leftovers apart.
        return self.name or f"bench-{self.kind}-r{self.rpm}-t{self.tpm}-l{self.latency_ms:g}"

    @property
    def label(self) -> str:
        return self.name or f"{self.kind}-n{self.prompts}-r{self.rpm}-t{self.tpm}-l{self.latency_ms:g}"


FILLER = "Batch jobs share one provider limit, so each request waits for its turn before it is sent. "


def prompt_texts(count: int, chars: tuple[int, int] | None = None, seed: int = 0) -> list[tuple[str, str]]:
    """Deterministic (prompt_id, text) pairs: the same prompts for every tool.

    With ``chars``, each text's length is drawn uniformly from that range (seeded).
    """
    if chars is None:
        return [(f"p{i:06d}", f"Prompt {i}: in one sentence, why do batch jobs need rate limiting?") for i in range(count)]
    rng = random.Random(seed)
    prompts = []
    for i in range(count):
        head = f"Prompt {i}: summarise these notes in one line. "
        length = max(len(head), rng.randint(*chars))
        body = FILLER * (length // len(FILLER) + 1)
        prompts.append((f"p{i:06d}", (head + body)[:length]))
    return prompts


@dataclass(frozen=True)
class Files:
    promptforge: Path  # the JSONL PromptForge takes
    requests: Path  # chat-completions bodies with metadata.prompt_id, for the peers
    ids: list[str]
    tokens: int  # what the fake server charges for all of them: prompt tokens + max_tokens


def write_files(scenario: Scenario, work: Path) -> Files:
    from infra.fake_llm.replies import prompt_tokens

    work.mkdir(parents=True, exist_ok=True)
    prompts = prompt_texts(scenario.prompts, scenario.prompt_chars)
    pf, rq = work / "prompts.jsonl", work / "requests.jsonl"
    tokens = 0
    with pf.open("w") as f_pf, rq.open("w") as f_rq:
        for prompt_id, text in prompts:
            messages = [{"role": "user", "content": text}]
            tokens += prompt_tokens(messages) + scenario.max_tokens
            f_pf.write(json.dumps({"prompt_id": prompt_id, "prompt": text}) + "\n")
            body = {
                "model": scenario.model,
                "messages": messages,
                "max_tokens": scenario.max_tokens,
                "metadata": {"prompt_id": prompt_id},
            }
            f_rq.write(json.dumps(body) + "\n")
    return Files(pf, rq, [p for p, _ in prompts], tokens)


# --- the fake LLM server's control endpoints --------------------------------------------


class FakeServer:
    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")

    def configure(self, **changes: Any) -> dict[str, Any]:
        r = requests.post(f"{self.base}/_config", json=changes, timeout=10)
        r.raise_for_status()
        return dict(r.json())

    def reset(self) -> None:
        requests.post(f"{self.base}/_reset", timeout=10).raise_for_status()

    def stats(self) -> dict[str, Any]:
        r = requests.get(f"{self.base}/_stats", timeout=10)
        r.raise_for_status()
        return dict(r.json())

    def timeline(self) -> dict[str, Any]:
        """The provider's traffic per second since the last reset (``GET /_timeline``)."""
        r = requests.get(f"{self.base}/_timeline", timeout=10)
        r.raise_for_status()
        return dict(r.json())


# --- the tools ------------------------------------------------------------------------


@dataclass
class Context:
    args: argparse.Namespace
    stack: Stack
    api_key: str
    fake: FakeServer
    bench_py: Path
    tls_port: int | None
    cert_file: Path | None
    out: Path


def _new_result(tool: str, scenario: Scenario, files: Files) -> RunResult:
    return RunResult(
        scenario=scenario.kind,
        tool=tool,
        prompts=scenario.prompts,
        rpm=scenario.rpm,
        tpm=scenario.tpm,
        latency_ms=scenario.latency_ms,
        ideal_s=ideal_seconds(scenario.prompts, scenario.rpm, scenario.tpm, files.tokens),
    )


def _timeout_s(ideal_s: float) -> float:
    return max(180.0, 5 * ideal_s + 60)


def _parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def run_promptforge(ctx: Context, scenario: Scenario, files: Files, work: Path) -> RunResult:
    result = _new_result("promptforge", scenario, files)
    base, headers = ctx.stack.base_url, {"X-API-Key": ctx.api_key}
    body: dict[str, Any] = {"provider": "fake", "model": scenario.model, "params": {"max_tokens": scenario.max_tokens}}
    init = requests.post(f"{base}/v1/jobs/init", json=body, headers=headers, timeout=30)
    init.raise_for_status()
    job = init.json()
    job_id = job["job_id"]
    data = files.promptforge.read_bytes()
    result.extra["started_epoch"], started = time.time(), time.monotonic()
    requests.put(job["upload_url"], data=data, headers=job["upload_headers"], timeout=300).raise_for_status()
    deadline = started + _timeout_s(result.ideal_s)
    polls = 0
    while True:
        status = requests.get(f"{base}/v1/jobs/{job_id}/status", headers=headers, timeout=30).json()
        polls += 1
        if status["status"] in TERMINAL:
            result.wall_s = time.monotonic() - started
            break
        if time.monotonic() > deadline:
            result.note = f"gave up after {deadline - started:.0f}s in {status['status']}"
            break
        time.sleep(POLL_S)
    result.extra.update(job_id=job_id, status=status["status"], polls=polls)
    created, processing, completed = (_parse_time(status.get(k)) for k in ("created_at", "started_processing_at", "completed_at"))
    if processing and completed:
        result.extra["processing_s"] = (completed - processing).total_seconds()
    if status["status"] != "COMPLETED":
        result.wall_s = None
        result.note = result.note or f"job ended {status['status']}: {status.get('error')}"
        return result

    listing = requests.get(f"{base}/v1/jobs/{job_id}/results", headers=headers, timeout=30).json()
    seen: list[str] = []
    ok = failed = 0
    errors: dict[str, int] = {}
    target = work / "promptforge-results"
    target.mkdir(exist_ok=True)
    for entry in listing["files"]:
        content = requests.get(entry["url"], timeout=300).content
        (target / entry["filename"]).write_bytes(content)
        for line in content.decode().splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            seen.append(row["prompt_id"])
            if "error" in row:
                failed += 1
                errors[row["error"]] = errors.get(row["error"], 0) + 1
            else:
                ok += 1
    result.ok, result.failed, result.ids = ok, failed, check_ids(files.ids, seen)
    if errors:
        result.extra["errors"] = errors
    return result


@contextlib.contextmanager
def _process_group_guard(proc: subprocess.Popen[bytes]) -> Iterator[None]:
    """Stop the subprocess (and whatever it started) if the benchmark leaves early."""
    try:
        yield
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _run_peer(cmd: list[str], env: dict[str, str], log_file: Path, timeout_s: float) -> tuple[int | None, float]:
    """Run a peer in its own process group; (exit code or None on timeout, seconds)."""
    started = time.monotonic()
    with log_file.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        with _process_group_guard(proc):
            try:
                code: int | None = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                code = None
    return code, time.monotonic() - started


def _peer_timing(result: RunResult, code: int | None, process_s: float, summary: Path, log_file: Path) -> bool:
    result.extra["process_s"] = process_s
    if code is None:
        result.note = f"timed out after {process_s:.0f}s (log: {log_file})"
        return False
    if code != 0 or not summary.exists():
        result.note = f"exited {code} (log: {log_file})"
        return False
    timing = json.loads(summary.read_text())
    result.wall_s = float(timing["work_s"])
    result.extra["started_epoch"] = float(timing["started_epoch"])
    return True


def run_oaib(ctx: Context, scenario: Scenario, files: Files, work: Path) -> RunResult:
    result = _new_result("oaib", scenario, files)
    out, summary, log_file = work / "oaib-results.jsonl", work / "oaib-summary.json", work / "oaib.log"
    for path in (out, summary):
        path.unlink(missing_ok=True)
    fake_url = f"http://{HOST}:{ctx.stack.ports['fake-llm']}/v1"
    cmd = [str(ctx.bench_py), "-m", "infra.bench.peer_oaib", "--requests", str(files.requests), "--out", str(out)]
    cmd += ["--summary", str(summary), "--base-url", fake_url, "--rpm", str(scenario.rpm), "--tpm", str(scenario.tpm)]
    code, process_s = _run_peer(cmd, dict(os.environ), log_file, _timeout_s(result.ideal_s))
    if not _peer_timing(result, code, process_s, summary, log_file):
        return result
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    result.ok = sum(1 for r in rows if r["ok"])
    # oaib drops a request that still fails after the SDK's retries: it is simply missing
    # (failed, and lost as well: nothing in its output says it ever existed).
    result.failed = scenario.prompts - result.ok
    result.ids = check_ids(files.ids, [r["prompt_id"] for r in rows])
    return result


def run_aiolimiter(ctx: Context, scenario: Scenario, files: Files, work: Path) -> RunResult:
    result = _new_result("aiolimiter", scenario, files)
    out, errors = work / "aiolimiter-results.jsonl", work / "aiolimiter-errors.jsonl"
    summary, log_file = work / "aiolimiter-summary.json", work / "aiolimiter.log"
    for path in (out, errors, summary):
        path.unlink(missing_ok=True)
    url = f"http://{HOST}:{ctx.stack.ports['fake-llm']}/v1/chat/completions"
    cmd = [str(ctx.bench_py), "-m", "infra.bench.peer_aiolimiter", "--requests", str(files.requests), "--url", url]
    cmd += ["--out", str(out), "--errors", str(errors), "--summary", str(summary), "--rpm", str(scenario.rpm)]
    cmd += ["--tpm", str(scenario.tpm)]
    code, process_s = _run_peer(cmd, dict(os.environ), log_file, _timeout_s(result.ideal_s))
    if not _peer_timing(result, code, process_s, summary, log_file):
        return result
    answered = [json.loads(line)["prompt_id"] for line in out.read_text().splitlines() if line.strip()]
    failed = [json.loads(line) for line in errors.read_text().splitlines() if line.strip()]
    result.ok, result.failed = len(answered), len(failed)
    result.ids = check_ids(files.ids, answered + [row["prompt_id"] for row in failed])
    kinds: dict[str, int] = {}
    for row in failed:
        kind = row["error"].split(":", 1)[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    if kinds:
        result.extra["errors"] = kinds
    return result


def run_cookbook(ctx: Context, scenario: Scenario, files: Files, work: Path) -> RunResult:
    assert ctx.tls_port is not None and ctx.cert_file is not None
    result = _new_result("cookbook", scenario, files)
    out, summary, log_file = work / "cookbook-results.jsonl", work / "cookbook-summary.json", work / "cookbook.log"
    for path in (out, summary):
        path.unlink(missing_ok=True)  # the script appends to its results file
    script_args = [
        "--requests_filepath",
        str(files.requests),
        "--save_filepath",
        str(out),
        "--request_url",
        f"https://{HOST}:{ctx.tls_port}/v1/chat/completions",
        "--api_key",
        "bench",
        "--max_requests_per_minute",
        str(scenario.rpm),  # 100% of the limit: its best case (its docs advise 50-75%)
        "--max_tokens_per_minute",
        str(COOKBOOK_TPM),
        "--token_encoding_name",
        ENCODING_NAME,
        "--max_attempts",
        "5",
        "--logging_level",
        "40",
    ]
    cmd = [str(ctx.bench_py), "-m", "infra.bench.peer_cookbook", "--script", str(ctx.args.cookbook_script)]
    cmd += ["--summary", str(summary), "--", *script_args]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TIKTOKEN_PLUGIN), env.get("PYTHONPATH", "")) if p)
    env["SSL_CERT_FILE"] = str(ctx.cert_file)
    code, process_s = _run_peer(cmd, env, log_file, _timeout_s(result.ideal_s))
    if not _peer_timing(result, code, process_s, summary, log_file):
        return result
    seen: list[str] = []
    ok = failed = 0
    for line in out.read_text().splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)  # [request, response or [errors], metadata]
        seen.append(entry[2]["prompt_id"])
        if isinstance(entry[1], dict) and entry[1].get("choices"):
            ok += 1
        else:
            failed += 1
    result.ok, result.failed, result.ids = ok, failed, check_ids(files.ids, seen)
    return result


RUNNERS: dict[str, Callable[[Context, Scenario, Files, Path], RunResult]] = {
    "promptforge": run_promptforge,
    "oaib": run_oaib,
    "aiolimiter": run_aiolimiter,
    "cookbook": run_cookbook,
}


def warm_up(ctx: Context, work: Path) -> None:
    """One small job through the whole pipeline, so the function servers have imported
    their code (the peers' clocks also start after their imports); not measured."""
    # Its model has no limits in PROMPTFORGE_RATE_LIMITS; the fake server has none configured yet.
    warm = Scenario(prompts=20, rpm=6000, tpm=2_000_000, latency_ms=0, name="bench-warm-up")
    files = write_files(warm, work / warm.label)
    result = run_promptforge(ctx, warm, files, work / warm.label)
    if result.wall_s is None or not (result.ids and result.ids.correct):
        raise SystemExit(f"bench: the warm-up job did not complete correctly: {result.note or result.ids}")
    log(f"warm-up job done in {result.wall_s:.1f}s")


def tools_of(scenario: Scenario, wanted: list[str]) -> list[str]:
    """The scenario's tools that this run asked for, in the scenario's order."""
    return [t for t in scenario.tools if t in wanted]


def run_scenario(ctx: Context, scenario: Scenario, tools: list[str]) -> list[RunResult]:
    work = ctx.out / "work" / scenario.label
    files = write_files(scenario, work)
    config = ctx.fake.configure(
        rpm=scenario.rpm,
        tpm=scenario.tpm,
        burst_s=ctx.args.burst_s,
        latency_ms=scenario.latency_ms,
        latency_dist=ctx.args.latency_dist,
        faults=dict(scenario.faults),
    )
    ideal = ideal_seconds(scenario.prompts, scenario.rpm, scenario.tpm, files.tokens)
    faults = f", faults {dict(scenario.faults)}" if scenario.faults else ""
    log(
        f"scenario {scenario.label}: {scenario.prompts:,} prompts, {scenario.rpm:,} rpm, {scenario.tpm:,} tpm, "
        f"{scenario.latency_ms:g} ms ({config['latency_dist']}), burst {config['burst_s']:g}s, "
        f"limits {'configured' if scenario.configured else 'NOT configured'}{faults}; ideal {ideal:.1f}s"
    )
    results = []
    for tool in tools:
        # Every tool meets the same provider: full buckets, zero counters, and the same
        # sequence of latencies and faults (re-seeded).
        ctx.fake.configure(seed=ctx.args.seed)
        ctx.fake.reset()
        time.sleep(1.0)
        load = os.getloadavg()[0]
        log(f"  {tool} ...")
        result = RUNNERS[tool](ctx, scenario, files, work)
        result.extra["label"] = scenario.label
        stats, timeline = ctx.fake.stats(), ctx.fake.timeline()
        result.requests = int(stats["requests_total"])
        result.rate_limited = int(stats["rate_limited"])
        result.requests_after_1s, result.rate_limited_after_1s = after_first_second(timeline["seconds"])
        clock_start = result.extra.pop("started_epoch", None)
        first = timeline["first_epoch"]
        result.extra["timeline"] = {
            # Where the provider's second 0 falls on the tool's clock.
            "offset_s": round(first - clock_start, 3) if first is not None and clock_start is not None else 0.0,
            "seconds": timeline["seconds"],
        }
        result.extra.update(
            load_1m_before=round(load, 2),
            by_status=stats.get("by_status"),
            by_fault=stats.get("by_fault"),
            max_in_flight=stats.get("max_in_flight"),
        )
        ratio = "-" if result.ratio is None else f"{result.ratio:.3f}"
        wall = "-" if result.wall_s is None else f"{result.wall_s:.1f}s"
        after = result.share_429_after_1s
        log(
            f"  {tool}: {wall}, ratio {ratio}, {result.requests:,} requests, {result.rate_limited:,} x 429"
            + ("" if after is None else f" ({100 * after:.2f}% after 1s)")
            + f", {result.failed} failed, {result.lost} lost, {result.duplicated} dup"
            + (f"; {result.note}" if result.note else "")
        )
        results.append(result)
    return results


# --- the TLS front for the cookbook -------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the TLS front exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"the TLS front did not listen on {port} within {timeout_s:.0f}s")


# --- main ---------------------------------------------------------------------------------


def _csv_numbers(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m infra.bench.throughput",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--suite", action="store_true", help="run every scenario: " + ", ".join(SCENARIOS) + " (the issue 12 table)"
    )
    parser.add_argument("--scenario", action="append", choices=SCENARIOS, default=[], help="run this scenario (repeatable)")
    parser.add_argument(
        "--prompts", type=int, default=10_000, help="prompts in the headline job and the configured and learned scenarios"
    )
    parser.add_argument("--rpm", type=int, default=6000, help="the limit: requests per minute")
    parser.add_argument("--tpm", type=int, default=2_000_000, help="the limit: tokens per minute (the tokens scenario: 400,000)")
    parser.add_argument(
        "--latency-ms", type=float, default=300.0, help="the fake server's latency (lognormal: the median); the peers' point"
    )
    parser.add_argument("--latency-dist", choices=("uniform", "lognormal", "exponential"), default="lognormal")
    parser.add_argument("--latencies", default="100,300,1000", help="ms: the configured scenario's points")
    parser.add_argument("--seed", type=int, default=0, help="the fake server's latency and fault draws")
    parser.add_argument(
        "--burst-s",
        type=float,
        default=1.0,
        help="the fake server's buckets hold this many seconds of the limit (1: enforced per second, as OpenAI may quantize)",
    )
    parser.add_argument("--grid", action="store_true", help="run the latency and limit grid instead of the headline job")
    parser.add_argument("--grid-prompts", type=int, default=2000)
    parser.add_argument("--grid-latencies", default="100,300,1000", help="ms, at --rpm")
    parser.add_argument("--grid-rpms", default="3000,6000", help="requests per minute, at --latency-ms")
    parser.add_argument("--tools", default=",".join(TOOLS), help="which of: " + ", ".join(TOOLS))
    parser.add_argument(
        "--cookbook-script",
        type=Path,
        default=Path(os.environ["COOKBOOK_SCRIPT"]) if os.environ.get("COOKBOOK_SCRIPT") else None,
        help="the cookbook's api_request_parallel_processor.py (default: $COOKBOOK_SCRIPT; none: skip the cookbook)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench-out")
    parser.add_argument("--base-port", type=int, default=8600, help="the benchmark stack's base port")
    parser.add_argument(
        "--stack-env", action="append", default=[], metavar="KEY=VALUE", help="extra environment for the stack (experiments)"
    )
    args = parser.parse_args(argv)
    if args.suite:
        args.scenario = list(SCENARIOS)
    if args.scenario and args.grid:
        parser.error("--grid and --suite/--scenario are separate runs")
    args.tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = set(args.tools) - set(TOOLS)
    if unknown:
        parser.error(f"unknown tools: {', '.join(sorted(unknown))}")
    if "cookbook" in args.tools:
        if args.cookbook_script is None:
            log("no --cookbook-script (nor $COOKBOOK_SCRIPT): skipping the cookbook; docs/benchmarks.md says how to get it")
            args.tools.remove("cookbook")
        elif not args.cookbook_script.is_file():
            parser.error(f"--cookbook-script {args.cookbook_script} is not a file")
        else:
            args.cookbook_script = args.cookbook_script.resolve()
    return args


def suite(args: argparse.Namespace, kinds: list[str]) -> list[Scenario]:
    """The issue 12 scenarios asked for, in the order of :data:`SCENARIOS`.

    The peers run where a user of them would be in the same place: given the limits. They
    run at one latency (``--latency-ms``) only, so the whole suite at 10,000 prompts stays
    within about 25 minutes.
    """
    n, small = args.prompts, max(1, round(args.prompts * SMALL_SHARE))
    points: list[Scenario] = []
    if "configured" in kinds:
        for latency in _csv_numbers(args.latencies):
            tools = TOOLS if latency == args.latency_ms else ("promptforge",)
            points.append(Scenario(n, args.rpm, args.tpm, latency, kind="configured", tools=tools))
    if "learned" in kinds:
        points.append(Scenario(n, args.rpm, args.tpm, args.latency_ms, kind="learned", configured=False, tools=("promptforge",)))
    if "tokens" in kinds:
        points.append(
            Scenario(
                small,
                args.rpm,
                TOKENS_TPM,
                args.latency_ms,
                kind="tokens",
                prompt_chars=TOKENS_PROMPT_CHARS,
                max_tokens=TOKENS_MAX_TOKENS,
                tools=("promptforge", "aiolimiter"),
            )
        )
    if "faults" in kinds:
        points.append(
            Scenario(
                small,
                args.rpm,
                args.tpm,
                args.latency_ms,
                kind="faults",
                faults=FAULTS,
                tools=("promptforge", "oaib", "aiolimiter"),
            )
        )
    return points


def scenarios_of(args: argparse.Namespace) -> list[Scenario]:
    if args.scenario:
        return suite(args, args.scenario)
    if not args.grid:
        return [Scenario(args.prompts, args.rpm, args.tpm, args.latency_ms)]
    points = [
        Scenario(args.grid_prompts, args.rpm, args.tpm, latency, kind="grid") for latency in _csv_numbers(args.grid_latencies)
    ]
    for rpm in _csv_numbers(args.grid_rpms):
        # The same token limit per request as the base point (so tokens never bind first).
        point = Scenario(args.grid_prompts, int(rpm), max(1, int(args.tpm * rpm / args.rpm)), args.latency_ms, kind="grid")
        if all((p.rpm, p.latency_ms) != (point.rpm, point.latency_ms) for p in points):
            points.append(point)
    return points


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.monotonic()
    scenarios = scenarios_of(args)
    args.out.mkdir(parents=True, exist_ok=True)
    bench_py = bench_python()  # the peers, the TLS front and matplotlib live there

    # The learned scenario's model is left out: PromptForge finds its limits from the answers.
    limits = {f"fake/{s.model}": {"rpm": s.rpm, "tpm": s.tpm} for s in scenarios if s.configured}
    extra_env = {"PROMPTFORGE_RATE_LIMITS": json.dumps(limits)}
    extra_env.update(dict(kv.split("=", 1) for kv in args.stack_env))
    stack = Stack("dev", base_port=args.base_port, run_dir=ROOT / ".run" / "bench", extra_env=extra_env)
    stack.down()  # whatever an interrupted benchmark run left in .run/bench
    tls: subprocess.Popen[bytes] | None = None
    results: list[RunResult] = []
    try:
        log(f"starting the benchmark stack on ports {args.base_port}-{args.base_port + 15} ...")
        stack.up()
        from infra.demo import create_key

        ctx = Context(
            args, stack, create_key(stack), FakeServer(f"http://{HOST}:{stack.ports['fake-llm']}"), bench_py, None, None, args.out
        )
        if "cookbook" in args.tools:
            ctx.tls_port = _free_port()
            cert_dir = args.out / "tls"
            with (args.out / "tls_front.log").open("wb") as tls_log:
                tls = subprocess.Popen(
                    [str(bench_py), "-m", "infra.bench.tls_front", "--port", str(ctx.tls_port)]
                    + ["--target-port", str(stack.ports["fake-llm"]), "--cert-dir", str(cert_dir)],
                    cwd=ROOT,
                    stdout=tls_log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            _wait_port(ctx.tls_port, tls)
            ctx.cert_file = cert_dir / "cert.pem"
        if any("promptforge" in tools_of(s, args.tools) for s in scenarios):
            warm_up(ctx, args.out / "work")
        for scenario in scenarios:
            results += run_scenario(ctx, scenario, tools_of(scenario, args.tools))
    finally:
        if tls is not None:
            with _process_group_guard(tls):
                pass
        log("stopping the benchmark stack ...")
        problems = stack.down()
        for p in problems:
            log(f"LEFT OVER: {p}")

    report(args, scenarios, results, bench_py, time.monotonic() - began)
    return 0


def report(
    args: argparse.Namespace, scenarios: list[Scenario], results: list[RunResult], bench_py: Path, elapsed_s: float
) -> None:
    table = format_table(results)
    print()
    print(table)
    if any(r.failed for r in results):
        print("*: some prompts failed; the ratio counts answered prompts only, over a run that ended without them")
    for r in results:
        if r.note:
            print(f"note: {r.tool} {r.prompts} prompts, {r.rpm} rpm, {r.latency_ms:g} ms: {r.note}")
    meta = {
        "when": datetime.now().isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python -m infra.bench.throughput", *sys.argv[1:]]),
        "burst_s": args.burst_s,
        "latency_dist": args.latency_dist,
        "seed": args.seed,
        "cpus": os.cpu_count(),
        "elapsed_s": round(elapsed_s, 1),
    }
    data: dict[str, Any] = {"meta": meta, "scenarios": [], "grid": None}
    for scenario in scenarios:
        runs = [r.as_dict() for r in results if r.scenario == scenario.kind and r.extra.get("label") == scenario.label]
        data["scenarios"].append({"label": scenario.label, "scenario": asdict(scenario), "runs": runs})
    if args.grid:
        data["grid"] = {
            "prompts": args.grid_prompts,
            "base_rpm": args.rpm,
            "base_latency_ms": args.latency_ms,
            "runs": [r.as_dict() for r in results],
        }
    print(f"\nthe whole run took {elapsed_s / 60:.1f} minutes (stack start-up, warm-up and every tool)")
    path = args.out / "results.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    (args.out / "results.md").write_text(f"`{meta['command']}` ({meta['when']})\n\n{format_table(results, markdown=True)}\n")
    print(f"\nwrote {path} and {args.out / 'results.md'}")
    plotted = subprocess.run([str(bench_py), "-m", "infra.bench.plot", str(path)], cwd=ROOT, capture_output=True, text=True)
    if plotted.returncode == 0:
        for line in plotted.stdout.split():
            print(f"wrote {line}")
    else:
        print(f"plot failed:\n{plotted.stderr}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
