"""Every entry point in functions/main.py is deployed exactly once, with the right trigger,
its own identity, the right exposure and the settings config.py reads. local.functions is
generated from the route table (terraform/generate.py); these tests read what Terraform
reads, the checked-in file."""

from __future__ import annotations

from collections import Counter

import pytest

from promptforge.api.routes import ROUTES
from terraform import function_specs, generate
from tests.terraform.tfmodel import (
    FUNCTION_TYPE,
    Deployed,
    Module,
    config_env_names,
    deployed_functions,
    env_names_set,
    main_entry_points,
    module_dir,
)

# Settings production must set: without them a function talks to the wrong bucket or
# queue, enqueues tasks nobody can run, or signs nothing.
REQUIRED_ENV = {
    "GOOGLE_CLOUD_PROJECT",
    "PROMPTFORGE_UPLOAD_BUCKET",
    "PROMPTFORGE_RESULTS_BUCKET",
    "PROMPTFORGE_TASKS_LOCATION",
    "PROMPTFORGE_PLAN_QUEUE",
    "PROMPTFORGE_CHUNK_QUEUES",
    "PROMPTFORGE_PLAN_URL",
    "PROMPTFORGE_CHUNK_URL",
    "PROMPTFORGE_TASKS_SERVICE_ACCOUNT",
    "PROMPTFORGE_SIGNING_SERVICE_ACCOUNT",
    "PROMPTFORGE_PROVIDERS",
    # The environment's own database: environments may share a project (firestore.tf).
    "PROMPTFORGE_FIRESTORE_DATABASE",
    # The event stream's own URL, handed to clients as events_url (iam.tf, events_public).
    "PROMPTFORGE_EVENTS_URL",
}
# Local-stack settings that must never reach production: emulators and a key file.
LOCAL_ONLY_ENV = {
    "PROMPTFORGE_TASKS_EMULATOR_HOST",
    "STORAGE_EMULATOR_HOST",
    "PROMPTFORGE_SIGNING_KEY_FILE",
    "PROMPTFORGE_FAKE_LLM_URL",
}


@pytest.fixture(scope="module")
def module() -> Module:
    return Module.load(module_dir())


@pytest.fixture(scope="module")
def deployed(module: Module) -> list[Deployed]:
    return deployed_functions(module)


@pytest.fixture(scope="module")
def functions(module: Module) -> dict[str, dict[str, object]]:
    table: dict[str, dict[str, object]] = module.locals["functions"]
    return table


def test_the_function_table_is_the_one_generated_from_the_routes() -> None:
    assert (module_dir() / "functions_table.tf").read_text() == generate.functions_table(), (
        "functions_table.tf is stale: run `.venv/bin/python terraform/generate.py`"
    )


def test_a_new_route_gets_the_api_entry_and_a_spec_for_no_function_is_refused() -> None:
    routes = {route.function for route in ROUTES}
    names = [*(route.function for route in ROUTES), *function_specs.INTERNAL]
    specs = function_specs.specs([*names, "job_new"], routes | {"job_new"})
    assert specs["job_new"] == function_specs.API
    with pytest.raises(ValueError, match="missing"):
        function_specs.specs([*names, "new_worker"], routes)  # an internal function with no entry
    with pytest.raises(ValueError, match="unknown"):
        function_specs.specs([n for n in names if n != "job_cancel"], routes - {"job_cancel"})  # a stale override


def test_every_entry_point_is_deployed_exactly_once(deployed: list[Deployed]) -> None:
    counts = Counter(d.entry_point for d in deployed)
    entry_points = set(main_entry_points())
    assert entry_points, "found no entry points in functions/main.py"
    missing = entry_points - set(counts)
    unknown = set(counts) - entry_points
    twice = {name: n for name, n in counts.items() if n > 1}
    assert not missing, f"entry points with no {FUNCTION_TYPE}: {sorted(missing)} (add them to local.functions)"
    assert not unknown, f"{FUNCTION_TYPE} resources for entry points main.py does not have: {sorted(unknown)}"
    assert not twice, f"entry points deployed more than once: {twice}"


def test_each_function_has_the_trigger_of_its_entry_point(deployed: list[Deployed]) -> None:
    kinds = main_entry_points()
    wrong = {
        d.address: (d.trigger, kinds[d.entry_point])
        for d in deployed
        if d.entry_point in kinds and d.trigger != kinds[d.entry_point]
    }
    assert not wrong, f"trigger (deployed, main.py) differs: {wrong}"


