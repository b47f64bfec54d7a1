"""Scale and cost benchmark: N prompts through the local stack with an instant provider.

    .venv/bin/python -m infra.bench.scale [--prompts 20000,100000] [--rpm 10000]
        [--latency-ms 300,3000] [--base-port 8700] [--out bench-out/scale]

For each N, a fresh local stack (profile ``dev`` on ``--base-port``, run directory
``.run/bench-scale``; fresh so each N has its own peak RSS and an empty emulator) with
``PROMPTFORGE_METER_DIR`` set, so every function process counts the billable operations it
causes (:mod:`promptforge.adapters.metering`). The stack's fake LLM answers at once, with no
limit. One warm-up job (20 prompts, not measured), then the job of N prompts through the
public API exactly as the throughput benchmark sends it (init, PUT, poll, download, every
prompt_id checked to come back exactly once).

Measured around the job: wall time (PUT to the poll that sees COMPLETED), CPU seconds of
every function's processes (``/proc/PID/stat``), their peak RSS (``VmHWM``, since the stack
started), the operations the meters counted, and the bytes left in the buckets. Then, in
the same stack, a paced job per latency of ``--latency-ms``, the fake LLM at ``--rpm`` and
that latency: heartbeats and time-driven checkpoints grow with a worker's time, which only a
job at the limit shows. The platform cost per 1M prompts at each latency: the paced job's
counted operations priced with ``platform_prices.json``, plus function compute, where
process_chunk's is modelled for production by :func:`chunk_compute` (docs/scale.md).

Prints one table per N and writes ``results.json`` and ``results.md`` to ``--out``. This is a
measurement, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from infra.bench.throughput import Context, FakeServer, Scenario, _csv_numbers, log, run_promptforge, warm_up, write_files
from infra.stack import FUNCTIONS, HOST, Stack

ROOT = Path(__file__).resolve().parents[2]
PRICES_FILE = Path(__file__).resolve().parent / "platform_prices.json"
FUNCTIONS_TF = ROOT / "terraform" / "modules" / "promptforge" / "functions.tf"
FUNCTIONS_TABLE_TF = FUNCTIONS_TF.with_name("functions_table.tf")  # local.functions (generated)
METER_DIR_ENV = "PROMPTFORGE_METER_DIR"  # promptforge.adapters.metering reads it in every function
METER_FLUSH_S = 2.0  # promptforge.adapters.metering.FLUSH_SECONDS
# Cloud Run scales out to keep each instance's CPU and its concurrency at 60% of what it
# has (the default targets: https://cloud.google.com/run/docs/configuring/scaling-controls).
CLOUD_RUN_TARGET = 0.6
GIB = 1024**3
ONE_MILLION = 1_000_000
# A floor on the rate used only for the job's give-up time (five times N at this rate).
TIMEOUT_RATE_RPM = 6000


# --- the production model of process_chunk's compute ----------------------------------------


@dataclass(frozen=True)
class ChunkCompute:
    """process_chunk's billed time for one job run at the provider's limit."""

    rate: float  # prompts per second: the limit
    wall_s: float  # the job's time at that rate
    chunks: int  # chunk workers in flight to reach it (Little's law)
    instances: int  # instances holding them
    instance_s: float
    cpu_busy: float  # share of the instances' vCPUs the measured CPU per prompt keeps busy


def chunk_compute(
    prompts: int,
    rpm: float,
    latency_s: float,
    cpu_s_per_prompt: float,
    worker_concurrency: int,
    instance_concurrency: int,
    vcpu: float = 1.0,
    target: float = CLOUD_RUN_TARGET,
) -> ChunkCompute:
    """Instance-seconds of process_chunk for ``prompts`` at ``rpm`` and ``latency_s``.

    The job runs at the limit, so it lasts ``prompts / (rpm / 60)`` seconds. To keep the
    limit busy ``rate * latency`` requests are in flight, ``worker_concurrency`` per chunk
    worker. An instance takes ``instance_concurrency`` chunks; Cloud Run packs them to its
    concurrency target (never more instances than chunks: with request-based billing an
    instance without a request costs nothing), and adds instances when the measured CPU
    per prompt would keep them above its CPU target. Every instance is billed for the
    whole job: a chunk request is open from its first prompt to its last.
    """
    if prompts <= 0 or rpm <= 0 or latency_s < 0 or worker_concurrency < 1 or instance_concurrency < 1:
        raise ValueError("prompts and rpm must be positive, the concurrencies at least 1")
    rate = rpm / 60
    wall_s = prompts / rate
    chunks = max(1, math.ceil(rate * latency_s / worker_concurrency))
    packed = max(math.ceil(chunks / instance_concurrency), min(chunks, math.ceil(chunks / (instance_concurrency * target))))
    by_cpu = math.ceil(rate * cpu_s_per_prompt / (vcpu * target))
    instances = max(packed, by_cpu)
    return ChunkCompute(rate, wall_s, chunks, instances, wall_s * instances, rate * cpu_s_per_prompt / (instances * vcpu))


# --- prices and function sizes ------------------------------------------------------------------


def load_prices(path: Path = PRICES_FILE) -> dict[str, float]:
    entries = json.loads(path.read_text())["prices"]
    missing = [k for k, e in entries.items() if not e.get("source") or not e.get("read_on")]
    if missing:
        raise SystemExit(f"scale: {path.name}: every price needs its source and date: {', '.join(missing)}")
    return {k: float(e["price"]) for k, e in entries.items()}


@dataclass(frozen=True)
class Size:
    memory_gib: float
    concurrency: int
    vcpu: float = 1.0


def _concurrency(found: str, functions_tf: Path) -> int:
    """A function's concurrency: a number, or a module variable's default (variables.tf)."""
    if not found.startswith("var."):
        return int(found)
    name = found[4:]
    variables = (functions_tf.parent / "variables.tf").read_text()
    block = re.search(rf'variable "{name}" \{{(.*?)^\}}', variables, re.M | re.S)
    default = re.search(r"default\s*=\s*(\d+)", block.group(1)) if block else None
    if default is None:
        raise SystemExit(f"scale: variable {name} has no number default in {functions_tf.parent / 'variables.tf'}")
    return int(default.group(1))


def function_sizes(path: Path = FUNCTIONS_TF, table: Path = FUNCTIONS_TABLE_TF) -> dict[str, Size]:
    """Each function's memory and concurrency, as terraform deploys them."""
    vcpu = re.search(r'available_cpu\s*=\s*"([\d.]+)"', path.read_text())
    text = table.read_text()
    sizes: dict[str, Size] = {}
    for match in re.finditer(r"^    (\w+) = \{(.*?)^    \}", text, re.M | re.S):
        body = match.group(2)
        memory = re.search(r'memory\s*=\s*"(\d+)(Mi|Gi)"', body)
        concurrency = re.search(r"concurrency\s*=\s*(\d+|var\.\w+)", body)
        if memory and concurrency:
            gib = int(memory.group(1)) / (1024 if memory.group(2) == "Mi" else 1)
            cpus = float(vcpu.group(1)) if vcpu else 1.0
            sizes[match.group(1)] = Size(gib, _concurrency(concurrency.group(1), path), cpus)
    missing = {f.name for f in FUNCTIONS} - set(sizes)
    if missing:
        raise SystemExit(f"scale: no memory/concurrency for {', '.join(sorted(missing))} in {table}")
    return sizes


