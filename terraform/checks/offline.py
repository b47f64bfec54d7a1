"""The infrastructure checks that run offline: `make check-infra`, and so `make test`.

    terraform fmt -check -recursive    formatting of terraform/
    checkov                            built-in and PromptForge policies (policies/),
                                       skips and their reasons in checkov.yaml
    check-jsonschema                   cloudbuild.yaml against the Cloud Build schema
    schema_check.py                    resources and data sources against the Google
                                       provider schemas (provider_schema/, what
                                       `terraform validate` would check)

What needs the Google provider (terraform init, validate, plan) cannot run here; Cloud
Build runs it (cloudbuild.yaml). The structural tests (entry points, OpenAPI paths,
queue sizing) are pytest tests in tests/terraform.

Usage: python terraform/checks/offline.py [--terraform DIR] [--cloudbuild FILE] [CHECK ...]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECKS_DIR = ROOT / "terraform" / "checks"
# checkov pins packaging<24 and pytest needs >=24: the checkers live in their own venv.
CHECKS_BIN = ROOT / ".venv-checks" / "bin"


class MissingTool(Exception):
    """A checker is not installed; the message says how to get it."""


def _tool(path: Path | str | None, hint: str) -> str:
    if path is None or not Path(path).exists():
        raise MissingTool(hint)
    return str(path)


def terraform_bin() -> str:
    """The Terraform CLI: $TERRAFORM, else terraform on PATH."""
    found = os.environ.get("TERRAFORM") or shutil.which("terraform")
    return _tool(
        found,
        "terraform not found: the machine image has it at /usr/local/bin/terraform; "
        "in Cloud Build the terraform-cli step provides it (or set TERRAFORM=/path/to/terraform)",
    )


def checks_tool(name: str) -> str:
    """A tool from .venv-checks (infra/bootstrap.sh installs requirements-checks.txt there)."""
    return _tool(CHECKS_BIN / name, f"{CHECKS_BIN / name} not found: run `make bootstrap`")


def fmt_command(terraform_dir: Path) -> list[str]:
    return [terraform_bin(), "fmt", "-check", "-recursive", "-diff", str(terraform_dir)]


def checkov_command(terraform_dir: Path, *extra: str) -> list[str]:
    return [
        checks_tool("checkov"),
        "--directory",
        str(terraform_dir),
        "--config-file",
        str(CHECKS_DIR / "checkov.yaml"),
        "--external-checks-dir",
        str(CHECKS_DIR / "policies"),
        *extra,
    ]


def cloudbuild_command(cloudbuild_file: Path) -> list[str]:
    return [checks_tool("check-jsonschema"), "--builtin-schema", "vendor.cloudbuild", str(cloudbuild_file)]


def schema_command(terraform_dir: Path) -> list[str]:
    return [sys.executable, str(CHECKS_DIR / "schema_check.py"), str(terraform_dir)]


def environment() -> dict[str, str]:
    """The checkers' environment: no user Terraform CLI config (and no warning about it)."""
    return {**os.environ, "TF_CLI_CONFIG_FILE": os.devnull, "TF_IN_AUTOMATION": "1"}


def run(command: list[str]) -> subprocess.CompletedProcess[str]:
    """Run one checker, capturing its output."""
    return subprocess.run(command, env=environment(), capture_output=True, text=True, timeout=600, check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--terraform", type=Path, default=ROOT / "terraform")
    parser.add_argument("--cloudbuild", type=Path, default=ROOT / "cloudbuild.yaml")
    parser.add_argument("checks", nargs="*", help="fmt, checkov, cloudbuild and/or schema (default: all)")
    args = parser.parse_args(argv)

    commands: dict[str, Callable[[], list[str]]] = {
        "fmt": lambda: fmt_command(args.terraform),
        "checkov": lambda: checkov_command(args.terraform),
        "cloudbuild": lambda: cloudbuild_command(args.cloudbuild),
        "schema": lambda: schema_command(args.terraform),
    }
    unknown = set(args.checks) - set(commands)
    if unknown:
        parser.error(f"unknown checks: {', '.join(sorted(unknown))}")
    failed = []
    for name in args.checks or list(commands):
        try:
            result = run(commands[name]())
        except MissingTool as exc:
            print(f"check-infra: {name}: {exc}", file=sys.stderr)
            failed.append(name)
            continue
        status = "ok" if result.returncode == 0 else f"FAILED (exit {result.returncode})"
        print(f"check-infra: {name}: {status}")
        if result.returncode != 0:
            failed.append(name)
            sys.stdout.write(result.stdout)
            sys.stderr.write(result.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
