"""The settings model (functions/promptforge/config.py): every variable declared once, read
from the name docs/settings.md gives it, checked at start with the variable named, and the
only reader of the process environment."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from typing import Any

import pytest
from pydantic import ValidationError

from infra import settings_doc
from promptforge import config
from tests.conftest import ROOT

VARIABLES = config.variables()
ALL_NAMES = [name for v in VARIABLES for name in v.names]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No setting in the environment: each test sets what it reads."""
    for name in ALL_NAMES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_docs_settings_md_is_the_table_rendered_from_the_declarations() -> None:
    text = settings_doc.DOC.read_text(encoding="utf-8")
    assert settings_doc.section(text) == settings_doc.render(), (
        "docs/settings.md is stale: run .venv/bin/python -m infra.settings_doc"
    )
    for v in VARIABLES:
        assert f"| `{v.names[0]}`" in text


def test_the_readmes_tables_give_the_declared_defaults() -> None:
    # The README's fair-use table keeps its own columns (what is counted, where): its
    # defaults must still be config.py's.
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(PROMPTFORGE_\w+)`[^|]*\| ([\d,]+) \|", readme, re.M)
    assert len(rows) >= 4
    defaults = {v.names[0]: v.default for v in VARIABLES}
    for name, default in rows:
        assert defaults[name] == default, name


def test_every_setting_has_one_variable_and_a_one_line_description() -> None:
    assert len(ALL_NAMES) == len(set(ALL_NAMES)), "two settings read the same variable"
    for v in VARIABLES:
        assert v.description.endswith(".") and "\n" not in v.description and len(v.description) <= 160, v.field
        assert all(re.fullmatch(r"[A-Z][A-Z0-9_]*", n) for n in v.names), v.names


def _another_value(field: str) -> tuple[str, Any]:
    """A valid value different from the field's default: (variable text, parsed value)."""
    info = config.Settings.__pydantic_fields__[field]  # type: ignore[attr-defined]
    default = info.get_default(call_default_factory=True)
    if field == "endpoints":
        return '{"e": {"base_url": "http://127.0.0.1:9/v1", "key_env": "E_KEY", "rpm": 60}}', {
            "e": config.Endpoint("e", "http://127.0.0.1:9/v1", key_env="E_KEY", rpm=60)
        }
    if field == "rate_limits":
        return '{"fake/m": {"rpm": 60, "tpm": 1000}}', {"fake/m": {"rpm": 60.0, "tpm": 1000.0}}
    if isinstance(default, bool):
        return ("false", False) if default else ("true", True)
    if isinstance(default, int):
        return str(default + 2), default + 2
    if isinstance(default, float):
        return str(default / 2), default / 2
    if isinstance(default, tuple):
        return " q1, q2 ,", ("q1", "q2")
    assert isinstance(default, str), field
    return "https://settings.example/x", "https://settings.example/x"


@pytest.mark.parametrize("variable", VARIABLES, ids=[v.names[0] for v in VARIABLES])
def test_each_setting_is_read_from_its_documented_variables(clean_env: pytest.MonkeyPatch, variable: config.Variable) -> None:
    text, expected = _another_value(variable.field)
    for name in variable.names:  # the first choice, then each fallback alone
        clean_env.setenv(name, text)
        assert getattr(config.load(), variable.field) == expected, name
        clean_env.delenv(name)
    assert getattr(config.load(), variable.field) != expected


def test_an_empty_variable_is_not_set_and_the_derived_defaults_follow_their_sources(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("PROMPTFORGE_WORKER_CONCURRENCY", "")
    clean_env.setenv("PROMPTFORGE_FIRESTORE_DATABASE", "")
    clean_env.setenv("GOOGLE_CLOUD_PROJECT", "proj")
    clean_env.setenv("PROMPTFORGE_CHUNK_QUEUES", "a,b,c")
    settings = config.load()
    assert (settings.worker_concurrency, settings.firestore_database) == (128, "(default)")
    assert (settings.upload_bucket, settings.results_bucket) == ("proj-uploads", "proj-results")
    # The default that was in force before the model (load(), not the old dataclass's 1):
    # one concurrent chunk per chunk queue, unless PROMPTFORGE_CHUNK_CONCURRENCY says.
    assert settings.max_concurrent_chunks == 3
    clean_env.setenv("PROMPTFORGE_CHUNK_CONCURRENCY", "40")
    assert config.load().max_concurrent_chunks == 40


BAD = [
    ("PROMPTFORGE_WORKER_CONCURRENCY", "sk-not-a-number"),
    ("PROMPTFORGE_WORKER_CONCURRENCY", "0"),
    ("PROMPTFORGE_RATE_TARGET", "1.5"),
    ("PROMPTFORGE_CHUNK_CONCURRENCY", "-1"),
    ("PROMPTFORGE_ALLOW_CLIENT_BASE_URLS", "sk-perhaps"),
    ("PROMPTFORGE_CHUNK_QUEUES", " , "),
    ("PROMPTFORGE_ENDPOINTS", '{"Not Lower": {"base_url": "http://x"}}'),
    ("PROMPTFORGE_ENDPOINTS", '{"e": {"base_url": "http://x", "wire": "anthropic"}}'),
    ("PROMPTFORGE_ENDPOINTS", "{sk-broken json"),
    ("PROMPTFORGE_RATE_LIMITS", '{"openai": {"rpm": 1, "burst": 5}}'),
    ("PROMPTFORGE_RATE_LIMITS", "[1, 2]"),
    ("PROMPTFORGE_CHECKPOINT_SECONDS", "0"),
    ("PROMPTFORGE_MAX_OPEN_JOBS", "-5"),
]


@pytest.mark.parametrize(("name", "value"), BAD)
def test_a_bad_value_fails_loading_with_the_variable_named_and_not_its_value(
    clean_env: pytest.MonkeyPatch, name: str, value: str
) -> None:
    clean_env.setenv(name, value)
    with pytest.raises(config.SettingsError) as caught:
        config.load()
    message = str(caught.value)
    assert name in message
    assert "sk-" not in message  # the values marked sk- stand for a secret pasted in the wrong place
    assert caught.value.__cause__ is None and caught.value.__suppress_context__  # pydantic's error, with the input, is dropped


def test_every_bad_variable_is_named_at_once(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("PROMPTFORGE_MAX_JSON_DEPTH", "deep")
    clean_env.setenv("PROMPTFORGE_HEARTBEAT_SECONDS", "often")
    with pytest.raises(config.SettingsError) as caught:
        config.load()
    assert "PROMPTFORGE_MAX_JSON_DEPTH" in str(caught.value) and "PROMPTFORGE_HEARTBEAT_SECONDS" in str(caught.value)


def test_a_bad_setting_stops_the_functions_at_import() -> None:
    env = {"PATH": "/usr/bin:/bin", "PROMPTFORGE_RATE_TARGET": "two"}
    out = subprocess.run(
        [sys.executable, "-c", "import main"], cwd=ROOT / "functions", env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode != 0
    assert "SettingsError" in out.stderr and "PROMPTFORGE_RATE_TARGET" in out.stderr


def test_a_changed_copy_is_checked_like_the_environment() -> None:
    settings = config.Settings()
    assert dataclasses.replace(settings, worker_concurrency=4).worker_concurrency == 4
    with pytest.raises(ValidationError):
        dataclasses.replace(settings, worker_concurrency=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.worker_concurrency = 3  # type: ignore[misc]


def test_secrets_are_read_by_name_and_never_kept_in_settings(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("PF_TEST_ENDPOINT_KEY", "sk-abc")
    clean_env.setenv("PROMPTFORGE_ENDPOINTS", json.dumps({"e": {"base_url": "http://x/v1", "key_env": "PF_TEST_ENDPOINT_KEY"}}))
    settings = config.load()
    assert config.secret(settings.endpoints["e"].key_env or "") == "sk-abc"
    assert config.secret("PF_TEST_UNSET_KEY") == "" and config.secret("") == ""
    assert "sk-abc" not in repr(settings)


def test_nothing_but_config_py_reads_the_environment() -> None:
    package = ROOT / "functions" / "promptforge"
    readers = sorted(
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if re.search(r"os\.environ|getenv|from os import", path.read_text(encoding="utf-8"))
    )
    assert readers == ["config.py"]


def test_what_terraform_and_the_local_stack_set_is_a_declared_setting() -> None:
    # A misspelt variable would otherwise be ignored and its default used in silence.
    terraform = (ROOT / "terraform" / "modules" / "promptforge" / "functions.tf").read_text(encoding="utf-8")
    stack = (ROOT / "infra" / "stack.py").read_text(encoding="utf-8")
    env_body = stack[stack.index("    def env(self)") :].split("\n    def ", 1)[0]
    set_by_terraform = set(re.findall(r"^\s+(PROMPTFORGE_\w+)\s+=", terraform, re.M))
    set_by_stack = set(re.findall(r'"(PROMPTFORGE_\w+)":', env_body))
    assert len(set_by_terraform) > 20 and len(set_by_stack) > 15
    clients_own = {"PROMPTFORGE_BASE_URL"}  # the CLI's and SDK's, not the functions'
    assert (set_by_terraform | set_by_stack) - clients_own <= set(ALL_NAMES)