# --- what the processes used ----------------------------------------------------------------------


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes and their reaped children, in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
    return total / ticks


def peak_rss_bytes(pids: list[int]) -> int:
    """The largest VmHWM among these processes (the function's worker)."""
    peak = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) * 1024)
    return peak


def read_meters(directory: Path) -> dict[str, Counter[str]]:
    """Function -> the counts its processes' meters wrote."""
    totals: dict[str, Counter[str]] = {}
    for path in directory.glob("*.json"):
        data = json.loads(path.read_text())
        totals.setdefault(data["function"], Counter()).update(data["counts"])
    return totals


def bucket_bytes(stack: Stack, buckets: list[str]) -> int:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(
        project=stack.project,
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": f"http://{HOST}:{stack.ports['fake-gcs']}"},
    )
    return sum(int(blob.size or 0) for bucket in buckets for blob in client.list_blobs(bucket))


@dataclass
class Snapshot:
    cpu_s: dict[str, float]
    meters: dict[str, Counter[str]]
    stored_bytes: int


def snapshot(stack: Stack, meter_dir: Path, buckets: list[str]) -> Snapshot:
    procs = stack.processes()
    return Snapshot(
        {f.name: cpu_seconds(procs.get(f.name, [])) for f in FUNCTIONS},
        read_meters(meter_dir),
        bucket_bytes(stack, buckets),
    )


