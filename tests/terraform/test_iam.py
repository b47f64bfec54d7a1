"""Signing URLs grants signBlob and nothing more: no binding anywhere grants
roles/iam.serviceAccountTokenCreator (it also mints the signer's access and ID tokens),
and the signer's custom role holds exactly iam.serviceAccounts.signBlob."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.terraform.tfmodel import Module, module_dir, terraform_dir

SIGN_BLOB = "iam.serviceAccounts.signBlob"
SIGNER_ACCOUNT = '${google_service_account.role["signer"].name}'
# What IAM allows in a custom role's id.
ROLE_ID = re.compile(r"^[a-zA-Z0-9_.]{3,64}$")
# variables.tf's own validation of name_prefix.
NAME_PREFIX = re.compile(r"^[a-z][a-z0-9-]{1,8}[a-z0-9]$")


def configurations() -> dict[str, Module]:
    """The module and every environment that instantiates it."""
    found = {"modules/promptforge": Module.load(module_dir())}
    for env in sorted((terraform_dir() / "environments").iterdir()):
        if env.is_dir():
            found[f"environments/{env.name}"] = Module.load(env)
    return found


@pytest.fixture(scope="module")
def module() -> Module:
    return Module.load(module_dir())


def test_no_binding_anywhere_grants_service_account_token_creator() -> None:
    for where, config in configurations().items():
        for kind in ("resource", "data", "locals", "module"):
            for block in config.blocks.get(kind, []):
                text = json.dumps(block)
                assert "serviceAccountTokenCreator" not in text, f"{where}: a {kind} block grants serviceAccountTokenCreator"
                assert "getAccessToken" not in text and "getOpenIdToken" not in text, f"{where}: a {kind} block mints tokens"


def test_the_signer_role_holds_exactly_sign_blob(module: Module) -> None:
    roles = module.resources("google_project_iam_custom_role")
    assert roles["signer"]["permissions"] == [SIGN_BLOB]
    for name, role in roles.items():
        assert role["permissions"], name
        assert not [p for p in role["permissions"] if p.startswith("iam.serviceAccounts.") and p != SIGN_BLOB], name


def test_the_signer_role_id_is_valid_for_every_name_prefix(module: Module) -> None:
    role_id = module.resources("google_project_iam_custom_role")["signer"]["role_id"]
    assert role_id == 'promptforgeSigner_${replace(var.name_prefix, "-", "_")}'
    prefixes = {"a-b", "abcdefghij", "pf-x-1"}
    for config in configurations().values():
        for block in config.blocks.get("module", []):
            prefixes |= {str(body["name_prefix"]) for body in block.values() if "name_prefix" in body}
    assert {"pf-dev", "pf-stg", "pf-prod"} <= prefixes
    for prefix in prefixes:
        assert NAME_PREFIX.match(prefix), prefix
        assert ROLE_ID.match("promptforgeSigner_" + prefix.replace("-", "_")), prefix


def test_functions_sign_as_the_signer_through_the_custom_role_only(module: Module) -> None:
    members: dict[str, dict[str, Any]] = module.resources("google_service_account_iam_member")
    sign = members["fn_sign_as_signer"]
    assert sign["for_each"] == "${local.signers}"
    assert sign["service_account_id"] == SIGNER_ACCOUNT
    assert sign["role"] == "${google_project_iam_custom_role.signer.name}"
    assert sign["member"] == "serviceAccount:${google_service_account.fn[each.key].email}"
    on_signer = {name for name, body in members.items() if body["service_account_id"] == SIGNER_ACCOUNT}
    assert on_signer == {"fn_sign_as_signer"}, "nothing else may be granted on the signer account"
    for kind in ("google_service_account_iam_binding", "google_service_account_iam_policy"):
        assert not module.resources(kind), f"{kind} would replace the bindings above"
