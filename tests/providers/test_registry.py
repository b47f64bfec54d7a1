"""Everything that names providers agrees with the provider registry: what is derived
from it at run time is checked where it lands, and what cannot import it (Terraform,
the docs, the requirements, the price table) is compared with it here."""

from __future__ import annotations

import importlib
import json
import re
from typing import get_args

import hcl2
import pytest

from promptforge.api.schemas import InitRequest, Provider
from promptforge.domain.provider_registry import BY_NAME, CREDENTIAL_ENVS, NAMES, PROVIDERS
from tests.conftest import ROOT
from tests.providers import render_doc
from tests.terraform.tfmodel import _OPTIONS, module_dir

FUNCTIONS = ROOT / "functions"


def test_names_are_unique_and_the_api_enum_is_the_registry() -> None:
    assert len(set(NAMES)) == len(NAMES) == len(BY_NAME)
    assert get_args(Provider) == NAMES
    assert InitRequest.model_json_schema()["properties"]["provider"]["enum"] == list(NAMES)


@pytest.mark.parametrize("spec", PROVIDERS, ids=NAMES)
def test_each_entry_names_an_opener_that_exists(spec: object) -> None:
    module = importlib.import_module(f"promptforge.adapters.providers.{spec.module}")  # type: ignore[attr-defined]
    assert callable(getattr(module, spec.opener))  # type: ignore[attr-defined]


def test_the_docs_table_is_generated_from_the_registry() -> None:
    text = render_doc.DOC.read_text()
    assert render_doc.rendered(text) == text, "docs/providers.md is stale: run python -m tests.providers.render_doc"


def test_every_price_table_belongs_to_a_provider_and_every_priced_provider_has_one() -> None:
    table = {k for k in json.loads((FUNCTIONS / "promptforge" / "domain" / "prices.json").read_text()) if not k.startswith("_")}
    assert table == {p.price_key for p in PROVIDERS if p.price_key}


def test_every_sdk_is_pinned_in_the_functions_requirements() -> None:
    pinned = {
        re.split(r"[\[=<>~ ]", line, maxsplit=1)[0].lower()
        for line in (FUNCTIONS / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {p.distribution for p in PROVIDERS if p.distribution} <= pinned
    # and a provider with an SDK names the distribution that brings it
    assert all((p.sdk is None) == (p.distribution is None) for p in PROVIDERS)


def _hcl(name: str) -> dict[str, object]:
    with open(module_dir() / name) as f:
        return dict(hcl2.load(f, serialization_options=_OPTIONS))


def _strings(value: object) -> list[str]:
    """The quoted names in a Terraform expression as python-hcl2 gives it."""
    return re.findall(r'"([A-Za-z0-9_]+)"', json.dumps(value).replace('\\"', '"'))


def test_terraform_creates_a_secret_for_each_provider_credential_and_no_other() -> None:
    locals_ = {k: v for block in _hcl("secrets.tf")["locals"] for k, v in block.items()}  # type: ignore[attr-defined]
    assert sorted(_strings(locals_["provider_key_names"])) == sorted(CREDENTIAL_ENVS)


def test_terraform_variables_accept_exactly_the_registry_providers_and_keys() -> None:
    variables = {k: v for block in _hcl("variables.tf")["variable"] for k, v in block.items()}  # type: ignore[attr-defined]

    def allowed(name: str) -> list[str]:
        (validation,) = variables[name]["validation"]
        condition = validation["condition"]
        listed = re.search(r"contains\(\[(.*?)\]", condition.replace('\\"', '"'))
        assert listed, condition
        return re.findall(r'"([A-Za-z0-9_]+)"', listed.group(1))

    assert sorted(allowed("providers_enabled")) == sorted(p.name for p in PROVIDERS if p.deployable)
    assert sorted(allowed("provider_keys")) == sorted(CREDENTIAL_ENVS)


def test_the_cli_names_every_provider() -> None:
    """The CLI takes the provider as free text (a newer server may offer more, and the server
    checks it), but its help lists the names: every one the registry has."""
    from promptforge_client import cli

    source = (ROOT / "client" / "promptforge_client" / "cli.py").read_text()
    listed = re.search(r'help="(openai[^"]*)"', source)
    assert listed is not None and cli is not None
    named = set(re.findall(r"[a-z_]+", listed.group(1)))
    assert set(NAMES) <= named, f"cli.py's --provider help misses: {sorted(set(NAMES) - named)}"