def settle(stack: Stack, meter_dir: Path, buckets: list[str]) -> Snapshot:
    """A snapshot once nothing moves: two in a row, a flush apart, that agree."""
    last = snapshot(stack, meter_dir, buckets)
    for _ in range(30):
        time.sleep(METER_FLUSH_S + 0.5)
        now = snapshot(stack, meter_dir, buckets)
        if now.meters == last.meters and now.stored_bytes == last.stored_bytes:
            return now
        last = now
    log("  the meters still moved after 75 s; using the last reading")
    return last


# --- one run ------------------------------------------------------------------------------------------


@dataclass
class Job:
    """One job through the stack and what it cost, measured from settled readings around it."""

    prompts: int
    wall_s: float | None = None
    exactly_once: str = ""
    cpu_s: dict[str, float] = field(default_factory=dict)
    ops: dict[str, dict[str, int]] = field(default_factory=dict)  # function -> counter -> n
    client: dict[str, int] = field(default_factory=dict)  # what the client did beyond the functions
    stored_bytes: int = 0
    rate_limited: int = 0  # answers the fake LLM gave 429
    note: str = ""


@dataclass
class Run(Job):
    """The job of N prompts with an instant provider, and the paced jobs at each latency."""

    peak_rss: dict[str, int] = field(default_factory=dict)
    paced: dict[float, Job] = field(default_factory=dict)  # latency ms -> a job at the limit


@dataclass
class Bench:
    args: argparse.Namespace
    ctx: Context
    meter_dir: Path
    buckets: list[str]

    def measure(self, job: Job, scenario: Scenario, work: Path) -> None:
        stack = self.ctx.stack
        before = settle(stack, self.meter_dir, self.buckets)
        self.ctx.fake.reset()
        files = write_files(scenario, work / scenario.label)
        result = run_promptforge(self.ctx, scenario, files, work / scenario.label)
        after = settle(stack, self.meter_dir, self.buckets)
        job.wall_s, job.note = result.wall_s, result.note
        job.exactly_once = result.ids.describe() if result.ids else "not checked"
        job.rate_limited = int(self.ctx.fake.stats().get("rate_limited", 0))
        job.cpu_s = {name: after.cpu_s[name] - before.cpu_s.get(name, 0.0) for name in after.cpu_s}
        for name in set(after.meters) | set(before.meters):
            delta = after.meters.get(name, Counter()) - before.meters.get(name, Counter())
            if delta:
                job.ops[name] = dict(delta)
        job.stored_bytes = after.stored_bytes - before.stored_bytes
        results = work / scenario.label / "promptforge-results"
        # The client's own calls: init, the status polls and the results listing hit
        # functions; its PUT of the file and its downloads go to Cloud Storage directly.
        job.client = {
            "function_requests": 2 + int(result.extra.get("polls", 0)),
            "storage.class_a": 1,
            "storage.class_b": len(list(results.iterdir())) if results.exists() else 0,
            "upload_events": 1,
        }
        wall = "-" if job.wall_s is None else f"{job.wall_s:.1f}s"
        log(f"  done: {wall}, exactly once: {job.exactly_once}, {job.rate_limited} x 429" + (f"; {job.note}" if job.note else ""))


def paced_model(latency_ms: float) -> str:
    return f"scale-paced-l{latency_ms:g}"


