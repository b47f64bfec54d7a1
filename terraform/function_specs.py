"""How each Cloud Functions function is deployed: what terraform/generate.py writes into
modules/promptforge/functions_table.tf as ``local.functions``.

Every entry point of the route table (``functions/promptforge/api/routes.py``) gets an
entry: a function behind a route gets :data:`API` with the fields :data:`OVERRIDES` names
for it changed; an internal function has its whole entry in :data:`INTERNAL`. So a new
endpoint that only reads and writes Firestore needs nothing here; one that uses a bucket,
a queue or signs URLs says so in OVERRIDES (tests/terraform/test_iam_needs.py compares
every grant with what the code reaches and names the one missing).

The table is written out as a literal map, not read from a data file: checkov expands a
``for_each`` only over a literal map, and its policies (terraform/checks/policies) must
see each function's own ingress and invoker.

The fields (modules/promptforge/functions.tf uses them):
  access         the one identity that may invoke it (iam.tf):
                   "gateway"   the public API, reachable only through API Gateway
                   "tasks"     a Cloud Tasks target (OIDC token of the tasks identity)
                   "scheduler" a Cloud Scheduler target (OIDC token of the scheduler identity)
                   "eventarc"  an event function (event must be set)
  ingress        "ALLOW_ALL" for the public API only (API Gateway is outside traffic);
                 "ALLOW_INTERNAL_ONLY" for the rest: Cloud Tasks, Cloud Scheduler and
                 Eventarc of the same project count as internal traffic
  event          None for HTTP functions; {type, bucket} for the Eventarc trigger
  schedule       cron schedule for "scheduler" functions (scheduler.tf), else None
  memory, timeout, max_instances, concurrency: the function's size (max_instances None:
                 sized from the rate limits, for the chunk worker)
  firestore      reads and writes Firestore (roles/datastore.user)
  buckets        bucket key (local.buckets) => storage role its service account gets
  enqueues       Cloud Tasks queues (local.queues) it creates tasks on
  signs_urls     signs upload/download URLs as the signing identity (iam.tf)
  provider_keys  gets the provider API keys as secret environment variables
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Expr:
    """A Terraform expression, written as is."""

    text: str


@dataclass(frozen=True)
class Noted:
    """A value with the reason for it, written as a comment after it."""

    value: Any
    why: str


WORKERS_QUEUES = ["plan", "chunks", "notify"]

# A function behind a public route.
API: dict[str, Any] = {
    "access": "gateway",
    "ingress": "ALLOW_ALL",
    "event": None,
    "schedule": None,
    "memory": "256Mi",
    "timeout": 30,
    "max_instances": Expr("var.api_max_instances"),
    "concurrency": 40,
    "firestore": True,
    "buckets": {},
    "enqueues": [],
    "signs_urls": False,
    "provider_keys": False,
}

OVERRIDES: dict[str, dict[str, Any]] = {
    "jobs_init": {"memory": "512Mi", "timeout": 60, "signs_urls": True},
    "job_results": {
        "buckets": Noted({"results": "roles/storage.objectUser"}, "?partial=true assembles files"),
        "signs_urls": True,
    },
    "job_cancel": {
        "enqueues": Noted(
            ["plan", "chunks", "notify"],
            "starts the client's next PENDING job; wakes an economy job's chunks to cancel their provider batches; a callback",
        )
    },
    "jobs_create": {
        "memory": "512Mi",
        "timeout": 60,
        "concurrency": 20,
        "buckets": Noted({"uploads": "roles/storage.objectCreator"}, "writes the inline prompts as the upload"),
        "enqueues": ["plan", "notify"],
        "signs_urls": True,
    },
    # Also public on its own run.app URL (iam.tf, events_public): API Gateway buffers a
    # response whole, so an event stream through it arrives only when it ends.
    "job_events": {
        "timeout": Noted(360, "above PROMPTFORGE_EVENTS_MAX_SECONDS (300): the stream ends first"),
        "concurrency": Noted(80, "an open stream mostly sleeps between polls"),
    },
    "openapi": {"concurrency": 80, "firestore": False},
    "web": {"concurrency": 80, "firestore": False},
}

_INTERNAL_BASE: dict[str, Any] = {**API, "ingress": "ALLOW_INTERNAL_ONLY"}

INTERNAL: dict[str, dict[str, Any]] = {
    "on_upload": {
        **_INTERNAL_BASE,
        "access": "eventarc",
        "event": {"type": "google.cloud.storage.object.v1.finalized", "bucket": "uploads"},
        "timeout": 60,
        "concurrency": 10,
        "enqueues": ["plan", "notify"],
    },
    "plan_job": {
        **_INTERNAL_BASE,
        "access": "tasks",
        "memory": "1Gi",
        "timeout": 1800,
        "max_instances": Expr("var.plan_max_concurrency + 1"),
        "concurrency": 1,
        "buckets": {"uploads": "roles/storage.objectViewer", "results": "roles/storage.objectUser"},
        "enqueues": WORKERS_QUEUES,
    },
    "process_chunk": {
        **_INTERNAL_BASE,
        "access": "tasks",
        "memory": "1Gi",
        "timeout": 1800,
        "max_instances": Noted(None, "sized from the rate limits (modules/sizing)"),
        "concurrency": Expr("var.chunks_per_instance"),
        "buckets": {"uploads": "roles/storage.objectViewer", "results": "roles/storage.objectUser"},
        "enqueues": WORKERS_QUEUES,
        "provider_keys": True,
    },
    "watchdog": {
        **_INTERNAL_BASE,
        "access": "scheduler",
        "schedule": Expr("var.watchdog_schedule"),
        "memory": "512Mi",
        "timeout": 540,
        "max_instances": Noted(1, "one sweep at a time"),
        "concurrency": 1,
        "buckets": Noted(
            {"uploads": "roles/storage.objectViewer", "results": "roles/storage.objectUser"},
            "stats uploads whose event was lost; finishes finalizations",
        ),
        "enqueues": WORKERS_QUEUES,
    },
    "notify_callback": {
        **_INTERNAL_BASE,
        "access": "tasks",
        "timeout": 60,
        "max_instances": 10,
        "concurrency": 20,
        "firestore": Noted(True, "reads the job and the client's webhook secret"),
    },
}


def specs(entry_points: list[str], behind_routes: set[str]) -> dict[str, dict[str, Any]]:
    """Entry point => its fields, for every entry point; refuses a table that names a
    function there is none of, or leaves an internal function out."""
    unknown = (set(OVERRIDES) - behind_routes) | (set(INTERNAL) - set(entry_points)) | (set(INTERNAL) & behind_routes)
    missing = set(entry_points) - behind_routes - set(INTERNAL)
    if unknown or missing:
        raise ValueError(f"function specs and entry points disagree: unknown {sorted(unknown)}, missing {sorted(missing)}")
    out: dict[str, dict[str, Any]] = {}
    for name in entry_points:
        spec = INTERNAL[name] if name in INTERNAL else {**API, **OVERRIDES.get(name, {})}
        if set(spec) != set(API):
            raise ValueError(f"{name}: fields {sorted(set(spec) ^ set(API))} differ from the API entry's")
        out[name] = spec
    return out
