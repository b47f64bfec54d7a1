"""Settings read from the environment, in one place.

Every function reads the same variables; Terraform sets them in production and
``infra/stack.py`` sets them on the local stack. Each variable is declared once below, as a
field of :class:`Settings` with its type, default and a one-line description; the field
``name`` is read from ``PROMPTFORGE_NAME`` unless its ``validation_alias`` names the
variable (the platform's own, such as ``GOOGLE_CLOUD_PROJECT``). docs/settings.md is
rendered from these fields (``.venv/bin/python -m infra.settings_doc``).

:func:`load` reads and checks them all at once: a bad value stops the process at start with
the variable named, rather than a request failing deep inside. Credentials are not settings
(no settings object ever holds a key): :func:`secret` reads one by its variable's name, the
one way the code reads them.
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import (
    AliasChoices,
    BeforeValidator,
    ConfigDict,
    Field,
    InstanceOf,
    ValidationError,
    create_model,
    model_validator,
)
from pydantic.dataclasses import dataclass as settings_dataclass
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "PROMPTFORGE_"


class SettingsError(ValueError):
    """A setting's value is unusable; the message names the variable, never a secret."""


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible server the operator configured for ``openai_compatible`` jobs.

    ``key_env`` names the environment variable holding its key (in production a Secret
    Manager secret mounted into the worker), never the key; ``rpm``/``tpm`` are its limits.
    ``batch`` is "openai" when the server also serves OpenAI's files and batches API
    (economy jobs may then use it), None when it does not.
    """

    name: str
    base_url: str
    wire: str = "openai"
    key_env: str | None = None
    rpm: int | None = None
    tpm: int | None = None
    batch: str | None = None


_ENDPOINT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def parse_endpoints(raw: str) -> dict[str, Endpoint]:
    """``PROMPTFORGE_ENDPOINTS``: a JSON object of name -> {base_url, wire, key_env, rpm, tpm, batch}."""
    table = json.loads(raw)
    if not isinstance(table, dict):
        raise ValueError("must be a JSON object")
    out: dict[str, Endpoint] = {}
    for name, spec in table.items():
        if not _ENDPOINT_NAME.match(name) or not isinstance(spec, dict) or not spec.get("base_url"):
            raise ValueError(f"endpoint {name!r} needs a lower-case name and a base_url")
        if spec.get("wire", "openai") != "openai":
            raise ValueError(f"endpoint {name!r}: wire must be 'openai'")
        if spec.get("batch") not in (None, "openai"):
            raise ValueError(f"endpoint {name!r}: batch must be 'openai' (the server serves OpenAI's batch API) or absent")
        out[name] = Endpoint(
            name=name,
            base_url=str(spec["base_url"]),
            wire="openai",
            key_env=spec.get("key_env") or None,
            rpm=int(spec["rpm"]) if spec.get("rpm") else None,
            tpm=int(spec["tpm"]) if spec.get("tpm") else None,
            batch=spec.get("batch") or None,
        )
    return out


def _comma_list(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(p.strip() for p in value.split(",") if p.strip())
    return value


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _endpoints(value: Any) -> Any:
    return parse_endpoints(value) if isinstance(value, str) else value


def _rate_limits(value: Any) -> Any:
    table = _json(value)
    if not isinstance(table, dict) or not all(isinstance(v, dict) and set(v) <= {"rpm", "tpm"} for v in table.values()):
        raise ValueError('must be a JSON object of {"provider/model" or "provider": {"rpm": ..., "tpm": ...}}')
    return table


def _url(value: Any) -> Any:
    # The status builds events URLs by appending a path: no trailing slash.
    return value.rstrip("/") if isinstance(value, str) else value


# NoDecode: pydantic-settings would parse these as JSON; the variables are comma lists.
CommaList = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_comma_list)]
Endpoints = Annotated[dict[str, InstanceOf[Endpoint]], NoDecode, BeforeValidator(_endpoints)]
RateLimits = Annotated[dict[str, dict[str, float]], NoDecode, BeforeValidator(_rate_limits)]
Url = Annotated[str, BeforeValidator(_url)]

KiB, MiB, GiB = 1024, 1024**2, 1024**3


def _derived(text: str) -> dict[str, Any]:
    """Marks a field whose empty default is worked out from others (shown in docs as ``text``)."""
    return {"derived_default": text}


@settings_dataclass(frozen=True, config=ConfigDict(validate_by_name=True, validate_by_alias=True))
class Settings:
    """The service's configuration; build it with :func:`load`."""

    project: str = Field(
        default="promptforge-local",
        validation_alias=AliasChoices("GOOGLE_CLOUD_PROJECT", "GCP_PROJECT"),
        description="Google Cloud project of the deployment (set by the platform).",
    )
    upload_bucket: str = Field(
        default="", description="Bucket the input files are uploaded to.", json_schema_extra=_derived("`<project>-uploads`")
    )
    results_bucket: str = Field(
        default="", description="Bucket of the result files.", json_schema_extra=_derived("`<project>-results`")
    )
    tasks_location: str = Field(default="us-central1", description="Region of the Cloud Tasks queues.")
    plan_queue: str = Field(default="promptforge-plan", description="Cloud Tasks queue of the planning tasks.")
    chunk_queues: CommaList = Field(
        default=("promptforge-chunks",),
        min_length=1,
        description="Comma-separated Cloud Tasks queues the chunk tasks are spread over.",
    )
    plan_url: str = Field(default="", description="URL of the plan_job function (the planning tasks' target).")
    chunk_url: str = Field(default="", description="URL of the process_chunk function (the chunk tasks' target).")
    # Emulator endpoints: empty in production.
    tasks_emulator_host: str = Field(default="", description="host:port of the Cloud Tasks emulator; empty in production.")
    storage_emulator_host: str = Field(
        default="",
        validation_alias="STORAGE_EMULATOR_HOST",
        description="URL of the Cloud Storage emulator; empty in production.",
    )
    # Signed URLs: a local key file on the emulator stack, IAM signBlob in production.
    signing_key_file: str = Field(
        default="", description="Service account key file that signs URLs (local stack); empty: IAM signBlob."
    )
    signing_service_account: str = Field(
        default="", description="Service account whose identity signs the upload and download URLs."
    )
    tasks_service_account: str = Field(
        default="", description="Identity Cloud Tasks uses for OIDC tokens to the private worker functions."
    )
    fake_llm_url: str = Field(default="http://127.0.0.1:8405/v1", description="Base URL of the fake provider (dev stacks only).")
    upload_url_ttl_seconds: int = Field(default=3600, ge=1, description="Lifetime of a signed upload URL.")
    download_url_ttl_seconds: int = Field(default=3600, ge=1, description="Lifetime of a signed results URL.")
    # 10 million prompts of ~850 bytes on average; planning and the workers read the file
    # in bounded pieces, so its size costs time, not memory.
    max_upload_bytes: int = Field(
        default=8 * GiB,
        ge=1,
        description="Largest input file. A larger upload fails the job (`file_too_large`); "
        "`POST /v1/jobs/init` returns it as `max_upload_bytes`.",
    )
    max_line_bytes: int = Field(
        default=256 * KiB,
        ge=1,
        description="Longest line, in bytes, not counting its `\\n` or `\\r\\n`. "
        "A longer line is an `invalid_line` (never read into memory whole).",
    )
    max_prompts_per_job: int = Field(
        default=10_000_000,
        ge=1,
        description="Most non-blank lines (bad ones included) in one file. More fails the job (`too_many_prompts`).",
    )
    chunk_max_lines: int = Field(default=500, ge=1, description="Lines per chunk task, and so rows per `results_part_NNN.jsonl`.")
    chunk_max_bytes: int = Field(default=8 * MiB, ge=1, description="Most input bytes in one chunk.")
    # Planning runs in steps of bounded work (service/plan.py). A scan step reads at most
    # this many bytes, records (non-blank lines) or chunks of the file, then finishes the
    # chunk it is in; its memory is a few dozen bytes per record it read.
    plan_slice_bytes: int = Field(default=64 * MiB, ge=1, description="Most bytes of the file one planning scan step reads.")
    plan_slice_records: int = Field(
        default=50_000, ge=1, description="Most records (non-blank lines) one planning scan step reads."
    )
    plan_slice_chunks: int = Field(default=500, ge=1, description="Most chunks one planning scan step makes.")
    # A dedupe step keeps the records it reads packed (37 bytes each) and looks for repeats
    # one hash bucket at a time, so it holds the ids of 1/256 of them at once. A scan step
    # holds its slice's packed ids about twice while it uploads them, which is why slices
    # are half a dedupe step: plan_job's peak RSS grows 6% from 20k to 1M prompts
    # (infra/bench/scale.py; infra/bench/plan_memory.py: 71 MiB at 20k, 75 MiB at 1M).
    plan_dedupe_records: int = Field(
        default=100_000, ge=1, description="Most records one planning dedupe step holds prompt ids of."
    )
    # An invocation runs steps until this many seconds passed (or it scanned a slice's
    # worth of bytes), then hands the rest to a new planning task; 0 runs one step each.
    plan_invocation_seconds: float = Field(
        default=60.0, ge=0, description="Seconds one planning invocation runs steps before handing on; 0: one step."
    )
    # The plan queue retries 10 times; the watchdog re-drives a QUEUED job after that.
    plan_max_attempts: int = Field(
        default=5, ge=1, description="Deliveries that may start one planning step before the job fails (`planning_failed`)."
    )
    worker_concurrency: int = Field(default=128, ge=1, description="Requests in flight per chunk worker.")
    # Renewed by the chunk's checkpoints, at least every third of it.
    chunk_lease_seconds: int = Field(
        default=60, ge=1, description="A chunk's lease: a dead worker's chunk is free for the task's retry after this long."
    )
    # Well inside the 30-minute dispatch deadline.
    chunk_time_budget_seconds: int = Field(
        default=1500,
        ge=0,
        description="Seconds a worker takes prompts before handing the rest of its chunk to a continuation task.",
    )
    # A crash re-runs at most checkpoint_rows prompts, and a job's storage operations grow
    # with its prompts / checkpoint_rows rather than with its running time.
    checkpoint_rows: int = Field(
        default=200, ge=1, description="Finished rows are saved when this many wait (what a crash can make a chunk redo)."
    )
    checkpoint_seconds: float = Field(default=10.0, gt=0, description="Finished rows are saved at least this often.")
    # Once per process and job, not per chunk.
    heartbeat_seconds: float = Field(
        default=5.0, gt=0, description="How often a process registers on its rate budgets and reads its jobs' stop signals."
    )
    # The bucket's lifecycle rule; a job's records expire (Firestore TTL on expire_at) with them.
    results_retention_days: int = Field(default=30, ge=1, description="Days result files and job records are kept.")
    # Inline jobs (POST /v1/jobs) and inline results (?inline=true) stay small.
    inline_max_prompts: int = Field(
        default=1000, ge=1, description="Most prompts of an inline job (`POST /v1/jobs`) or inline results."
    )
    inline_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1, description="Largest body of an inline job.")
    events_max_seconds: int = Field(
        default=300, ge=1, description="How long one events stream stays open before the client reconnects."
    )
    economy_poll_first_seconds: int = Field(
        default=30, ge=1, description="Economy jobs: the wait before a provider batch is first polled; each poll doubles it."
    )
    economy_poll_max_seconds: int = Field(
        default=600, ge=1, description="Economy jobs: the longest wait between two polls of a provider batch."
    )
    watchdog_grace_seconds: int = Field(default=600, ge=1, description="The watchdog re-drives work idle this long.")
    job_stuck_seconds: int = Field(default=3600, ge=1, description="The watchdog fails a job with no progress this long.")
    status_poll_seconds: int = Field(default=5, ge=1, description="The `Retry-After` the status endpoint suggests.")
    providers: CommaList = Field(
        default=("openai_compatible",),
        description="Comma-separated providers this deployment serves (`fake` only on dev stacks).",
    )
    # Without an entry, the first answer's x-ratelimit-* headers set the pace (README, "Throughput").
    rate_limits: RateLimits = Field(
        default={}, description='Limits to pace at, JSON: `{"provider/model" or "provider": {"rpm": ..., "tpm": ...}}`.'
    )
    notify_url: str = Field(default="", description="URL of the notify_callback function (a Cloud Tasks target).")
    allow_loopback_http_callbacks: bool = Field(
        default=False, description="Let callbacks use http to loopback (dev stacks' tests); otherwise https only."
    )
    # Each environment has its own database, so environments can share a project.
    firestore_database: str = Field(default="(default)", description="The Firestore database of this environment.")
    # API Gateway buffers responses, so clients stream GET /v1/jobs/{id}/events from the
    # events function's own URL (the status gives it as events_url).
    events_url: Url = Field(default="", description="The job_events function's own URL, given to clients as `events_url`.")
    cors_origins: CommaList = Field(
        default=(), description="Comma-separated origins browsers may stream events from (the jobs page's)."
    )
    # Its own queue, so a slow receiver never holds up planning.
    notify_queue: str = Field(default="promptforge-notify", description="Cloud Tasks queue of the callbacks.")
    max_callbacks_in_flight: int = Field(
        default=5,
        ge=1,
        description="Callbacks of one client being sent at once; more wait for a place (Cloud Tasks retries them).",
    )
    # The only places a deployment credential for openai_compatible is ever sent.
    endpoints: Endpoints = Field(
        default={},
        description='The `openai_compatible` servers jobs may name, JSON: `{"NAME": {"base_url", "key_env", "rpm", "tpm"}}`.',
    )
    # Off by default; such a job carries no credential.
    allow_client_base_urls: bool = Field(
        default=False, description="Let a job give its own `base_url` (public https addresses only)."
    )
    # A starting worker assumes it shares its budget with that many (or with its job's
    # remaining chunks if fewer) before it has counted the live ones. Not set, it is one per
    # chunk queue, as load() has always made it (production sets it from the queues' dispatches).
    max_concurrent_chunks: int = Field(
        default=0,
        ge=0,
        validation_alias="PROMPTFORGE_CHUNK_CONCURRENCY",
        description="How many chunk workers can run at once (the chunk queues' concurrent dispatches).",
        json_schema_extra=_derived("number of chunk queues"),
    )
    # A little headroom for clock skew between workers.
    rate_target: float = Field(default=0.99, gt=0, le=1, description="The share of a limit the workers pace at.")
    # A 429 is not a failed attempt: the prompt waits its turn again.
    rate_limit_max_wait_seconds: float = Field(
        default=900.0,
        ge=0,
        description="How long a prompt may be refused with 429s in all before it fails (`rate_limit_exceeded`).",
    )
    default_max_tokens_estimate: int = Field(
        default=256, ge=1, description="Token estimate for a prompt whose `max_tokens` is not set."
    )
    # Request parsing. POST /v1/jobs has inline_max_bytes; 2 MiB leaves room for a
    # 200,000-character system prompt even sent as \u escapes, with metadata and params.
    max_body_bytes: int = Field(
        default=2 * MiB,
        ge=1,
        description="Largest body of `POST /v1/jobs/init`, counted on the bytes received (`413 payload_too_large`).",
    )
    # Their bodies hold a few ids at most.
    max_small_body_bytes: int = Field(
        default=16 * KiB, ge=1, description="Largest body of cancel and of the Cloud Tasks targets (`413`)."
    )
    max_json_depth: int = Field(default=64, ge=1, description="Deepest nesting of objects and arrays in a request body (`400`).")
    # Parsed, each costs the instance memory; 1,000 inline prompts with message lists need
    # a few tens of thousands.
    max_json_containers: int = Field(default=200_000, ge=1, description="Most objects and arrays in one request body (`400`).")
    # Fair use per client: caps that keep one client from slowing the others; 0 turns a cap off.
    max_awaiting_uploads: int = Field(
        default=10,
        ge=0,
        description="Jobs of one client created and not yet uploaded (`429 too_many_awaiting_uploads`); 0 turns the cap off.",
    )
    max_open_jobs: int = Field(
        default=100,
        ge=0,
        description="Jobs of one client not ended: awaiting upload, `PENDING` or active "
        "(`429 too_many_open_jobs`); 0 turns the cap off.",
    )
    max_event_streams: int = Field(
        default=5,
        ge=0,
        description="Event streams of one client open at once (`429 too_many_event_streams`); 0 turns the cap off.",
    )
    requests_per_minute: int = Field(
        default=600, ge=0, description="Calls of the public API per client and clock minute (`429 rate_limited`); 0: no cap."
    )
    # Provider SDKs' endpoints (credentials are read with secret(), never kept here).
    openai_base_url: str = Field(
        default="",
        validation_alias="OPENAI_BASE_URL",
        description="Where the `openai` provider sends requests; empty: OpenAI's API.",
    )
    anthropic_base_url: str = Field(
        default="",
        validation_alias="ANTHROPIC_BASE_URL",
        description="Where the `anthropic` provider sends requests; empty: Anthropic's API.",
    )
    gemini_base_url: str = Field(
        default="",
        validation_alias="GEMINI_BASE_URL",
        description="Where the `gemini` provider sends requests; empty: Google's API.",
    )
    gemini_vertex: bool = Field(
        default=False, description="Serve `gemini` through Vertex AI with the function's service account instead of an API key."
    )
    gemini_location: str = Field(default="us-central1", description="Vertex AI region of the `gemini` provider.")
    # The scale benchmark's per-call metering (docs/scale.md); empty in production.
    meter_dir: str = Field(
        default="",
        description="Directory the scale benchmark's meters write to; set, every store, blob and task call is counted.",
    )
    function_name: str = Field(
        default="process",
        validation_alias=AliasChoices("FUNCTION_TARGET", "K_SERVICE"),
        description="This process's function (set by the platform); names its meter file.",
    )

    @model_validator(mode="after")
    def _fill_derived(self) -> Settings:
        # Frozen: the derived defaults are set once, here, as the object is built.
        if not self.upload_bucket:
            object.__setattr__(self, "upload_bucket", f"{self.project}-uploads")
        if not self.results_bucket:
            object.__setattr__(self, "results_bucket", f"{self.project}-results")
        if not self.max_concurrent_chunks:
            object.__setattr__(self, "max_concurrent_chunks", len(self.chunk_queues))
        return self


