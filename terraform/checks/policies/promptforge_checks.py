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
# The single function that may be invoked by allUsers, and the one resource allowed to say
# so: the event stream. API Gateway buffers responses, so GET /v1/jobs/{id}/events cannot
# stream through it; clients call job_events on its own run.app URL, and the function checks
# the API key and the client's stream cap itself (modules/promptforge/iam.tf,
# docs/deploy.md). Resource name => the function it may open.
PUBLIC_INVOKER_EXCEPTIONS = {"events_public": "job_events"}
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

    The public API is public through API Gateway, whose identity alone may invoke it. The
    one exception is PUBLIC_INVOKER_EXCEPTIONS: the event stream, which API Gateway cannot
    stream; any other public grant (another function, a binding or policy, a for_each
    instance, allAuthenticatedUsers) fails.
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
        if not any(m in text for m in PUBLIC_MEMBERS):
            return CheckResult.PASSED
        return CheckResult.PASSED if public_invoker_exception(self.entity_type, conf) else CheckResult.FAILED


def public_invoker_exception(resource_type: str, conf: dict[str, Any]) -> bool:
    """True only for the documented exception: a google_cloud_run_v2_service_iam_member named
    in PUBLIC_INVOKER_EXCEPTIONS that grants roles/run.invoker to allUsers (never
    allAuthenticatedUsers) on exactly the function the exception names."""
    address = str(conf.get("__address__", ""))
    name = re.sub(r"\[[^\]]*\]$", "", address).rsplit(".", 1)[-1]
    function = PUBLIC_INVOKER_EXCEPTIONS.get(name)
    if resource_type != "google_cloud_run_v2_service_iam_member" or function is None:
        return False
    if not address.endswith(f"google_cloud_run_v2_service_iam_member.{name}"):
        return False  # a for_each instance would open more than one service
    if value(conf, "member") != "allUsers" or value(conf, "role") != "roles/run.invoker":
        return False
    # The service is the function's: checkov renders the reference either as written or
    # through local.function_names; both must name this function and no other.
    target = str(value(conf, "name"))
    refs = re.findall(r'(?:google_cloudfunctions2_function\.fn|local\.function_names)\[\\?"(\w+)\\?"\]', target)
    return refs == [function]


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
