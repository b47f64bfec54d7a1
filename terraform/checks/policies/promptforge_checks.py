"""PromptForge's own checkov policies: what checkov has no check for.

Loaded with ``checkov --external-checks-dir terraform/checks/policies``. Each check reads
the resource as checkov renders it (values in one-element lists, ``for_each`` instances
expanded when checkov can resolve the map). A value the check cannot resolve fails it:
a policy that passes what it cannot see proves nothing. That is also why
``local.functions`` in modules/promptforge/functions.tf stays statically resolvable.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

REPO = Path(__file__).resolve().parents[3]
ROUTES = REPO / "functions" / "promptforge" / "api" / "routes.py"
PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")
DEFAULT_ACCOUNT_SUFFIXES = ("-compute@developer.gserviceaccount.com", "@appspot.gserviceaccount.com")


def public_entry_points(routes_file: Path = ROUTES) -> frozenset[str]:
    """Entry points that serve a public route: the third argument of each ``Route(...)``."""
    tree = ast.parse(routes_file.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Route" and len(node.args) == 3:
            arg = node.args[2]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names.add(arg.value)
    return frozenset(names)


def value(conf: dict[str, Any], *path: str) -> Any:
    """The rendered value at ``path`` (blocks and values unwrapped from checkov's lists)."""
    node: Any = conf
    for key in path:
        if isinstance(node, list):
            node = node[0] if node else None
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    if isinstance(node, list) and len(node) == 1:
        node = node[0]
    return node


def resolved(v: Any) -> bool:
    """False for what checkov left as an expression (each.value.x, ${...}, var.x, ...)."""
    return not (isinstance(v, str) and re.search(r"\$\{|\beach\.|\bvar\.|\blocal\.|\bmodule\.", v))


class QueueRetriesBounded(BaseResourceCheck):  # type: ignore[misc]
    """Every Cloud Tasks queue gives up after a known number of attempts.

    Cloud Tasks' default is to retry forever; a poison task would then run (and bill) until
    the queue is purged, and nothing would ever report the job stuck.
    """

    def __init__(self) -> None:
        super().__init__(
            name="Cloud Tasks queues have bounded retries (retry_config.max_attempts > 0)",
            id="CKV_PF_1",
            categories=[CheckCategories.GENERAL_SECURITY],
            supported_resources=["google_cloud_tasks_queue"],
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        attempts = value(conf, "retry_config", "max_attempts")
        if isinstance(attempts, str) and attempts.strip().lstrip("-").isdigit():
            attempts = int(attempts)
        if isinstance(attempts, int) and not isinstance(attempts, bool) and attempts > 0:
            return CheckResult.PASSED
        return CheckResult.FAILED


class FunctionDedicatedServiceAccount(BaseResourceCheck):  # type: ignore[misc]
    """Every function runs as a service account of its own, created in this configuration.

    Without one it runs as the default compute account, which holds Editor on the project.
    """

    def __init__(self) -> None:
        super().__init__(
            name="Cloud Functions run as a dedicated service account (not a default one)",
            id="CKV_PF_2",
            categories=[CheckCategories.IAM],
            supported_resources=["google_cloudfunctions2_function", "google_cloudfunctions_function"],
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        account = value(conf, "service_config", "service_account_email") or value(conf, "service_account_email")
        if not isinstance(account, str) or not account:
            return CheckResult.FAILED
        if account.endswith(DEFAULT_ACCOUNT_SUFFIXES):
            return CheckResult.FAILED
        # A reference to a google_service_account managed here (per instance when for_each).
        return CheckResult.PASSED if "google_service_account." in account else CheckResult.FAILED


class FunctionsNotPublic(BaseResourceCheck):  # type: ignore[misc]
    """No function or Cloud Run service is invokable by allUsers or allAuthenticatedUsers.

    The public API is public through API Gateway, whose identity alone may invoke it.
    """

    def __init__(self) -> None:
        kinds = ("iam_member", "iam_binding", "iam_policy")
        bases = (
            "google_cloud_run_service",
            "google_cloud_run_v2_service",
            "google_cloudfunctions2_function",
            "google_cloudfunctions_function",
        )
        super().__init__(
            name="No function is invokable by allUsers or allAuthenticatedUsers",
            id="CKV_PF_3",
            categories=[CheckCategories.IAM],
            supported_resources=[f"{b}_{k}" for b in bases for k in kinds],
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        text = " ".join(str(conf.get(key, "")) for key in ("member", "members", "policy_data"))
        return CheckResult.FAILED if any(m in text for m in PUBLIC_MEMBERS) else CheckResult.PASSED


class PrivateFunctionsInternalIngress(BaseResourceCheck):  # type: ignore[misc]
    """Only the functions behind a public route may take traffic from outside the project.

    The rest (the workers, the watchdog, the upload trigger) are called by Cloud Tasks,
    Cloud Scheduler or Eventarc, which count as internal: ALLOW_INTERNAL_ONLY.
    """

    def __init__(self) -> None:
        super().__init__(
            name="Functions that serve no public route have ingress ALLOW_INTERNAL_ONLY",
            id="CKV_PF_4",
            categories=[CheckCategories.NETWORKING],
            supported_resources=["google_cloudfunctions2_function"],
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        entry_point = value(conf, "build_config", "entry_point")
        if not isinstance(entry_point, str) or not resolved(entry_point):
            # for_each not expanded: which functions this resource deploys is unknown.
            return CheckResult.FAILED
        if entry_point in public_entry_points():
            return CheckResult.PASSED
        ingress = value(conf, "service_config", "ingress_settings")
        return CheckResult.PASSED if ingress == "ALLOW_INTERNAL_ONLY" else CheckResult.FAILED


checks = [QueueRetriesBounded(), FunctionDedicatedServiceAccount(), FunctionsNotPublic(), PrivateFunctionsInternalIngress()]