# Each field's pydantic FieldInfo (type, default, description, variable), by name.
_FIELDS: dict[str, FieldInfo] = Settings.__pydantic_fields__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Variable:
    """One setting as the environment sees it: what docs/settings.md lists."""

    field: str
    names: tuple[str, ...]  # the variable, then any fallbacks read when it is not set
    default: str
    description: str


def env_names(field: str) -> tuple[str, ...]:
    """The variables a field is read from, first choice first."""
    alias = _FIELDS[field].validation_alias
    if isinstance(alias, AliasChoices):
        return tuple(str(choice) for choice in alias.choices)
    return (alias,) if isinstance(alias, str) else (ENV_PREFIX + field.upper(),)


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return f"`{','.join(value)}`" if value else "empty"
    if isinstance(value, dict):
        return "`{}`"
    if isinstance(value, bool):
        return "`true`" if value else "off"
    if isinstance(value, int):
        for unit, factor in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
            if value >= factor and value % factor == 0:
                return f"{value:,} ({value // factor} {unit})"
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:g}"
    return f"`{value}`" if value else "empty"


def variables() -> list[Variable]:
    """Every setting, in declaration order."""
    out = []
    for name, info in _FIELDS.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        derived = extra.get("derived_default")
        default = str(derived) if derived else _shown(info.get_default(call_default_factory=True))
        out.append(Variable(name, env_names(name), default, info.description or ""))
    return out