def run_one(args: argparse.Namespace, prompts: int) -> Run:
    run = Run(prompts)
    run_dir = args.run_dir.resolve()
    meter_dir = run_dir / "meters"
    with contextlib.suppress(FileNotFoundError):
        for stale in meter_dir.iterdir():
            stale.unlink()
    # The paced jobs' models have the limit configured, as an operator would.
    limits = {f"fake/{paced_model(lat)}": {"rpm": int(args.rpm)} for lat in args.latency_ms}
    extra_env = {METER_DIR_ENV: str(meter_dir), "PROMPTFORGE_RATE_LIMITS": json.dumps(limits)}
    extra_env.update(dict(kv.split("=", 1) for kv in args.stack_env))
    stack = Stack("dev", base_port=args.base_port, run_dir=run_dir, extra_env=extra_env)
    stack.down()  # whatever an interrupted run left in the run directory
    buckets = [stack.env()["PROMPTFORGE_UPLOAD_BUCKET"], stack.env()["PROMPTFORGE_RESULTS_BUCKET"]]
    work = args.out / "work" / f"n{prompts}"
    try:
        log(f"n={prompts:,}: starting a fresh stack on ports {args.base_port}-{args.base_port + 23} ...")
        stack.up()
        from infra.demo import create_key

        fake = FakeServer(f"http://{HOST}:{stack.ports['fake-llm']}")
        bench = Bench(
            args, Context(args, stack, create_key(stack), fake, Path(sys.executable), None, None, args.out), meter_dir, buckets
        )
        warm_up(bench.ctx, work)
        log(f"  job of {prompts:,} prompts, instant provider ...")
        bench.measure(run, Scenario(prompts, TIMEOUT_RATE_RPM, 10**12, 0.0, name=f"scale-n{prompts}"), work)
        procs = stack.processes()
        run.peak_rss = {f.name: peak_rss_bytes(procs.get(f.name, [])) for f in FUNCTIONS}
        paced_prompts = min(prompts, 20_000) if args.paced_prompts is None else args.paced_prompts
        for latency in args.latency_ms if paced_prompts else []:
            fake.configure(rpm=int(args.rpm), tpm=None, burst_s=1.0, latency_ms=latency)
            log(f"  paced job of {paced_prompts:,} prompts at {args.rpm:,.0f} rpm, {latency:g} ms ...")
            paced = Job(paced_prompts)
            scenario = Scenario(paced_prompts, int(args.rpm), 10**12, latency, name=paced_model(latency))
            bench.measure(paced, scenario, work)
            run.paced[latency] = paced
        fake.configure(rpm=None, tpm=None, latency_ms=0.0)
    finally:
        problems = stack.down()
        for p in problems:
            log(f"LEFT OVER: {p}")
    return run


# --- cost -----------------------------------------------------------------------------------------------


@dataclass
class Cost:
    latency_ms: float
    basis: str  # which job's counts: the paced one at this latency, or the instant one
    per_thousand: str  # that job's operations per 1,000 prompts
    compute: ChunkCompute
    lines: dict[str, float]  # $ per 1M prompts, by line

    @property
    def total(self) -> float:
        return sum(self.lines.values())


def totals(job: Job) -> Counter[str]:
    ops: Counter[str] = Counter()
    for counts in job.ops.values():
        ops.update(counts)
    return ops


def costs(run: Run, args: argparse.Namespace, prices: dict[str, float], sizes: dict[str, Size]) -> list[Cost]:
    """$ per 1M prompts at each of ``--latency-ms``: the counts and CPU of the paced job at
    that latency (of the instant job when there is none), process_chunk's compute modelled."""
    out = []
    for latency in args.latency_ms:
        job = run.paced.get(latency, run)
        scale = ONE_MILLION / job.prompts
        ops = totals(job)
        unpriced = sorted(k for k in ops if k.startswith("unpriced."))
        if unpriced:
            raise SystemExit(f"scale: calls with no billing rule in promptforge.adapters.metering: {', '.join(unpriced)}")
        tasks = ops["tasks.creates"]
        # Every function request: a task's delivery (at least one per task created), the
        # upload event, the client's API calls.
        requests = tasks + job.client["upload_events"] + job.client["function_requests"]
        lines = {
            "firestore reads": ops["firestore.reads"] * prices["firestore_read"],
            "firestore writes": ops["firestore.writes"] * prices["firestore_write"],
            "firestore deletes": ops["firestore.deletes"] * prices["firestore_delete"],
            "storage class A": (ops["storage.class_a"] + job.client["storage.class_a"]) * prices["storage_class_a"],
            "storage class B": (ops["storage.class_b"] + job.client["storage.class_b"]) * prices["storage_class_b"],
            # Objects stay until the bucket's lifecycle rule deletes them.
            "storage GB-month": job.stored_bytes / GIB * args.retention_days / 30 * prices["storage_gb_month"],
            # A task is a create call and at least one push delivery attempt.
            "tasks": 2 * tasks * prices["tasks_operation"],
            "function requests": requests * prices["run_request"],
        }
        # Functions other than process_chunk: billed at least for the CPU they used (an
        # instance's billed time is never shorter than its busy vCPU time).
        other = 0.0
        for name, cpu in job.cpu_s.items():
            if name != "process_chunk":
                size = sizes[name]
                other += cpu / size.vcpu * (size.vcpu * prices["run_vcpu_second"] + size.memory_gib * prices["run_gib_second"])
        lines["other functions' compute"] = other
        lines = {k: v * scale for k, v in lines.items()}
        chunk = sizes["process_chunk"]
        cpu_per_prompt = job.cpu_s.get("process_chunk", 0.0) / job.prompts
        model = chunk_compute(
            ONE_MILLION, args.rpm, latency / 1000, cpu_per_prompt, args.worker_concurrency, chunk.concurrency, chunk.vcpu
        )
        per_s = chunk.vcpu * prices["run_vcpu_second"] + chunk.memory_gib * prices["run_gib_second"]
        lines["process_chunk compute"] = model.instance_s * per_s
        basis = f"paced {job.prompts:,}" if job is not run else f"instant {job.prompts:,}"
        per_k = [ops[key] * 1000 / job.prompts for _, key in OP_COLUMNS]
        per_thousand = "{:.0f}/{:.0f}/{:.0f}, {:.1f}/{:.1f}, {:.1f}".format(*per_k)
        out.append(Cost(latency, basis, per_thousand, model, lines))
    return out


