"""Cloud Build can pass its own test step and applies an environment with all its settings.

- infra/bootstrap.sh finds the SDK's emulators wherever gcloud is (the Cloud Build image
  has the SDK in /google-cloud-sdk, Debian's packages in /usr/lib/google-cloud-sdk), and
  fails loudly, saying where it looked, when the components are missing.
- cloudbuild.yaml passes every variable of the environment: project_id itself, the rest
  from the environment's terraform.tfvars.json in the state bucket, which a step checks
  sets each of them (a variable left to its default would unmount the worker's keys or
  destroy the trigger); source_archive_path keeps its default, which is where the
  package step writes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.terraform.tfmodel import ROOT, Module, terraform_dir

CLOUDBUILD = ROOT / "cloudbuild.yaml"
BOOTSTRAP = ROOT / "infra" / "bootstrap.sh"
DEPLOY_MD = ROOT / "docs" / "deploy.md"
EMULATOR_FILES = ("cloud-firestore-emulator/cloud-firestore-emulator.jar", "pubsub-emulator/bin/cloud-pubsub-emulator")
TFVARS = "ci.tfvars.json"


# --- bootstrap: where the SDK is -----------------------------------------------------------


def fake_sdk(root: Path, info_works: bool = True, with_emulators: bool = True) -> Path:
    """An SDK tree whose bin/gcloud answers `gcloud info --format=value(installation.sdk_root)`."""
    (root / "bin").mkdir(parents=True)
    answer = f'echo "{root}"' if info_works else "exit 1"
    gcloud = root / "bin" / "gcloud"
    gcloud.write_text(f'#!/bin/sh\n[ "$1" = info ] && {{ {answer}; }}\nexit 0\n')
    gcloud.chmod(0o755)
    if with_emulators:
        for name in EMULATOR_FILES:
            path = root / "platform" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("")
            path.chmod(0o755)
    return root


def bootstrap(call: str, path: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Source bootstrap.sh (which then only defines its functions) and run ``call``."""
    env = {"PATH": path, "HOME": os.environ.get("HOME", "/root"), **(extra_env or {})}
    script = f'source "{BOOTSTRAP}"; {call}'
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False)


def test_bootstrap_finds_the_sdk_where_gcloud_says_it_is(tmp_path: Path) -> None:
    sdk = fake_sdk(tmp_path / "google-cloud-sdk")
    found = bootstrap("find_sdk_platform", f"{sdk}/bin:/usr/bin:/bin")
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == f"{sdk}/platform"


def test_bootstrap_finds_the_sdk_of_the_gcloud_on_path_through_a_symlink(tmp_path: Path) -> None:
    sdk = fake_sdk(tmp_path / "sdk", info_works=False)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gcloud").symlink_to(sdk / "bin" / "gcloud")
    found = bootstrap("find_sdk_platform", f"{bin_dir}:/usr/bin:/bin")
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == f"{sdk}/platform"


def test_bootstrap_keeps_the_debian_path_as_a_candidate(tmp_path: Path) -> None:
    listed = bootstrap("sdk_platform_candidates", "/usr/bin:/bin").stdout.split()
    assert "/usr/lib/google-cloud-sdk/platform" in listed and "/google-cloud-sdk/platform" in listed


def test_bootstrap_fails_loudly_without_the_emulator_components(tmp_path: Path) -> None:
    sdk = fake_sdk(tmp_path / "sdk", with_emulators=False)
    empty = tmp_path / "empty-platform"
    empty.mkdir()
    tools = tmp_path / "tools"
    tools.mkdir()
    for tool in ("java", "python3"):
        (tools / tool).write_text("#!/bin/sh\nexit 0\n")
        (tools / tool).chmod(0o755)
    path = f"{sdk}/bin:{tools}:/usr/bin:/bin"
    # Only the directory named, which lacks them: no fallback to another SDK.
    assert bootstrap("find_sdk_platform", path, {"CLOUDSDK_PLATFORM_DIR": str(empty)}).returncode != 0
    result = bootstrap("check_machine", path, {"CLOUDSDK_PLATFORM_DIR": str(empty)})
    assert result.returncode != 0
    assert "Firestore and Pub/Sub emulator components" in result.stderr
    assert str(empty) in result.stderr


# --- Cloud Build: every variable --------------------------------------------------------------


@pytest.fixture(scope="module")
def steps() -> dict[str, dict[str, Any]]:
    build = yaml.safe_load(CLOUDBUILD.read_text())
    return {step["id"]: step for step in build["steps"]}


def env_variables(env_dir: Path) -> dict[str, dict[str, Any]]:
    variables: dict[str, dict[str, Any]] = {}
    for block in Module.load(env_dir).blocks.get("variable", []):
        variables.update(block)
    return variables


def environments() -> list[Path]:
    return sorted(p for p in (terraform_dir() / "environments").iterdir() if p.is_dir())


def plan_vars(steps: dict[str, dict[str, Any]]) -> tuple[set[str], list[str]]:
    args = steps["plan"]["args"]
    names = {a.removeprefix("-var=").split("=", 1)[0] for a in args if a.startswith("-var=")}
    files = [a.removeprefix("-var-file=") for a in args if a.startswith("-var-file=")]
    return names, files


