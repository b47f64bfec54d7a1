"""The offline schema check (terraform/checks/schema_check.py) against the Google provider
schemas recorded in terraform/checks/provider_schema/google-6.x.json.

- the module and the environments as they are: exactly EXPECTED_FINDINGS (empty when clean);
- a copy of terraform/ with a misspelt argument, a misspelt nested block and a required
  argument removed: each is reported with its file and resource address;
- small configurations for each rule (dynamic blocks, meta-arguments, computed-only
  attributes, beta-only types, block/argument confusion, references, version pins).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from terraform.checks.schema_check import SCHEMA_FILE, Finding, check, check_module, load_schema
from tests.terraform.tfmodel import ROOT, terraform_dir

MODULE = Path("modules/promptforge")
ENVIRONMENTS = ("dev", "staging", "prod")

# (file relative to terraform/, address, path) of each finding the check reports on the
# Terraform as it stands; fix the Terraform, then remove the entry. Empty when clean.
EXPECTED_FINDINGS: set[tuple[str, str, str]] = set()


def _key(finding: Finding, base: Path) -> tuple[str, str, str]:
    path = Path(finding.file)
    path = path if path.is_absolute() else ROOT / path
    return (str(path.relative_to(base)), finding.address, finding.path)


def copy_terraform(tmp_path: Path) -> Path:
    copy = tmp_path / "terraform"
    shutil.copytree(terraform_dir(), copy, ignore=shutil.ignore_patterns(".build", ".terraform", "__pycache__"))
    return copy


def resource_span(text: str, type_: str, name: str | None = None) -> tuple[int, int]:
    """Character span of the first `resource "type_" "name"` block (brace-matched)."""
    label = re.escape(name) if name else r"[\w-]+"
    match = re.search(rf'^resource "{re.escape(type_)}" "{label}" \{{', text, re.M)
    assert match, f"no resource {type_} {name or ''} in the copy: this test is out of date"
    depth = 0
    for pos in range(match.end() - 1, len(text)):
        depth += {"{": 1, "}": -1}.get(text[pos], 0)
        if depth == 0:
            return match.start(), pos + 1
    raise AssertionError("unbalanced braces")


def edit_in_resource(path: Path, type_: str, pattern: str, replacement: str) -> str:
    """Apply one regex substitution inside the first resource of type_ in path; return its address."""
    text = path.read_text()
    start, end = resource_span(text, type_)
    block = text[start:end]
    new, count = re.subn(pattern, replacement, block, count=1, flags=re.M)
    assert count == 1, f"{pattern!r} not in the first {type_} of {path.name}: this test is out of date"
    path.write_text(text[:start] + new + text[end:])
    header = re.match(r'resource "[^"]+" "([^"]+)"', block)
    assert header, f"{type_} in {path.name} does not start with its resource line"
    return f"{type_}.{header[1]}"


def findings_for(findings: list[Finding], file: Path, address: str) -> list[Finding]:
    return [f for f in findings if Path(f.file) == file and f.address == address]


# --------------------------------------------------------------------------- the real Terraform


def test_schema_file_records_the_provider_release() -> None:
    schema = load_schema()
    for local in ("google", "google-beta"):
        provider = schema["providers"][local]
        assert provider["source"] == f"hashicorp/{local}"
        assert re.fullmatch(r"6\.\d+\.\d+", provider["version"]), provider
        assert re.fullmatch(r"[0-9a-f]{40}", provider["commit"] or ""), provider
        assert provider["repository"].startswith("https://github.com/hashicorp/terraform-provider-google")
    assert schema["resource"] and schema["data"]


def test_environments_pin_the_extracted_minor() -> None:
    version = load_schema()["providers"]["google"]["version"]
    want = "~> " + ".".join(version.split(".")[:2])
    for env in ENVIRONMENTS:
        text = (terraform_dir() / "environments" / env / "main.tf").read_text()
        for source in ("hashicorp/google", "hashicorp/google-beta"):
            match = re.search(rf'source\s*=\s*"{source}"\s*\n\s*version\s*=\s*"([^"]+)"', text)
            assert match and match[1] == want, f"{env}: {source} should be pinned to {want!r}"


def test_module_and_environments_match_the_provider_schema() -> None:
    base = terraform_dir()
    found = {_key(f, base): str(f) for f in check(base)}
    unexpected = {k: v for k, v in found.items() if k not in EXPECTED_FINDINGS}
    fixed = EXPECTED_FINDINGS - set(found)
    assert not unexpected, "schema check findings:\n" + "\n".join(sorted(unexpected.values()))
    assert not fixed, f"fixed, remove from EXPECTED_FINDINGS: {sorted(fixed)}"


def test_every_google_type_used_is_in_the_schema_file() -> None:
    schema = load_schema()
    used = set()
    for path in terraform_dir().rglob("*.tf"):
        used |= set(re.findall(r'^\s*(resource|data)\s+"(google_\w+)"', path.read_text(), re.M))
    missing = sorted(f"{kind} {name}" for kind, name in used if name not in schema[kind])
    assert not missing, f"re-run terraform/checks/extract_provider_schema.py for: {missing}"


def test_the_command_line_reports_and_fails(tmp_path: Path) -> None:
    copy = copy_terraform(tmp_path)
    functions = copy / MODULE / "functions.tf"
    address = edit_in_resource(
        functions, "google_cloudfunctions2_function", r"^(\s*)max_instance_count(\s*=)", r"\1max_instances_count\2"
    )
    result = subprocess.run(
        [sys.executable, str(ROOT / "terraform" / "checks" / "schema_check.py"), str(copy)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{functions}:" in result.stdout and address in result.stdout and "max_instances_count" in result.stdout


# --------------------------------------------------------------------------- a broken copy of terraform/


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Finding], dict[str, tuple[Path, str]]]:
    copy = copy_terraform(tmp_path_factory.mktemp("schema"))
    module = copy / MODULE
    functions = module / "functions.tf"
    breakages = {
        # an argument misspelt, in a nested block
        "argument": (
            functions,
            edit_in_resource(
                functions, "google_cloudfunctions2_function", r"^(\s*)max_instance_count(\s*=)", r"\1max_instances_count\2"
            ),
        ),
        # a nested block misspelt, two levels down
        "block": (
            functions,
            edit_in_resource(
                functions, "google_cloudfunctions2_function", r"^(\s*)storage_source(\s*\{)", r"\1storage_sources\2"
            ),
        ),
        # a required argument removed
        "required": (
            module / "tasks.tf",
            edit_in_resource(module / "tasks.tf", "google_cloud_tasks_queue", r"^\s*location\s*=.*\n", ""),
        ),
        # a beta-only resource without provider = google-beta
        "beta": (
            module / "gateway.tf",
            edit_in_resource(module / "gateway.tf", "google_api_gateway_gateway", r"^\s*provider\s*=\s*google-beta\s*\n", ""),
        ),
    }
    return copy, check(copy), breakages


def test_misspelt_argument_is_reported(broken: tuple[Path, list[Finding], dict[str, tuple[Path, str]]]) -> None:
    _, findings, breakages = broken
    file, address = breakages["argument"]
    found = [f for f in findings_for(findings, file, address) if f.path == "service_config.max_instances_count"]
    assert found, "\n".join(map(str, findings))
    assert 'has no argument "max_instances_count"' in found[0].message
    assert 'did you mean "max_instance_count"' in found[0].message
    assert "max_instances_count" in file.read_text().splitlines()[found[0].line - 1]


def test_misspelt_nested_block_is_reported(broken: tuple[Path, list[Finding], dict[str, tuple[Path, str]]]) -> None:
    _, findings, breakages = broken
    file, address = breakages["block"]
    found = [f for f in findings_for(findings, file, address) if f.path == "build_config.source.storage_sources"]
    assert found, "\n".join(map(str, findings))
    assert 'has no block "storage_sources"' in found[0].message


def test_missing_required_argument_is_reported(broken: tuple[Path, list[Finding], dict[str, tuple[Path, str]]]) -> None:
    _, findings, breakages = broken
    file, address = breakages["required"]
    found = [f for f in findings_for(findings, file, address) if f.path == "location"]
    assert found, "\n".join(map(str, findings))
    assert 'required argument "location" is missing' in found[0].message


def test_beta_only_resource_without_the_beta_provider_is_reported(
    broken: tuple[Path, list[Finding], dict[str, tuple[Path, str]]],
) -> None:
    _, findings, breakages = broken
    file, address = breakages["beta"]
    found = findings_for(findings, file, address)
    assert [f.path for f in found] == ["provider"], "\n".join(map(str, findings))
    assert "exists only in google-beta" in found[0].message


def test_the_broken_copy_has_only_the_breakages(broken: tuple[Path, list[Finding], dict[str, tuple[Path, str]]]) -> None:
    copy, findings, breakages = broken
    addresses = {address for _, address in breakages.values()}
    others = {_key(f, copy) for f in findings if f.address not in addresses}
    assert others == EXPECTED_FINDINGS


# --------------------------------------------------------------------------- each rule, on small configurations


def check_text(tmp_path: Path, text: str) -> list[str]:
    module = tmp_path / "m"
    module.mkdir(exist_ok=True)
    (module / "main.tf").write_text(text)
    return [f"{f.address}: {f.path}: {f.message}" for f in check_module(module)]


IAM_MEMBER = """
resource "google_project_iam_member" "m" {
  project = var.project
  role    = "roles/viewer"
  member  = "user:a@example.com"
%s
}
"""


def test_clean_resource_with_meta_arguments_passes(tmp_path: Path) -> None:
    body = """
  count      = 1
  depends_on = []
  provider   = google
  lifecycle {
    create_before_destroy = true
  }
  provisioner "local-exec" {
    command = "true"
  }
  condition {
    title      = "t"
    expression = var.expression
  }