@functools.cache
def _environment() -> type[BaseSettings]:
    # The reader: a pydantic-settings model with Settings's own fields (types, validators,
    # aliases), so a variable is declared only once, on Settings.
    class Reader(BaseSettings):
        model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_ignore_empty=True, populate_by_name=False, extra="ignore")

    declared = {name: (info.annotation, info) for name, info in _FIELDS.items()}
    return create_model("EnvironmentSettings", __base__=Reader, **declared)  # type: ignore[call-overload, no-any-return]


def _message(error: Any) -> str:
    loc = error.get("loc") or ()
    first = str(loc[0]) if loc else ""
    names = env_names(first) if first in _FIELDS else ((first,) if first else ())
    where = "/".join(names) or "settings"
    inner = "".join(f"[{part!r}]" for part in loc[1:])
    return f"{where}{inner}: {error['msg']}"


def load() -> Settings:
    """Read and check every setting from the process environment.

    Raises :class:`SettingsError` naming each variable whose value is unusable (the
    message carries pydantic's reason, never the value).
    """
    try:
        read = _environment()()
        return Settings(**{name: getattr(read, name) for name in _FIELDS})
    except ValidationError as exc:
        raise SettingsError("bad settings: " + "; ".join(_message(e) for e in exc.errors(include_input=False))) from None


def secret(name: str) -> str:
    """The credential in the environment variable ``name`` (empty if unset).

    Credentials are read by name when they are used (Secret Manager mounts them as
    variables), never kept in :class:`Settings`; callers must not log the value.
    """
    return os.environ.get(name, "") if name else ""


__all__ = ["Endpoint", "Settings", "SettingsError", "Variable", "env_names", "load", "parse_endpoints", "secret", "variables"]
