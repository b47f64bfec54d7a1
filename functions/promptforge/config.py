"""Settings read from the environment, in one place.

Every function reads the same variables; Terraform sets them in production and
``infra/stack.py`` sets them on the local stack.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw not in (None, "") else default


def _list(name: str, default: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in os.environ.get(name, default).split(",") if p.strip())


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible server the operator configured for ``openai_compatible`` jobs.

    ``key_env`` names the environment variable holding its key (in production a Secret
    Manager secret mounted into the worker), never the key; ``rpm``/``tpm`` are its limits.
    """

    name: str
    base_url: str
    wire: str = "openai"
    key_env: str | None = None
    rpm: int | None = None
    tpm: int | None = None


_ENDPOINT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def parse_endpoints(raw: str) -> dict[str, Endpoint]:
    """``PROMPTFORGE_ENDPOINTS``: a JSON object of name -> {base_url, wire, key_env, rpm, tpm}."""
    table = json.loads(raw)
    if not isinstance(table, dict):
        raise ValueError("PROMPTFORGE_ENDPOINTS must be a JSON object")
    out: dict[str, Endpoint] = {}
    for name, spec in table.items():
        if not _ENDPOINT_NAME.match(name) or not isinstance(spec, dict) or not spec.get("base_url"):
            raise ValueError(f"PROMPTFORGE_ENDPOINTS: endpoint {name!r} needs a lower-case name and a base_url")
        if spec.get("wire", "openai") != "openai":
            raise ValueError(f"PROMPTFORGE_ENDPOINTS: endpoint {name!r}: wire must be 'openai'")
        out[name] = Endpoint(
            name=name,
            base_url=str(spec["base_url"]),
            wire="openai",
            key_env=spec.get("key_env") or None,
            rpm=int(spec["rpm"]) if spec.get("rpm") else None,
            tpm=int(spec["tpm"]) if spec.get("tpm") else None,
        )
    return out


