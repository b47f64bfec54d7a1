"""A first `terraform apply` on an empty project goes through: what the real first applies
failed on, checked in the configuration.

- Everything that calls a Google API the module enables is created after the API is on
  (directly or through what it refers to), since on an empty project the module enables
  them in the same apply; data sources, read at plan time, use only the APIs
  docs/deploy.md has the operator enable by hand first.
- The builds can read their source: Cloud Functions copies it into
  gcf-v2-sources-<project number>-<region>, and the builder may read that bucket (and no
  other of the project's) and write the images' repository.
- Grants have time to take effect before the functions deploy, and new log-based metrics
  before the alert policies on them are made (time_sleep from hashicorp/time, declared
  where it is used and in every environment).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.terraform.tfmodel import ROOT, Module, module_dir, terraform_dir

APIS = "google_project_service.apis"
# The Google API each resource and data source type of the module calls. A new type must
# be added here, so that whoever adds it says which API it needs.
TYPE_API = {
    "google_api_gateway_api": "apigateway.googleapis.com",
    "google_api_gateway_api_config": "apigateway.googleapis.com",
    "google_api_gateway_gateway": "apigateway.googleapis.com",
    "google_artifact_registry_repository": "artifactregistry.googleapis.com",
    "google_artifact_registry_repository_iam_member": "artifactregistry.googleapis.com",
    "google_cloud_run_v2_service_iam_member": "run.googleapis.com",
    "google_cloud_scheduler_job": "cloudscheduler.googleapis.com",
    "google_cloud_tasks_queue": "cloudtasks.googleapis.com",
    "google_cloud_tasks_queue_iam_member": "cloudtasks.googleapis.com",
    "google_cloudbuild_trigger": "cloudbuild.googleapis.com",
    "google_cloudfunctions2_function": "cloudfunctions.googleapis.com",
    "google_firestore_database": "firestore.googleapis.com",
    "google_firestore_field": "firestore.googleapis.com",
    "google_firestore_index": "firestore.googleapis.com",
    "google_logging_metric": "logging.googleapis.com",
    "google_monitoring_alert_policy": "monitoring.googleapis.com",
    "google_project_iam_custom_role": "iam.googleapis.com",
    "google_project_iam_member": "cloudresourcemanager.googleapis.com",
    "google_project_service": "serviceusage.googleapis.com",
    "google_secret_manager_secret": "secretmanager.googleapis.com",
    "google_secret_manager_secret_iam_member": "secretmanager.googleapis.com",
    "google_service_account": "iam.googleapis.com",
    "google_service_account_iam_member": "iam.googleapis.com",
    "google_storage_bucket": "storage.googleapis.com",
    "google_storage_bucket_iam_member": "storage.googleapis.com",
    "google_storage_bucket_object": "storage.googleapis.com",
    "time_sleep": None,  # no API: it only waits
    "data.google_project": "cloudresourcemanager.googleapis.com",
    "data.google_storage_project_service_account": "storage.googleapis.com",
}
DEPLOY_MD = ROOT / "docs" / "deploy.md"


def prerequisite_apis(doc: Path = DEPLOY_MD) -> set[str]:
    """The APIs docs/deploy.md has the operator enable before the first apply."""
    found: set[str] = set()
    for line in doc.read_text().splitlines():
        if line.strip().startswith("gcloud services enable"):
            found |= set(re.findall(r"[a-z0-9-]+\.googleapis\.com", line))
    return found


class Graph:
    """Which block refers to which, in one module: resources, data sources, locals."""

    REF = re.compile(
        r"\b(?:data\.[a-z0-9_]+\.[a-z0-9_]+|local\.[a-z0-9_]+|module\.[a-z0-9_]+|[a-z][a-z0-9]*_[a-z0-9_]+\.[a-z0-9_]+)"
    )

    def __init__(self, module: Module) -> None:
        self.bodies: dict[str, Any] = {}
        for block in module.blocks.get("resource", []):
            for rtype, items in block.items():
                for name, body in items.items():
                    self.bodies[f"{rtype}.{name}"] = body
        for block in module.blocks.get("data", []):
            for dtype, items in block.items():
                for name, body in items.items():
                    self.bodies[f"data.{dtype}.{name}"] = body
        for name, value in module.locals.items():
            self.bodies[f"local.{name}"] = value
        for block in module.blocks.get("module", []):
            for name, body in block.items():
                self.bodies[f"module.{name}"] = body

    def refs(self, address: str) -> set[str]:
        text = json.dumps(self.bodies[address])
        return {r for r in self.REF.findall(text) if r in self.bodies and r != address}

    def reaches(self, start: str, goal: str) -> bool:
        seen, stack = set(), [start]
        while stack:
            node = stack.pop()
            if node == goal:
                return True
            if node not in seen:
                seen.add(node)
                stack.extend(self.refs(node))
        return False


@pytest.fixture(scope="module")
def module() -> Module:
    return Module.load(module_dir())


@pytest.fixture(scope="module")
def graph(module: Module) -> Graph:
    return Graph(module)


def kind(address: str) -> str:
    return address.rsplit(".", 1)[0]


def test_every_type_says_which_api_it_calls(graph: Graph, module: Module) -> None:
    enabled = set(re.findall(r"[a-z0-9-]+\.googleapis\.com", module.locals["apis"]))
    types = {kind(a) for a in graph.bodies if not a.startswith(("local.", "module."))}
    unknown = types - set(TYPE_API)
    assert not unknown, f"add the Google API each of these calls to TYPE_API: {sorted(unknown)}"
    prerequisites = prerequisite_apis()
    assert {"cloudresourcemanager.googleapis.com", "serviceusage.googleapis.com", "storage.googleapis.com"} <= prerequisites
    for t in types:
        api = TYPE_API[t]
        assert api is None or api in enabled | prerequisites, f"{t} calls {api}: neither the module nor the operator enables it"


def test_everything_that_calls_an_enabled_api_waits_for_it(graph: Graph, module: Module) -> None:
    enabled_here = set(re.findall(r"[a-z0-9-]+\.googleapis\.com", module.locals["apis"]))
    early = []
    for address in graph.bodies:
        if address.startswith(("local.", "module.", "data.")) or address == APIS:
            continue
        api = TYPE_API[kind(address)]
        if api in enabled_here and not graph.reaches(address, APIS):
            early.append(address)
    assert not early, f"created before the APIs are enabled (add depends_on = [{APIS}]): {sorted(early)}"


def test_the_dependency_check_sees_a_missing_depends_on(module: Module) -> None:
    # As the module was: service accounts with no depends_on, so a first apply created them
    # while iam.googleapis.com was still being enabled.
    broken = Graph(module)
    broken.bodies["google_service_account.fn"] = {
        k: v for k, v in broken.bodies["google_service_account.fn"].items() if k != "depends_on"
    }
    assert not broken.reaches("google_service_account.fn", APIS)
    # ... and so everything that refers to them only (the per-function grants) as well.
    assert broken.reaches("google_project_iam_member.fn_firestore", "google_service_account.fn")


def test_the_references_form_no_cycle(graph: Graph) -> None:
    # Terraform refuses a cycle at validate; here it shows offline (the functions are told
    # the gateway's origin, so the gateway must not wait for the functions).
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        if state.get(node) == 2:
            return
        assert state.get(node) != 1, "cycle: " + " -> ".join([*path[path.index(node) :], node])
        state[node] = 1
        for ref in sorted(graph.refs(node)):
            visit(ref, [*path, node])
        state[node] = 2

    for node in sorted(graph.bodies):
        visit(node, [])


def test_data_sources_use_only_apis_enabled_before_terraform_runs(graph: Graph) -> None:
    # A data source is read while planning, before any resource exists: its API must be on
    # already (docs/deploy.md, "gcloud services enable").
    prerequisites = prerequisite_apis()
    for address in graph.bodies:
        if address.startswith("data."):
            assert TYPE_API[kind(address)] in prerequisites, address


def test_the_service_accounts_wait_for_the_iam_api(module: Module) -> None:
    for name, body in module.resources("google_service_account").items():
        assert "${google_project_service.apis}" in body.get("depends_on", []), name


# --- the builds ---------------------------------------------------------------------------


def test_functions_build_as_the_builder_into_its_repository(module: Module) -> None:
    build = module.resources("google_cloudfunctions2_function")["fn"]["build_config"][0]
    assert build["service_account"] == '${google_service_account.role["builder"].id}'
    assert build["docker_repository"] == "${google_artifact_registry_repository.functions.id}"
    writer = module.resources("google_artifact_registry_repository_iam_member")["builder_images"]
    assert writer["repository"] == "${google_artifact_registry_repository.functions.name}"
    assert writer["role"] == "roles/artifactregistry.writer"
    assert writer["member"] == 'serviceAccount:${google_service_account.role["builder"].email}'


def test_the_builder_reads_the_cloud_functions_sources_bucket_and_no_other(module: Module) -> None:
    builder = 'serviceAccount:${google_service_account.role["builder"].email}'
    assert module.locals["gcf_sources_bucket"] == "gcf-v2-sources-${data.google_project.this.number}-${var.region}"
    project_grants = {
        name: body for name, body in module.resources("google_project_iam_member").items() if body["member"] == builder
    }
    roles = {name: body["role"] for name, body in project_grants.items()}
    assert roles == {"builder": "${each.value}", "builder_gcf_sources": "roles/storage.objectViewer"}
    assert project_grants["builder"]["for_each"] == '${toset(["roles/logging.logWriter"])}'
    # Project-wide storage read would open the uploads and results to the builds: only
    # with a condition naming the one bucket.
    condition = project_grants["builder_gcf_sources"]["condition"][0]["expression"]
    bucket = "projects/_/buckets/${local.gcf_sources_bucket}"
    assert condition == f'resource.name == "{bucket}" || resource.name.startsWith("{bucket}/objects/")'
    # The function region is the bucket's region.
    assert module.resources("google_cloudfunctions2_function")["fn"]["location"] == "${var.region}"


def test_functions_deploy_after_the_grants_have_taken_effect(module: Module) -> None:
    fn = module.resources("google_cloudfunctions2_function")["fn"]
    assert "${time_sleep.iam_propagation}" in fn["depends_on"]
    wait = module.resources("time_sleep")["iam_propagation"]
    assert int(wait["create_duration"].removesuffix("s")) >= 60
    waited_for = json.dumps(wait["triggers"])
    for grant in (
        "google_project_iam_member.builder",
        "google_project_iam_member.builder_gcf_sources",
        "google_storage_bucket_iam_member.builder_source",
        "google_artifact_registry_repository_iam_member.builder_images",
        "google_secret_manager_secret_iam_member.fn_provider_key",
        "google_secret_manager_secret_iam_member.fn_endpoint_key",
        "google_project_iam_member.eventarc_receiver",
        "google_project_iam_member.gcs_pubsub_publisher",
    ):
        assert grant in waited_for, f"the functions' deployment checks {grant}: wait for it"


# --- alert policies after their metrics ----------------------------------------------------


def test_alert_policies_wait_for_their_log_metrics(module: Module) -> None:
    policy = module.resources("google_monitoring_alert_policy")["alert"]
    assert policy["depends_on"] == ["${time_sleep.log_metrics}"]
    wait = module.resources("time_sleep")["log_metrics"]
    assert int(wait["create_duration"].removesuffix("s")) >= 600, "Monitoring may take up to 10 minutes to know a new metric"
    assert "google_logging_metric.alert" in json.dumps(wait["triggers"]), "a new metric must wait again"
    condition = policy["conditions"][0]["condition_threshold"][0]["filter"]
    assert "logging.googleapis.com/user/${google_logging_metric.alert[each.key].name}" in condition


def test_the_time_provider_is_declared_wherever_it_is_used() -> None:
    configs = [module_dir(), *sorted(p for p in (terraform_dir() / "environments").iterdir() if p.is_dir())]
    for config in configs:
        providers: dict[str, Any] = {}
        for block in Module.load(config).blocks.get("terraform", []):
            for required in block.get("required_providers", []):
                providers.update(required)
        assert providers.get("time", {}).get("source") == "hashicorp/time", config
        if config != module_dir():  # the environments pin the version, as for the others
            assert providers["time"].get("version"), config