"""
    assert check_text(tmp_path, IAM_MEMBER % body) == []


def test_nested_required_argument_and_max_items(tmp_path: Path) -> None:
    body = """
  condition {
    expression = "true"
  }
  condition {
    title      = "b"
    expression = "true"
  }
"""
    found = check_text(tmp_path, IAM_MEMBER % body)
    assert 'google_project_iam_member.m: condition.title: required argument "title" is missing' in found
    assert 'google_project_iam_member.m: condition: at most 1 "condition" block(s) allowed, found 2' in found


def test_computed_only_and_block_argument_confusion(tmp_path: Path) -> None:
    body = """
  etag = "x"
  condition = { title = "t", expression = "e" }
  role_x {
  }
"""
    found = check_text(tmp_path, (IAM_MEMBER % body).replace('role    = "roles/viewer"', 'role { name = "x" }'))
    assert any(f.startswith('google_project_iam_member.m: etag: "etag" is computed-only') for f in found), found
    assert any(f.startswith('google_project_iam_member.m: condition: "condition" is a block, not an argument') for f in found)
    assert any(f.startswith('google_project_iam_member.m: role: "role" is an argument, not a block') for f in found)
    assert any(f.startswith("google_project_iam_member.m: role_x: the provider (google 6.") for f in found)


DYNAMIC_INDEX = """
resource "google_firestore_index" "i" {
  project    = var.project
  collection = "jobs"
  dynamic "fields" {
    for_each = var.fields
    iterator = field
    content {
      field_path = field.value
      order      = "ASCENDING"
      %s
    }
  }
}
"""


def test_dynamic_block_counts_as_present_and_its_content_is_checked(tmp_path: Path) -> None:
    assert check_text(tmp_path, DYNAMIC_INDEX % "") == []
    found = check_text(tmp_path, DYNAMIC_INDEX % "orders = 1")
    assert len(found) == 1 and found[0].startswith("google_firestore_index.i: fields.orders: the provider"), found
    found = check_text(tmp_path, DYNAMIC_INDEX.replace('dynamic "fields"', 'dynamic "field"') % "")
    assert any(f.startswith('google_firestore_index.i: field: dynamic "field": the provider') for f in found), found
    assert any('required block "fields" is missing' in f for f in found), found


def test_required_block_missing_and_beta_schema(tmp_path: Path) -> None:
    found = check_text(tmp_path, 'resource "google_firestore_index" "i" {\n  collection = "c"\n}\n')
    assert found == ['google_firestore_index.i: fields: required block "fields" is missing (at least 1)']
    gateway = """
