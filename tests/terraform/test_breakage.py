"""The offline checks catch what they are for: each runs, as a subprocess, on a copy of
terraform/ broken on purpose, and must fail there, naming the breakage.

- a function resource for an entry point main.py does not have: the structural tests
- a public worker (allUsers may invoke it, ingress open to all): checkov's PromptForge policies
- the one public exception (events_public, allUsers on job_events) pointed at another
  function, or a second resource opening job_events: the same policy
- a queue that retries forever, a function on a default identity: the same
- an unformatted file: terraform fmt -check
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from terraform.checks.offline import checkov_command, environment, fmt_command, run
from tests.terraform.tfmodel import ROOT

pytestmark = pytest.mark.slow
MODULE = Path("modules/promptforge")

MISSING_ENTRY_POINT = """
resource "google_cloudfunctions2_function" "extra" {
  name     = "extra"
  location = var.region

  build_config {
    runtime     = "python311"
    entry_point = "does_not_exist"
  }
}
"""

PUBLIC_WORKER = """
resource "google_cloud_run_v2_service_iam_member" "public_worker" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.fn["process_chunk"].name
  role     = "roles/run.invoker"
  member   = "allUsers"
}
"""

# A second public grant on the event stream: the exception is one resource, not a function.
PUBLIC_EVENTS_TWIN = """
resource "google_cloud_run_v2_service_iam_member" "events_public_twin" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.fn["job_events"].name
  role     = "roles/run.invoker"
  member   = "allUsers"
}
"""


def copy_terraform(tmp_path: Path) -> Path:
    copy = tmp_path / "terraform"
    shutil.copytree(ROOT / "terraform", copy, ignore=shutil.ignore_patterns(".build", ".terraform", "__pycache__"))
    return copy


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} not found once in {path}: the breakage test is out of date"
    path.write_text(text.replace(old, new))


def add_entry_point_without_function(tf: Path) -> None:
    (tf / MODULE / "broken.tf").write_text(MISSING_ENTRY_POINT.lstrip())


def make_worker_public(tf: Path) -> None:
    (tf / MODULE / "broken.tf").write_text(PUBLIC_WORKER.lstrip())
    functions = tf / MODULE / "functions_table.tf"
    block = functions.read_text().split("    process_chunk = {", 1)[1].split("    }", 1)[0]
    edit(functions, block, block.replace('"ALLOW_INTERNAL_ONLY"', '"ALLOW_ALL"'))


def retarget_public_events(tf: Path) -> None:
    """The exception's own resource, opening the chunk worker instead of the event stream."""
    grant = '  role     = "roles/run.invoker"\n  member   = "allUsers"'
    edit(
        tf / MODULE / "iam.tf",
        f'name     = google_cloudfunctions2_function.fn["job_events"].name\n{grant}',
        f'name     = google_cloudfunctions2_function.fn["plan_job"].name\n{grant}',
    )
    (tf / MODULE / "broken_twin.tf").write_text(PUBLIC_EVENTS_TWIN.lstrip())


def unbound_chunk_retries(tf: Path) -> None:
    edit(tf / MODULE / "tasks.tf", "    max_attempts  = var.chunk_max_attempts\n", "")


def structural_tests(tf: Path) -> subprocess.CompletedProcess[str]:
    """tests/terraform/test_functions.py, pointed at ``tf``."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests/terraform/test_functions.py")]
    env = {**environment(), "PROMPTFORGE_TERRAFORM_DIR": str(tf)}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [(add_entry_point_without_function, "does_not_exist"), (make_worker_public, "process_chunk")],
)
def test_structural_tests_fail_on_a_broken_copy(tmp_path: Path, breakage: Callable[[Path], None], expected: str) -> None:
    tf = copy_terraform(tmp_path)
    assert structural_tests(tf).returncode == 0, "the unbroken copy must pass"
    breakage(tf)
    result = structural_tests(tf)
    assert result.returncode != 0
    assert expected in result.stdout


def test_terraform_fmt_fails_on_an_unformatted_file(tmp_path: Path) -> None:
    tf = copy_terraform(tmp_path)
    assert run(fmt_command(tf)).returncode == 0, "the unbroken copy must pass"
    edit(tf / MODULE / "tasks.tf", '  name = "${var.name_prefix}-plan"', '  name="${var.name_prefix}-plan"')
    result = run(fmt_command(tf))
    assert result.returncode != 0
    assert "tasks.tf" in result.stdout


@pytest.fixture(scope="module")
def checkov_on_broken_copy(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, set[tuple[str, str]]]:
    """One checkov run (they take a while) on a copy with every breakage at once."""
    tf = copy_terraform(tmp_path_factory.mktemp("checkov"))
    make_worker_public(tf)
    (tf / MODULE / "broken_entry.tf").write_text(MISSING_ENTRY_POINT.lstrip())
    unbound_chunk_retries(tf)
    retarget_public_events(tf)
    result = run(checkov_command(tf, "--output", "json"))
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = {(c["check_id"], c["resource"]) for r in reports for c in r["results"]["failed_checks"]}
    return result.returncode, failed


def failed_resources(failed: set[tuple[str, str]], check_id: str) -> set[str]:
    return {resource.removeprefix("module.promptforge.") for check, resource in failed if check == check_id}


def test_checkov_fails_on_the_broken_copy(checkov_on_broken_copy: tuple[int, set[tuple[str, str]]]) -> None:
    returncode, failed = checkov_on_broken_copy
    assert returncode != 0
    # Nothing fails but the breakages: the unbroken configuration passes (make check-infra).
    assert {check for check, _ in failed} <= {"CKV_PF_1", "CKV_PF_2", "CKV_PF_3", "CKV_PF_4"}


@pytest.mark.parametrize(
    ("check_id", "resource"),
    [
        ("CKV_PF_3", "google_cloud_run_v2_service_iam_member.public_worker"),  # allUsers may invoke the worker
        ("CKV_PF_3", "google_cloud_run_v2_service_iam_member.events_public"),  # the exception, on plan_job
        ("CKV_PF_3", "google_cloud_run_v2_service_iam_member.events_public_twin"),  # a second door to job_events
        ("CKV_PF_4", 'google_cloudfunctions2_function.fn["process_chunk"]'),  # the worker's ingress is open
        ("CKV_PF_1", "google_cloud_tasks_queue.chunks"),  # retries forever
        ("CKV_PF_2", "google_cloudfunctions2_function.extra"),  # no service account of its own
    ],
)
def test_each_policy_names_its_breakage(
    checkov_on_broken_copy: tuple[int, set[tuple[str, str]]], check_id: str, resource: str
) -> None:
    _, failed = checkov_on_broken_copy
    assert resource in failed_resources(failed, check_id)


def test_checkers_are_installed() -> None:
    # The tests above would fail on a missing tool too, but less clearly.
    assert os.access(ROOT / ".venv-checks" / "bin" / "checkov", os.X_OK), "run make bootstrap"