def check_script(steps: dict[str, dict[str, Any]], env: str) -> str:
    step = steps["tfvars-check"]
    assert step["entrypoint"] == "python" and step["args"][0] == "-c"
    return str(step["args"][1]).replace("${_ENV}", env)


def exempt_from_the_file(steps: dict[str, dict[str, Any]]) -> set[str]:
    found = re.search(r"-\s*\{([^}]*)\}\)", check_script(steps, "dev"))
    assert found, "the check step's exemptions are not where this test looks"
    return {name.strip().strip('"') for name in found[1].split(",")}


def test_the_plan_reads_the_environments_file_from_the_state_bucket(steps: dict[str, dict[str, Any]]) -> None:
    names, files = plan_vars(steps)
    assert files == [TFVARS] and names == {"project_id"}
    assert steps["plan"]["dir"] == "terraform/environments/${_ENV}"
    fetch = steps["tfvars"]["args"][-1]
    assert "gcloud storage cp" in fetch and "set -euo pipefail" in fetch
    assert '"gs://${_TF_STATE_BUCKET}/promptforge/${_ENV}/terraform.tfvars.json"' in fetch
    assert f'"terraform/environments/${{_ENV}}/{TFVARS}"' in fetch
    # Nothing is initialised, planned or applied before the file is there and checked.
    assert "tfvars-check" in steps["init"]["waitFor"]
    assert steps["tfvars-check"]["waitFor"] == ["tfvars"]
    order = list(steps)
    assert order.index("tfvars-check") < order.index("init") < order.index("plan") < order.index("apply")


@pytest.mark.parametrize("env_dir", environments(), ids=lambda p: p.name)
def test_every_variable_of_the_environment_is_provided_by_the_pipeline(steps: dict[str, dict[str, Any]], env_dir: Path) -> None:
    variables = env_variables(env_dir)
    by_flag, _ = plan_vars(steps)
    exempt = exempt_from_the_file(steps)
    assert exempt == {"project_id", "source_archive_path"}
    for name, spec in variables.items():
        if name in by_flag:
            continue
        if name in exempt:
            # Not in the file: its default is the pipeline's own (the package step's output).
            out = steps["package"]["args"][steps["package"]["args"].index("--out") + 1]
            assert (env_dir / spec["default"]).resolve() == (ROOT / out).resolve(), name
            continue
        # Everything else comes from the file, whose check step refuses it without it.
    without_default = {name for name, spec in variables.items() if "default" not in spec}
    assert without_default <= by_flag | (set(variables) - exempt), without_default


def run_check(steps: dict[str, dict[str, Any]], tmp_path: Path, given: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    env_dir = tmp_path / "terraform" / "environments" / "dev"
    env_dir.mkdir(parents=True)
    shutil.copy(terraform_dir() / "environments" / "dev" / "variables.tf", env_dir / "variables.tf")
    (env_dir / TFVARS).write_text(json.dumps(given))
    return subprocess.run(
        ["python3", "-c", check_script(steps, "dev")], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )


def complete_tfvars() -> dict[str, Any]:
    return {
        "region": "us-central1",
        "provider_keys": ["OPENAI_API_KEY"],
        "openai_compatible_endpoints": {},
        "alert_notification_channels": [],
        "ci": {
            "github_owner": "acme",
            "github_repo": "promptforge",
            "branch": "^main$",
            "service_account": "d@p",
            "tf_state_bucket": "b",
        },
    }


def test_the_check_step_refuses_a_file_that_leaves_a_variable_to_its_default(
    steps: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    given = complete_tfvars()
    del given["ci"]  # the trigger would destroy itself on the next apply
    result = run_check(steps, tmp_path, given)
    assert result.returncode != 0
    assert "must set: ci" in result.stderr


def test_the_check_step_accepts_a_complete_file(steps: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    result = run_check(steps, tmp_path, complete_tfvars())
    assert result.returncode == 0, result.stderr


def test_the_documented_file_sets_every_variable(steps: dict[str, dict[str, Any]]) -> None:
    # docs/deploy.md shows the file to upload; it must pass the check for every environment.
    text = DEPLOY_MD.read_text()
    block = re.search(r"```json\n(\{.*?\})\n```", text, re.S)
    assert block, "docs/deploy.md has no terraform.tfvars.json example"
    documented = json.loads(block[1])
    for env_dir in environments():
        missing = set(env_variables(env_dir)) - set(documented) - exempt_from_the_file(steps)
        assert not missing, f"the documented terraform.tfvars.json lacks {sorted(missing)} ({env_dir.name})"


def test_the_test_step_tells_bootstrap_and_the_stack_where_the_sdk_is(steps: dict[str, dict[str, Any]]) -> None:
    script = steps["test"]["args"][-1]
    assert "export CLOUDSDK_PLATFORM_DIR=\"$$(gcloud info --format='value(installation.sdk_root)')/platform\"" in script
    assert script.index("CLOUDSDK_PLATFORM_DIR") < script.index("make test")