@dataclass(frozen=True)
class Settings:
    """The service's configuration; build it with :func:`load`."""

    project: str
    upload_bucket: str
    results_bucket: str
    tasks_location: str
    plan_queue: str
    chunk_queues: tuple[str, ...]
    plan_url: str
    chunk_url: str
    # Emulator endpoints: empty in production.
    tasks_emulator_host: str = ""
    storage_emulator_host: str = ""
    # Signed URLs: a local key file on the emulator stack, IAM signBlob in production.
    signing_key_file: str = ""
    signing_service_account: str = ""
    # Identity Cloud Tasks uses for OIDC tokens to the private worker functions.
    tasks_service_account: str = ""
    fake_llm_url: str = "http://127.0.0.1:8405/v1"
    upload_url_ttl_seconds: int = 3600
    download_url_ttl_seconds: int = 3600
    # 10 million prompts of ~850 bytes on average; planning and the workers read the file
    # in bounded pieces, so its size costs time, not memory.
    max_upload_bytes: int = 8 * 1024**3
    max_line_bytes: int = 256 * 1024
    max_prompts_per_job: int = 10_000_000
    chunk_max_lines: int = 500
    chunk_max_bytes: int = 8 * 1024 * 1024
    # Planning runs in steps of bounded work (service/plan.py). A scan step reads at most
    # this many bytes, records (non-blank lines) or chunks of the file, then finishes the
    # chunk it is in; its memory is a few dozen bytes per record it read.
    plan_slice_bytes: int = 64 * 1024 * 1024
    plan_slice_records: int = 50_000
    plan_slice_chunks: int = 500
    # A dedupe step holds one entry (~150 bytes) per distinct prompt_id of the records it
    # reads, at most about this many: 100,000 keeps plan_job's peak within about 20 MiB of
    # a small job's (infra/bench/plan_memory.py: 84 MiB at 1M prompts against 151 MiB at
    # 500,000), for a few more steps and ranged reads.
    plan_dedupe_records: int = 100_000
    # An invocation runs steps until this many seconds passed (or it scanned a slice's
    # worth of bytes), then hands the rest to a new planning task; 0 runs one step each.
    plan_invocation_seconds: float = 60.0
    # Deliveries that may start one step before the job fails with planning_failed (the
    # plan queue retries 10 times; the watchdog re-drives a QUEUED job after that).
    plan_max_attempts: int = 5
    worker_concurrency: int = 128
    # A chunk's lease, renewed by its checkpoints (at least every third of it); a dead
    # worker's chunk is free for the task's retry after this long.
    chunk_lease_seconds: int = 60
    # A worker stops taking prompts after this long and hands the rest of its chunk to a
    # continuation task, well inside the 30-minute dispatch deadline.
    chunk_time_budget_seconds: int = 1500
    # Finished rows are checkpointed when this many are waiting, or after this long: a
    # crash re-runs at most that many prompts, and a job's storage operations grow with
    # its prompts / checkpoint_rows rather than with its running time.
    checkpoint_rows: int = 200
    checkpoint_seconds: float = 10.0
    # A process running chunks registers on their rate budget and reads the jobs' stop
    # signals this often (once per process and job, not per chunk).
    heartbeat_seconds: float = 5.0
    # Result files are deleted after this many days (the bucket's lifecycle rule); a job's
    # records expire (Firestore TTL on expire_at) with them.
    results_retention_days: int = 30
    # Inline jobs (POST /v1/jobs) and inline results (?inline=true) stay small.
    inline_max_prompts: int = 1000
    inline_max_bytes: int = 10 * 1024 * 1024
    # How long one events stream stays open; the client then reconnects.
    events_max_seconds: int = 300
    # The watchdog re-drives work idle this long, and fails a job with no progress this long.
    watchdog_grace_seconds: int = 600
    job_stuck_seconds: int = 3600
    status_poll_seconds: int = 5
    # Providers this deployment serves; the fake one only on dev stacks.
    providers: tuple[str, ...] = ("openai_compatible",)
    # {"provider/model" or "provider": {"rpm": ..., "tpm": ...}}; see docs/throughput.md.
    rate_limits: dict[str, dict[str, float]] = field(default_factory=dict)
    # The callback function (a Cloud Tasks target on the plan queue).
    notify_url: str = ""
    # Callbacks must be https; a dev stack may allow http to loopback for its tests.
    allow_loopback_http_callbacks: bool = False
    # The Firestore database of this environment (each has its own, so environments can
    # share a project).
    firestore_database: str = "(default)"
    # The events function's own URL: API Gateway buffers responses, so clients stream
    # GET /v1/jobs/{id}/events from there (the status gives it as events_url). Browsers
    # may call it from these origins (the jobs page's among them).
    events_url: str = ""
    cors_origins: tuple[str, ...] = ()
    # The callbacks' own Cloud Tasks queue, so a slow receiver never holds up planning.
    notify_queue: str = "promptforge-notify"
    # Callbacks of one client being sent at once; more wait (Cloud Tasks retries them).
    max_callbacks_in_flight: int = 5
    # openai_compatible endpoints the operator configured, by name (the only places a
    # deployment credential for them is ever sent), and whether a job may instead name a
    # URL of its own (off by default; such a job carries no credential).
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    allow_client_base_urls: bool = False
    # How many chunk workers can run at once (the chunk queues' concurrent dispatches): a
    # starting worker assumes it shares its budget with that many, or with its job's
    # remaining chunks if fewer, before it has counted the live ones.
    max_concurrent_chunks: int = 1
    # Pace at this share of a limit: a little headroom for clock skew between workers.
    rate_target: float = 0.99
    # A prompt the provider keeps answering 429 waits its turn again (a 429 is not a failed
    # attempt) until it has been refused for this long in all.
    rate_limit_max_wait_seconds: float = 900.0
    # Token estimate for a prompt whose max_tokens is not set.
    default_max_tokens_estimate: int = 256
    # Request parsing
    # The largest body of POST /v1/jobs/init (POST /v1/jobs has inline_max_bytes): room for
    # a 200,000-character system prompt even sent as \u escapes, with metadata and params.
    max_body_bytes: int = 2 * 1024 * 1024
    # Cancel and the Cloud Tasks targets, whose bodies hold a few ids at most.
    max_small_body_bytes: int = 16 * 1024
    # How deep objects and arrays may nest in a request body.
    max_json_depth: int = 64
    # How many objects and arrays a request body may hold: parsed, each costs the instance
    # memory; 1,000 inline prompts with message lists need a few tens of thousands.
    max_json_containers: int = 200_000
    # Fair use per client
    # Caps that keep one client from slowing the others; 0 turns a cap off. Jobs awaiting
    # their upload, and open jobs (awaiting upload, pending, or the active one), are counted
    # when a job is created; event streams while they are open; requests per minute on
    # every call of the public API.
    max_awaiting_uploads: int = 10
    max_open_jobs: int = 100
    max_event_streams: int = 5
    requests_per_minute: int = 600