def test_event_functions_have_a_storage_trigger_and_http_functions_none(functions: dict[str, dict[str, object]]) -> None:
    kinds = main_entry_points()
    for name, spec in functions.items():
        event = spec["event"]
        if kinds.get(name) == "event":
            assert isinstance(event, dict) and event["type"].startswith("google.cloud.storage.object.v1."), name
            assert event["bucket"] == "uploads" and spec["access"] == "eventarc", name
        else:
            assert event is None and spec["access"] != "eventarc", name


def test_public_functions_are_exactly_those_behind_a_route(functions: dict[str, dict[str, object]]) -> None:
    behind_routes = {route.function for route in ROUTES}
    gateway = {name for name, spec in functions.items() if spec["access"] == "gateway"}
    open_ingress = {name for name, spec in functions.items() if spec["ingress"] != "ALLOW_INTERNAL_ONLY"}
    assert gateway == behind_routes
    assert open_ingress <= behind_routes, f"only the public API may take outside traffic: {sorted(open_ingress - behind_routes)}"


def test_workers_are_invoked_only_by_their_caller_identity(functions: dict[str, dict[str, object]]) -> None:
    for name, spec in functions.items():
        assert spec["access"] in {"gateway", "tasks", "scheduler", "eventarc"}, name
        assert (spec["access"] == "scheduler") == (spec["schedule"] is not None), f"{name}: a schedule iff access scheduler"
    for worker in ("plan_job", "process_chunk", "watchdog"):
        if worker in functions:
            assert functions[worker]["access"] in {"tasks", "scheduler"}, worker
            assert functions[worker]["ingress"] == "ALLOW_INTERNAL_ONLY", worker


def test_each_function_is_invoked_by_the_role_account_its_access_names(
    module: Module, functions: dict[str, dict[str, object]]
) -> None:
    invoker = module.resources("google_cloud_run_v2_service_iam_member")["invoker"]
    assert invoker["for_each"] == "${local.functions}"
    assert invoker["role"] == "roles/run.invoker"
    assert invoker["member"] == "serviceAccount:${google_service_account.role[each.value.access].email}"
    roles = set(module.locals["role_accounts"])
    assert {spec["access"] for spec in functions.values()} <= roles
    assert not {name.replace("_", "-") for name in functions} & roles, "a function's account id would clash with a role account"


def test_only_the_chunk_worker_gets_provider_keys(functions: dict[str, dict[str, object]]) -> None:
    assert {name for name, spec in functions.items() if spec["provider_keys"]} == {"process_chunk"}


def test_each_function_runs_as_its_own_service_account(module: Module) -> None:
    for name, body in module.resources(FUNCTION_TYPE).items():
        account = body["service_config"][0].get("service_account_email")
        assert account == "${google_service_account.fn[each.key].email}", f"{name}: service_account_email is {account!r}"
        assert body["for_each"] == "${local.functions}", name
    assert module.resources("google_service_account")["fn"]["for_each"] == "${local.functions}"


def test_functions_get_the_settings_config_reads(module: Module) -> None:
    body = module.resources(FUNCTION_TYPE)["fn"]["service_config"][0]
    # The shared settings, and gunicorn's THREADS (not a setting of ours) from each function's concurrency.
    assert body["environment_variables"] == "${merge(local.function_env, {THREADS = tostring(each.value.concurrency)})}"
    names = env_names_set(module.locals["function_env"])
    assert names >= REQUIRED_ENV, f"missing: {sorted(REQUIRED_ENV - names)}"
    assert not names & LOCAL_ONLY_ENV, f"local-stack settings in production: {sorted(names & LOCAL_ONLY_ENV)}"
    unread = names - config_env_names()
    assert not unread, f"set but never read by functions/promptforge/config.py (a typo?): {sorted(unread)}"


def test_watchdog_has_a_scheduler_job_when_it_exists(module: Module, functions: dict[str, dict[str, object]]) -> None:
    job = module.resources("google_cloud_scheduler_job")["scheduled"]
    assert module.locals["scheduled_functions"] == '${{for key, f in local.functions : key => f if f.access == "scheduler"}}'
    assert job["http_target"][0]["oidc_token"][0]["service_account_email"] == '${google_service_account.role["scheduler"].email}'
    if "watchdog" in main_entry_points():
        assert functions["watchdog"]["access"] == "scheduler"
