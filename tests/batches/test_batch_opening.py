"""Which batch API a deployment can open, what importing the batch adapters loads, and
how answers the fake never sends (unreadable ones) are refused rather than guessed at."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from types import SimpleNamespace
from typing import Any

import pytest

from promptforge import config
from promptforge.adapters.batches import LiveBatchProviders
from promptforge.adapters.batches._common import Outcomes
from promptforge.adapters.batches.anthropic_batches import _outcome as anthropic_outcome
from promptforge.adapters.batches.gemini_batches import _info as gemini_info
from promptforge.adapters.batches.gemini_batches import _rpc_error
from promptforge.adapters.batches.openai_batches import _outcome as openai_outcome
from promptforge.adapters.providers import ProviderError, ProviderUnavailable
from promptforge.domain.provider_registry import NAMES, SDKS
from promptforge.service.batch_port import BatchOutcome
from tests.conftest import ROOT

SECRET_VALUE = "sk-never-shown-31"


def _settings(**changes: Any) -> config.Settings:
    return dataclasses.replace(config.load(), **{"providers": NAMES, **changes})


def _unavailable(name: str, settings: config.Settings, endpoint: str | None = None, env: dict[str, str] | None = None) -> str:
    factory = LiveBatchProviders(lambda var: (env or {}).get(var, ""))
    with pytest.raises(ProviderUnavailable) as refused:
        factory(name, settings, endpoint)
    return str(refused.value)


def test_a_provider_without_a_batch_api_or_not_enabled_is_unavailable() -> None:
    plain = config.Endpoint("plain", "http://127.0.0.1:9/v1")
    settings = _settings(endpoints={"plain": plain})
    assert "no batch API" in _unavailable("openai_compatible", settings, "plain")
    assert "configured by the operator" in _unavailable("openai_compatible", settings)
    assert "configured by the operator" in _unavailable("openai_compatible", settings, "unknown")
    assert "not enabled" in _unavailable("openai", _settings(providers=("fake",)), env={"OPENAI_API_KEY": "k"})


def test_gemini_on_vertex_has_no_batch_api() -> None:
    message = _unavailable("gemini", _settings(gemini_vertex=True), env={"GEMINI_API_KEY": "k"})
    assert "Vertex AI" in message and "Cloud Storage or BigQuery" in message


@pytest.mark.parametrize(
    ("name", "variable"), [("openai", "OPENAI_API_KEY"), ("anthropic", "ANTHROPIC_API_KEY"), ("gemini", "GEMINI_API_KEY")]
)
def test_a_missing_key_names_its_variable(name: str, variable: str) -> None:
    assert variable in _unavailable(name, _settings(gemini_vertex=False))


def test_an_endpoints_key_comes_from_the_variable_it_names() -> None:
    declared = config.Endpoint("batchy", "http://127.0.0.1:9/v1", key_env="BATCHY_KEY", batch="openai")
    settings = _settings(endpoints={"batchy": declared})
    assert "BATCHY_KEY" in _unavailable("openai_compatible", settings, "batchy", env={"OPENAI_API_KEY": SECRET_VALUE})
    opened = LiveBatchProviders(lambda var: {"BATCHY_KEY": SECRET_VALUE}.get(var, ""))("openai_compatible", settings, "batchy")
    assert SECRET_VALUE not in repr(opened)


_PROBE = """
import dataclasses, json, sys
from promptforge import config
import promptforge.adapters.batches as batches

def loaded():
    return sorted(h for h in __SDKS__ if any(m == h or m.startswith(h + ".") for m in sys.modules))

report = {"package": loaded()}
endpoint = config.Endpoint("probe", "http://127.0.0.1:9/v1", batch="openai")
settings = dataclasses.replace(config.load(), providers=(sys.argv[1],), gemini_vertex=False, endpoints={"probe": endpoint})
batches.LiveBatchProviders(lambda var: "k")(sys.argv[1], settings, "probe")
report["opened"] = loaded()
print(json.dumps(report))
""".replace("__SDKS__", repr(SDKS))


@pytest.mark.parametrize(
    ("name", "sdk"),
    [
        ("openai", "openai"),
        ("fake", "openai"),
        ("openai_compatible", "openai"),
        ("anthropic", "anthropic"),
        ("gemini", "google.genai"),
    ],
)
def test_importing_the_batch_adapters_loads_no_sdk_and_opening_one_loads_its_own(name: str, sdk: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, name], cwd=ROOT / "functions", capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report == {"package": [], "opened": [sdk]}


# ---- answers the fake never sends ------------------------------------------------------


def _refused_as_unreadable(call: Any) -> None:
    with pytest.raises(ProviderError) as refused:
        call()
    assert (refused.value.code, refused.value.retryable) == ("provider_error", True)


def test_an_openai_result_line_without_its_custom_id_or_status_is_not_guessed_at() -> None:
    _refused_as_unreadable(lambda: openai_outcome({"response": {"status_code": 200, "body": {}}}, "m"))
    _refused_as_unreadable(lambda: openai_outcome({"custom_id": "k-1", "response": {"body": {}}}, "m"))
    _refused_as_unreadable(lambda: openai_outcome(["not", "an", "object"], "m"))


def test_an_openai_result_line_read_per_request() -> None:
    # A 200 whose body cannot be read is that request's retryable error, as a fast answer's.
    malformed = openai_outcome({"custom_id": "k-1", "response": {"status_code": 200, "body": {"choices": []}}}, "m")
    assert malformed.error is not None and (malformed.error.code, malformed.error.retryable) == ("provider_error", True)
    # No answer, for a reason other than the window or a cancel: a provider-side failure.
    other = openai_outcome({"custom_id": "k-2", "response": None, "error": {"code": "server_gone", "message": "x"}}, "m")
    assert other.error is not None and (other.error.code, other.error.retryable) == ("provider_error", True)
    assert "server_gone" in other.error.detail
    missing = openai_outcome({"custom_id": "k-3", "response": None, "error": None}, "m")
    assert missing.error is not None and missing.error.code == "provider_expired"


def test_a_custom_id_answered_twice_is_refused() -> None:
    found = Outcomes()
    found.add(BatchOutcome("k-1", error=None))
    _refused_as_unreadable(lambda: found.add(BatchOutcome("k-1", error=None)))


def test_anthropic_and_gemini_answers_they_do_not_document_are_refused() -> None:
    unknown_type = SimpleNamespace(custom_id="k-1", result=SimpleNamespace(type="paused"))
    _refused_as_unreadable(lambda: anthropic_outcome(unknown_type))
    _refused_as_unreadable(lambda: anthropic_outcome(SimpleNamespace(result=SimpleNamespace(type="expired"))))
    _refused_as_unreadable(lambda: gemini_info("batches/x", {"metadata": {"state": "BATCH_STATE_DREAMING"}}))
    _refused_as_unreadable(
        lambda: gemini_info("batches/x", {"metadata": {"state": "BATCH_STATE_RUNNING", "batchStats": {"requestCount": "many"}}})
    )
    _refused_as_unreadable(lambda: _rpc_error(None, "no code", "BATCH_STATE_SUCCEEDED"))
    # A deadline inside a batch that did not expire is the request's own timeout.
    timeout = _rpc_error(4, "deadline", "BATCH_STATE_SUCCEEDED")
    assert (timeout.code, timeout.retryable) == ("timeout", True)


def test_production_deps_open_batch_apis_through_these_adapters() -> None:
    from promptforge.wiring import LiveDeps

    deps = LiveDeps(_settings())
    assert isinstance(deps.batch_providers, LiveBatchProviders)
    assert deps.batch_providers is deps.batch_providers  # made once per process