def load() -> Settings:
    """Read the settings from the process environment."""
    project = os.environ.get("GOOGLE_CLOUD_PROJECT") or os.environ.get("GCP_PROJECT") or "promptforge-local"
    return Settings(
        project=project,
        upload_bucket=os.environ.get("PROMPTFORGE_UPLOAD_BUCKET", f"{project}-uploads"),
        results_bucket=os.environ.get("PROMPTFORGE_RESULTS_BUCKET", f"{project}-results"),
        tasks_location=os.environ.get("PROMPTFORGE_TASKS_LOCATION", "us-central1"),
        plan_queue=os.environ.get("PROMPTFORGE_PLAN_QUEUE", "promptforge-plan"),
        chunk_queues=_list("PROMPTFORGE_CHUNK_QUEUES", "promptforge-chunks"),
        plan_url=os.environ.get("PROMPTFORGE_PLAN_URL", ""),
        chunk_url=os.environ.get("PROMPTFORGE_CHUNK_URL", ""),
        tasks_emulator_host=os.environ.get("PROMPTFORGE_TASKS_EMULATOR_HOST", ""),
        storage_emulator_host=os.environ.get("STORAGE_EMULATOR_HOST", ""),
        signing_key_file=os.environ.get("PROMPTFORGE_SIGNING_KEY_FILE", ""),
        signing_service_account=os.environ.get("PROMPTFORGE_SIGNING_SERVICE_ACCOUNT", ""),
        tasks_service_account=os.environ.get("PROMPTFORGE_TASKS_SERVICE_ACCOUNT", ""),
        fake_llm_url=os.environ.get("PROMPTFORGE_FAKE_LLM_URL", "http://127.0.0.1:8405/v1"),
        upload_url_ttl_seconds=_int("PROMPTFORGE_UPLOAD_URL_TTL_SECONDS", 3600),
        download_url_ttl_seconds=_int("PROMPTFORGE_DOWNLOAD_URL_TTL_SECONDS", 3600),
        max_upload_bytes=_int("PROMPTFORGE_MAX_UPLOAD_BYTES", 8 * 1024**3),
        max_line_bytes=_int("PROMPTFORGE_MAX_LINE_BYTES", 256 * 1024),
        max_prompts_per_job=_int("PROMPTFORGE_MAX_PROMPTS_PER_JOB", 10_000_000),
        chunk_max_lines=_int("PROMPTFORGE_CHUNK_MAX_LINES", 500),
        chunk_max_bytes=_int("PROMPTFORGE_CHUNK_MAX_BYTES", 8 * 1024 * 1024),
        plan_slice_bytes=_int("PROMPTFORGE_PLAN_SLICE_BYTES", 64 * 1024 * 1024),
        plan_slice_records=_int("PROMPTFORGE_PLAN_SLICE_RECORDS", 50_000),
        plan_slice_chunks=_int("PROMPTFORGE_PLAN_SLICE_CHUNKS", 500),
        plan_dedupe_records=_int("PROMPTFORGE_PLAN_DEDUPE_RECORDS", 100_000),
        plan_invocation_seconds=float(os.environ.get("PROMPTFORGE_PLAN_INVOCATION_SECONDS") or 60.0),
        plan_max_attempts=_int("PROMPTFORGE_PLAN_MAX_ATTEMPTS", 5),
        worker_concurrency=_int("PROMPTFORGE_WORKER_CONCURRENCY", 128),
        chunk_lease_seconds=_int("PROMPTFORGE_CHUNK_LEASE_SECONDS", 60),
        chunk_time_budget_seconds=_int("PROMPTFORGE_CHUNK_TIME_BUDGET_SECONDS", 1500),
        checkpoint_rows=_int("PROMPTFORGE_CHECKPOINT_ROWS", 200),
        checkpoint_seconds=float(os.environ.get("PROMPTFORGE_CHECKPOINT_SECONDS") or 10.0),
        heartbeat_seconds=float(os.environ.get("PROMPTFORGE_HEARTBEAT_SECONDS") or 5.0),
        results_retention_days=_int("PROMPTFORGE_RESULTS_RETENTION_DAYS", 30),
        inline_max_prompts=_int("PROMPTFORGE_INLINE_MAX_PROMPTS", 1000),
        inline_max_bytes=_int("PROMPTFORGE_INLINE_MAX_BYTES", 10 * 1024 * 1024),
        events_max_seconds=_int("PROMPTFORGE_EVENTS_MAX_SECONDS", 300),
        watchdog_grace_seconds=_int("PROMPTFORGE_WATCHDOG_GRACE_SECONDS", 600),
        job_stuck_seconds=_int("PROMPTFORGE_JOB_STUCK_SECONDS", 3600),
        status_poll_seconds=_int("PROMPTFORGE_STATUS_POLL_SECONDS", 5),
        providers=_list("PROMPTFORGE_PROVIDERS", "openai_compatible"),
        rate_limits=json.loads(os.environ.get("PROMPTFORGE_RATE_LIMITS") or "{}"),
        notify_url=os.environ.get("PROMPTFORGE_NOTIFY_URL", ""),
        allow_loopback_http_callbacks=os.environ.get("PROMPTFORGE_ALLOW_LOOPBACK_HTTP_CALLBACKS", "") in ("1", "true"),
        firestore_database=os.environ.get("PROMPTFORGE_FIRESTORE_DATABASE") or "(default)",
        events_url=os.environ.get("PROMPTFORGE_EVENTS_URL", "").rstrip("/"),
        cors_origins=_list("PROMPTFORGE_CORS_ORIGINS", ""),
        notify_queue=os.environ.get("PROMPTFORGE_NOTIFY_QUEUE", "promptforge-notify"),
        max_callbacks_in_flight=_int("PROMPTFORGE_MAX_CALLBACKS_IN_FLIGHT", 5),
        endpoints=parse_endpoints(os.environ.get("PROMPTFORGE_ENDPOINTS") or "{}"),
        allow_client_base_urls=os.environ.get("PROMPTFORGE_ALLOW_CLIENT_BASE_URLS", "") in ("1", "true"),
        max_concurrent_chunks=_int("PROMPTFORGE_CHUNK_CONCURRENCY", len(_list("PROMPTFORGE_CHUNK_QUEUES", "x"))),
        rate_target=float(os.environ.get("PROMPTFORGE_RATE_TARGET") or 0.99),
        rate_limit_max_wait_seconds=float(os.environ.get("PROMPTFORGE_RATE_LIMIT_MAX_WAIT_SECONDS") or 900.0),
        default_max_tokens_estimate=_int("PROMPTFORGE_DEFAULT_MAX_TOKENS_ESTIMATE", 256),
        # Request parsing
        max_body_bytes=_int("PROMPTFORGE_MAX_BODY_BYTES", 2 * 1024 * 1024),
        max_small_body_bytes=_int("PROMPTFORGE_MAX_SMALL_BODY_BYTES", 16 * 1024),
        max_json_depth=_int("PROMPTFORGE_MAX_JSON_DEPTH", 64),
        max_json_containers=_int("PROMPTFORGE_MAX_JSON_CONTAINERS", 200_000),
        # Fair use per client
        max_awaiting_uploads=_int("PROMPTFORGE_MAX_AWAITING_UPLOADS", 10),
        max_open_jobs=_int("PROMPTFORGE_MAX_OPEN_JOBS", 100),
        max_event_streams=_int("PROMPTFORGE_MAX_EVENT_STREAMS", 5),
        requests_per_minute=_int("PROMPTFORGE_REQUESTS_PER_MINUTE", 600),
    )
