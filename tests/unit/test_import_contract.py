"""The import contracts that `make lint` checks ([tool.importlinter] in pyproject.toml)
hold on the tree, and break on a copy where a service module imports an adapter."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(functions: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=functions,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _copy(tmp_path: Path) -> Path:
    functions = tmp_path / "functions"
    shutil.copytree(ROOT / "functions" / "promptforge", functions / "promptforge", ignore=shutil.ignore_patterns("__pycache__"))
    return functions


@pytest.fixture(scope="module", autouse=True)
def _installed() -> None:
    if not LINT_IMPORTS.exists():
        pytest.fail(f"{LINT_IMPORTS} is missing: run make bootstrap (import-linter is in requirements.txt)")


def test_the_tree_keeps_every_contract(tmp_path: Path) -> None:
    out = _lint(_copy(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3 kept, 0 broken" in out.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("service/calls.py", "from ..adapters import outbound", "adapters only behind the ports"),
        ("service/chunks.py", "from ..adapters.providers import open_provider", "adapters only behind the ports"),
        ("api/public.py", "from ..wiring import live", "adapters only behind the ports"),
        ("domain/job.py", "from ..service import ports", "api -> service -> domain"),
        ("service/deps.py", "from ..api import envelope", "api -> service -> domain"),
    ],
)
def test_a_forbidden_import_breaks_the_contract(tmp_path: Path, module: str, line: str, contract: str) -> None:
    functions = _copy(tmp_path)
    target = functions / "promptforge" / module
    target.write_text(target.read_text() + f"\n{line}  # the forbidden import\n")
    out = _lint(functions)
    assert out.returncode != 0, out.stdout
    broken = [row for row in out.stdout.splitlines() if row.endswith("BROKEN")]
    assert any(row.startswith(contract) for row in broken), out.stdout