# --- report --------------------------------------------------------------------------------------------------


def _table(headers: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return "\n".join([fmt.format(*headers), fmt.format(*("-" * w for w in widths))] + [fmt.format(*r) for r in rows])


OP_COLUMNS = (
    ("fs reads", "firestore.reads"),
    ("fs writes", "firestore.writes"),
    ("fs deletes", "firestore.deletes"),
    ("gcs A", "storage.class_a"),
    ("gcs B", "storage.class_b"),
    ("tasks", "tasks.creates"),
)


def render(run: Run, cost: list[Cost], args: argparse.Namespace, markdown: bool = False) -> str:
    n = run.prompts
    rate = f"{n / run.wall_s:,.0f}" if run.wall_s else "-"
    wall = f"{run.wall_s:.1f}" if run.wall_s else "-"
    out = [f"N = {n:,} prompts: wall {wall} s, {rate} prompts/s, every prompt_id exactly once: {run.exactly_once}"]
    if run.note:
        out.append(f"note: {run.note}")
    for latency, job in run.paced.items():
        paced_rate = f"{job.prompts / job.wall_s * 60:,.0f} prompts/min" if job.wall_s else "-"
        out.append(
            f"paced job at {args.rpm:,.0f} rpm, {latency:g} ms: {job.prompts:,} prompts, {paced_rate}, "
            f"{job.rate_limited:,} x 429, exactly once: {job.exactly_once}" + (f"; {job.note}" if job.note else "")
        )
    rows = []
    for f in FUNCTIONS:
        cpu, ops = run.cpu_s.get(f.name, 0.0), run.ops.get(f.name, {})
        if cpu < 0.005 and not ops:
            continue
        rows.append(
            [f.name, f"{cpu:.2f}", f"{cpu / n * 1e6:,.0f}", f"{run.peak_rss.get(f.name, 0) / 2**20:,.0f}"]
            + [f"{ops.get(key, 0):,}" for _, key in OP_COLUMNS]
        )
    ops = totals(run)
    rows.append(["all functions", f"{sum(run.cpu_s.values()):.2f}", f"{sum(run.cpu_s.values()) / n * 1e6:,.0f}", ""])
    rows[-1] += [f"{ops.get(key, 0):,}" for _, key in OP_COLUMNS]
    rows.append(["per 1,000 prompts", "", "", ""] + [f"{ops.get(key, 0) * 1000 / n:,.1f}" for _, key in OP_COLUMNS])
    headers = ["function", "CPU s", "CPU us/prompt", "peak RSS MiB"] + [h for h, _ in OP_COLUMNS]
    out += ["", _table(headers, rows, markdown)]
    if cost:
        lines = list(cost[0].lines)
        crow = [[line] + [f"{c.lines[line]:.4f}" for c in cost] for line in lines]
        crow.append(["total"] + [f"{c.total:.4f}" for c in cost])
        crow.append(["process_chunk chunks / instances"] + [f"{c.compute.chunks} / {c.compute.instances}" for c in cost])
        crow.append(["process_chunk vCPU busy"] + [f"{c.compute.cpu_busy:.1%}" for c in cost])
        crow.append(["counts and CPU of the job"] + [c.basis for c in cost])
        crow.append(["its fs R/W/D, gcs A/B, tasks per 1k prompts"] + [c.per_thousand for c in cost])
        cheaders = [f"$ per 1M prompts at {args.rpm:,} rpm"] + [f"{c.latency_ms:g} ms" for c in cost]
        out += ["", _table(cheaders, crow, markdown)]
    return "\n".join(out)


# --- main --------------------------------------------------------------------------------------------------


def _ints(text: str) -> list[int]:
    return [int(x) for x in _csv_numbers(text)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m infra.bench.scale",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--prompts", type=_ints, default=[20_000, 100_000], help="job sizes, comma-separated")
    parser.add_argument("--rpm", type=float, default=10_000, help="the provider's limit the cost model runs the job at")
    parser.add_argument("--latency-ms", type=_csv_numbers, default=[300.0, 3000.0], help="latencies the cost model prices")
    parser.add_argument(
        "--paced-prompts",
        type=int,
        default=None,
        help="prompts in the job run at --rpm and each latency, whose counts are priced "
        "(default: N, at most 20,000; 0: price the instant job's counts)",
    )
    parser.add_argument(
        "--worker-concurrency",
        type=int,
        default=None,
        help="requests one chunk worker keeps in flight (default: the stack's PROMPTFORGE_WORKER_CONCURRENCY)",
    )
    parser.add_argument("--retention-days", type=float, default=None, help="days objects are kept (default: the stack's)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-out" / "scale")
    parser.add_argument("--base-port", type=int, default=8700, help="the benchmark stack's base port")
    parser.add_argument("--run-dir", type=Path, default=ROOT / ".run" / "bench-scale")
    parser.add_argument(
        "--stack-env", action="append", default=[], metavar="KEY=VALUE", help="extra environment for the stack (experiments)"
    )
    return parser.parse_args(argv)


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def stack_settings(args: argparse.Namespace) -> Any:
    """The settings the stack's functions run with (config defaults, the stack's env, --stack-env)."""
    sys.path.insert(0, str(ROOT / "functions"))
    from promptforge import config

    env = Stack("dev", base_port=args.base_port).env() | dict(kv.split("=", 1) for kv in args.stack_env)
    with _environ(env):
        return config.load()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    prices, sizes = load_prices(), function_sizes()
    settings = stack_settings(args)
    if args.worker_concurrency is None:
        args.worker_concurrency = settings.worker_concurrency
    if args.retention_days is None:
        args.retention_days = settings.results_retention_days
    report: list[dict[str, Any]] = []
    texts, markdown = [], []
    for n in args.prompts:
        run = run_one(args, n)
        cost = costs(run, args, prices, sizes) if run.wall_s else []
        texts.append(render(run, cost, args))
        markdown.append(render(run, cost, args, markdown=True))
        print("\n" + texts[-1], flush=True)
        report.append({"run": asdict(run), "costs": [{**asdict(c), "total": c.total} for c in cost]})
    command = " ".join([".venv/bin/python -m infra.bench.scale", *(argv if argv is not None else sys.argv[1:])])
    meta = {
        "when": datetime.now().isoformat(timespec="seconds"),
        "command": command,
        "rpm": args.rpm,
        "latency_ms": args.latency_ms,
        "worker_concurrency": args.worker_concurrency,
        "process_chunk": asdict(sizes["process_chunk"]),
        "retention_days": args.retention_days,
        "cpus": os.cpu_count(),
    }
    (args.out / "results.json").write_text(json.dumps({"meta": meta, "runs": report}, indent=2) + "\n")
    (args.out / "results.md").write_text(f"`{command}` ({meta['when']})\n\n" + "\n\n".join(markdown) + "\n")
    print(f"\nwrote {args.out / 'results.json'} and {args.out / 'results.md'}")
    return 0 if all(r["run"]["wall_s"] and r["run"]["exactly_once"] == "yes" for r in report) else 1


if __name__ == "__main__":
    sys.exit(main())