resource "google_api_gateway_api" "a" {
  provider = google-beta
  api_id   = "x"
}
"""
    assert check_text(tmp_path, gateway) == []
    found = check_text(tmp_path, gateway.replace("  provider = google-beta\n", ""))
    assert found == [
        "google_api_gateway_api.a: provider: google_api_gateway_api exists only in google-beta: set provider = google-beta"
    ]


def test_data_sources_unknown_types_and_other_providers(tmp_path: Path) -> None:
    text = """
data "google_project" "p" {
  project_id = var.project
  number     = "1"
}
resource "google_not_a_type" "x" {
}
resource "time_sleep" "t" {
  create_duration = "30s"
}
"""
    found = check_text(tmp_path, text)
    assert any(f.startswith('data.google_project.p: number: "number" is computed-only') for f in found), found
    assert any(f.startswith("google_not_a_type.x: : resource type google_not_a_type is not in") for f in found), found
    assert not any(f.startswith("time_sleep") for f in found)
    assert len(found) == 2


def test_version_pins(tmp_path: Path) -> None:
    env = tmp_path / "environments" / "dev"
    env.mkdir(parents=True)
    pins = """
terraform {
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "%s"
    }
  }
}
"""
    version = load_schema()["providers"]["google"]["version"]
    want = "~> " + ".".join(version.split(".")[:2])
    (env / "main.tf").write_text(pins % want)
    assert check_module(env) == []
    (env / "main.tf").write_text(pins % "~> 6.0")
    assert [f.message.split(" (")[0] for f in check_module(env)] == [f'pin hashicorp/google to "{want}"']
    assert (
        check_text(tmp_path, 'terraform {\n  required_providers {\n    google = { source = "hashicorp/google" }\n  }\n}\n') == []
    )


def test_schema_json_is_compact_and_sorted() -> None:
    data = json.loads(SCHEMA_FILE.read_text())
    assert SCHEMA_FILE.stat().st_size < 400_000
    assert list(data["resource"]) == sorted(data["resource"])


def test_references_to_attributes_and_resources(tmp_path: Path) -> None:
    text = """
resource "google_service_account" "sa" {
  account_id = "a"
}
data "google_project" "this" {
}
locals {
  ok     = [google_service_account.sa.email, data.google_project.this.number, google_service_account.sa["k"].id]
  typo   = google_service_account.sa.emails
  nested = data.google_project.this.numbers
  gone   = google_service_account.other.email
}
"""
    found = check_text(tmp_path, text)
    assert sorted(found) == sorted(
        [
            'data.google_project.this: numbers: reference to an attribute the provider does not have: "numbers"'
            ' (did you mean "number"?)',
            'google_service_account.sa: emails: reference to an attribute the provider does not have: "emails"'
            ' (did you mean "email"?)',
            "google_service_account.other: : reference to undeclared resource google_service_account.other",
        ]
    ), found
