"""Environments that share a project stay apart, the event stream has its one public door,
and the callback queue and the function agree on when a callback is given up.

- Each environment has its own Firestore database (never the project's "(default)"), and
  its indexes, TTL policies and functions use it; name prefixes are distinct and none is
  the start of another's (log filters and resource names match on "<prefix>-").
- job_events alone is invokable by allUsers (API Gateway does not stream), through one
  resource that the checkov policy names as its only exception; every function is told
  its URL.
- notify_callback logs "callback given up" on the notify queue's last attempt.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.terraform.tfmodel import ROOT, Module, module_dir, terraform_dir

NAME_PREFIX = re.compile(r"^[a-z][a-z0-9-]{1,8}[a-z0-9]$")  # variables.tf's validation
# Firestore's rule for a database id (CreateDatabaseRequest.database_id): 4 to 63
# characters of [a-z0-9-], a letter first, a letter or digit last, not UUID-like.
DATABASE_ID = re.compile(r"^[a-z][a-z0-9-]{2,61}[a-z0-9]$")
UUID_LIKE = re.compile(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}")
DATABASE = "${google_firestore_database.main.name}"
POLICIES = ROOT / "terraform" / "checks" / "policies" / "promptforge_checks.py"
INTERNAL_PY = ROOT / "functions" / "promptforge" / "api" / "internal.py"


@pytest.fixture(scope="module")
def module() -> Module:
    return Module.load(module_dir())


def environments() -> dict[str, dict[str, Any]]:
    """Environment directory => the arguments of its promptforge module block."""
    found: dict[str, dict[str, Any]] = {}
    for env in sorted(p for p in (terraform_dir() / "environments").iterdir() if p.is_dir()):
        for block in Module.load(env).blocks.get("module", []):
            if "promptforge" in block:
                found[env.name] = block["promptforge"]
    return found


def database_id(prefix: str, template: str) -> str:
    return template.replace("${var.name_prefix}", prefix)


# --- Firestore -----------------------------------------------------------------------------


def test_no_configuration_uses_the_default_database() -> None:
    configs = [module_dir(), *sorted(p for p in (terraform_dir() / "environments").iterdir() if p.is_dir())]
    for config in configs:
        text = json.dumps(Module.load(config).blocks)  # comments left out
        assert "(default)" not in text, f"{config}: the project's (default) database is shared by every environment"


def test_the_database_is_the_environments_own(module: Module) -> None:
    (name, db), *others = module.resources("google_firestore_database").items()
    assert not others, "one database per environment"
    assert db["name"] == "${var.name_prefix}-db"
    for rtype in ("google_firestore_index", "google_firestore_field"):
        for rname, body in module.resources(rtype).items():
            assert body["database"] == DATABASE, f"{rtype}.{rname} is not on the environment's database"
    env = module.locals["function_env"]
    assert re.search(r"PROMPTFORGE_FIRESTORE_DATABASE\s*=\s*google_firestore_database\.main\.name\b", env), (
        "the functions must be told the database"
    )


def test_the_database_id_is_valid_for_every_name_prefix(module: Module) -> None:
    template = module.resources("google_firestore_database")["main"]["name"]
    prefixes = {"a-b", "abc", "abcdefghij", "a1-2-3-4-z", *(str(e["name_prefix"]) for e in environments().values())}
    for prefix in prefixes:
        assert NAME_PREFIX.match(prefix), prefix
        db = database_id(prefix, template)
        assert DATABASE_ID.match(db) and not UUID_LIKE.search(db), f"{db!r} is not a valid Firestore database id"


def test_environments_have_distinct_prefixes_and_databases(module: Module) -> None:
    envs = environments()
    assert set(envs) >= {"dev", "staging", "prod"}
    prefixes = {name: str(e["name_prefix"]) for name, e in envs.items()}
    assert len(set(prefixes.values())) == len(prefixes), f"two environments share a name_prefix: {prefixes}"
    assert len({str(e["environment"]) for e in envs.values()}) == len(envs)
    for a, pa in prefixes.items():
        for b, pb in prefixes.items():
            # "pf" would match "pf-dev-..." in the log filters and the resource names.
            assert a == b or not pb.startswith(pa + "-"), f"{a}'s prefix {pa!r} starts {b}'s {pb!r}"
    template = module.resources("google_firestore_database")["main"]["name"]
    assert len({database_id(p, template) for p in prefixes.values()}) == len(prefixes)


# --- the event stream ---------------------------------------------------------------------


def test_only_job_events_is_public_and_only_through_its_own_resource(module: Module) -> None:
    public = []
    for block in module.blocks.get("resource", []):
        for rtype, items in block.items():
            for name, body in items.items():
                if re.search(r"allUsers|allAuthenticatedUsers", json.dumps(body)):
                    public.append((rtype, name))
    assert public == [("google_cloud_run_v2_service_iam_member", "events_public")]
    grant = module.resources("google_cloud_run_v2_service_iam_member")["events_public"]
    assert grant == {
        "project": "${var.project_id}",
        "location": "${var.region}",
        "name": '${google_cloudfunctions2_function.fn["job_events"].name}',
        "role": "roles/run.invoker",
        "member": "allUsers",
    }
    assert module.locals["functions"]["job_events"]["ingress"] == "ALLOW_ALL"


def test_the_checkov_exception_is_that_resource_alone() -> None:
    tree = ast.parse(POLICIES.read_text())
    exceptions = next(
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "PUBLIC_INVOKER_EXCEPTIONS"
    )
    assert exceptions == {"events_public": "job_events"}


def test_every_function_is_told_the_events_url(module: Module) -> None:
    env = module.locals["function_env"]
    assert re.search(r'PROMPTFORGE_EVENTS_URL\s*=\s*local\.function_urls\["job_events"\]', env), env


def test_the_jobs_page_may_read_the_stream_across_origins(module: Module) -> None:
    # The page is served by the gateway and reads events_url (another origin): the gateway's
    # origin is allowed, with the operator's browser origins.
    env = module.locals["function_env"]
    origins = re.search(r"PROMPTFORGE_CORS_ORIGINS\s*=\s*(.*?)(?:, PROMPTFORGE_|\}, var\.extra_env)", env)
    assert origins, env
    assert "https://${google_api_gateway_gateway.api.default_hostname}" in origins[1]
    assert "var.cors_origins" in origins[1]
    # ... which the gateway can be created without: its backends are the deterministic URLs.
    assert module.locals["openapi_document"].count("local.function_urls[key]") == 1
    assert "google_cloudfunctions2_function" not in module.locals["openapi_document"]


# --- callbacks ----------------------------------------------------------------------------


def _max_callback_retries(path: Path = INTERNAL_PY) -> int:
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "MAX_CALLBACK_RETRIES":
            value = ast.literal_eval(node.value)
            assert isinstance(value, int)
            return value
    raise AssertionError("MAX_CALLBACK_RETRIES not found in api/internal.py")


def test_callbacks_are_given_up_on_the_notify_queues_last_attempt(module: Module) -> None:
    retry = module.resources("google_cloud_tasks_queue")["notify"]["retry_config"][0]
    attempts = int(retry["max_attempts"])
    # X-CloudTasks-TaskRetryCount is 0 on the first attempt: the last one sees attempts - 1.
    # Cloud Tasks stops only when max_attempts and max_retry_duration are both used up, so
    # the attempt that sees attempts - 1 always comes; a larger constant would never log
    # "callback given up" (the queue drops the task silently), a smaller one would give up
    # with attempts left.
    assert _max_callback_retries() == attempts - 1
