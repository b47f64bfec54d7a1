"""Each function's service account holds what its code uses, nothing missing and nothing
extra: the code's needs come from a static call graph of functions/ (codegraph.py: from
each entry point in functions/main.py to the port calls the production adapters turn into
Google API calls), the grants from the Terraform (local.functions in functions.tf, and the
iam.tf resources that turn its fields into IAM bindings).

    Firestore (any JobStore / Tx call)         firestore      roles/datastore.user
    Cloud Storage, per bucket and operation    buckets        objectViewer / objectCreator / objectUser
    Cloud Tasks, per queue (enqueue_*)         enqueues       cloudtasks.enqueuer (+ actAs on the tasks identity)
    signed URLs (signed_*_url)                 signs_urls     signBlob on the signer (custom role)
    the provider adapters                      provider_keys  secretAccessor on the key secrets

The storage role a function needs: objectViewer when it only reads (get, stat);
objectCreator when it only creates, and only for a function nothing redelivers (a public
API call: a client's retry is a new request, with new object names); objectUser for the
rest, since compose reads, delete deletes, and a redelivered task, scheduler run or event
writes the same names again, which is an overwrite (storage.objects.delete).
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from tests.terraform.codegraph import CodeGraph, Needs, entry_roots, needs_of
from tests.terraform.tfmodel import Module, main_entry_points, module_dir

VIEWER, CREATOR, USER = "roles/storage.objectViewer", "roles/storage.objectCreator", "roles/storage.objectUser"
# Callers that deliver the same work again after a failure.
REDELIVERED = {"tasks", "scheduler", "eventarc"}
FN_MEMBER = re.compile(r"google_service_account\.fn\[")

# Every binding whose member is a function's own identity, and what wires it to the
# local.functions table: resource => (for_each, role, what else must hold).
GRANTS: dict[tuple[str, str], dict[str, str]] = {
    ("google_project_iam_member", "fn_firestore"): {
        "for_each": "${{for fn, f in local.functions : fn => f if f.firestore}}",
        "role": "roles/datastore.user",
        "member": "serviceAccount:${google_service_account.fn[each.key].email}",
    },
    ("google_storage_bucket_iam_member", "fn_bucket"): {
        "for_each": "${local.bucket_grants}",
        "role": "${each.value.role}",
        "bucket": "${google_storage_bucket.data[each.value.bucket].name}",
        "member": "serviceAccount:${google_service_account.fn[each.value.fn].email}",
    },
    ("google_cloud_tasks_queue_iam_member", "fn_enqueue"): {
        "for_each": "${local.queue_grants}",
        "role": "roles/cloudtasks.enqueuer",
        "name": "${local.queues[each.value.queue]}",
        "member": "serviceAccount:${google_service_account.fn[each.value.fn].email}",
    },
    ("google_service_account_iam_member", "fn_act_as_tasks"): {
        "for_each": "${local.enqueuers}",
        "role": "roles/iam.serviceAccountUser",
        "service_account_id": '${google_service_account.role["tasks"].name}',
        "member": "serviceAccount:${google_service_account.fn[each.key].email}",
    },
    ("google_service_account_iam_member", "fn_sign_as_signer"): {
        "for_each": "${local.signers}",
        "role": "${google_project_iam_custom_role.signer.name}",
        "service_account_id": '${google_service_account.role["signer"].name}',
        "member": "serviceAccount:${google_service_account.fn[each.key].email}",
    },
    ("google_secret_manager_secret_iam_member", "fn_provider_key"): {
        "for_each": "${local.secret_grants}",
        "role": "roles/secretmanager.secretAccessor",
        "member": "serviceAccount:${google_service_account.fn[each.value.fn].email}",
    },
    ("google_secret_manager_secret_iam_member", "fn_endpoint_key"): {
        "role": "roles/secretmanager.secretAccessor",
        "member": "serviceAccount:${google_service_account.fn[each.value.fn].email}",
    },
}
# The locals the grants iterate, each derived from one field of local.functions.
GRANT_LOCALS = {
    "bucket_grants": "f.buckets",
    "queue_grants": "f.enqueues",
    "enqueuers": "length(f.enqueues) > 0",
    "signers": "f.signs_urls",
    "secret_grants": "f.provider_keys",
}


@pytest.fixture(scope="module")
def module() -> Module:
    return Module.load(module_dir())


@pytest.fixture(scope="module")
def table(module: Module) -> dict[str, dict[str, Any]]:
    functions: dict[str, dict[str, Any]] = module.locals["functions"]
    return functions


@pytest.fixture(scope="module")
def needs() -> dict[str, Needs]:
    graph = CodeGraph()
    roots = entry_roots(graph)
    return {name: needs_of(graph, roots[name]) for name in main_entry_points()}


def storage_role(ops: set[str], redelivered: bool) -> str:
    if ops <= {"read"}:
        return VIEWER
    if ops <= {"create"} and not redelivered:
        return CREATOR
    return USER


def required(needs: Needs, access: str) -> dict[str, Any]:
    """The local.functions fields the code calls for."""
    return {
        "firestore": needs.firestore,
        "buckets": {b: storage_role(ops, access in REDELIVERED) for b, ops in needs.bucket_ops().items()},
        "enqueues": needs.queues,
        "signs_urls": needs.signs_urls,
        "provider_keys": needs.provider_keys,
    }


def mismatches(needs: dict[str, Needs], table: dict[str, dict[str, Any]]) -> list[str]:
    """Every difference between what the code uses and what the table grants, each with a
    place in the code that uses it."""
    out: list[str] = []
    for fn in sorted(set(needs) | set(table)):
        if fn not in table or fn not in needs:
            out.append(f"{fn}: in {'main.py' if fn in needs else 'local.functions'} only")
            continue
        spec, want = table[fn], required(needs[fn], table[fn]["access"])

        def at(kind: str, detail: str = "", fn: str = fn) -> str:
            found = [w for (k, d), w in needs[fn].uses.items() if k == kind and d.startswith(detail)]
            return f" (used at {found[0]})" if found else ""

        if want["firestore"] != spec["firestore"]:
            uses = "uses" if want["firestore"] else "never uses"
            out.append(f"{fn}: firestore = {spec['firestore']}, the code {uses} Firestore{at('firestore')}")
        for bucket in sorted(set(want["buckets"]) | set(spec["buckets"])):
            have, need = spec["buckets"].get(bucket), want["buckets"].get(bucket)
            if have != need:
                ops = sorted(needs[fn].bucket_ops().get(bucket, set()))
                out.append(
                    f"{fn}: bucket {bucket}: Terraform grants {have}, the code needs {need} for {ops}{at('bucket', bucket)}"
                )
        for queue in sorted(set(want["enqueues"]) ^ set(spec["enqueues"])):
            state = "enqueues to" if queue in want["enqueues"] else "never enqueues to"
            out.append(f"{fn}: queue {queue}: the code {state} it{at('queue', queue)}, Terraform enqueues = {spec['enqueues']}")
        for field in ("signs_urls", "provider_keys"):
            if want[field] != spec[field]:
                kind = "sign" if field == "signs_urls" else "provider_keys"
                out.append(f"{fn}: {field} = {spec[field]}, the code says {want[field]}{at(kind)}")
    return out


def test_every_entry_point_reaches_its_handler(needs: dict[str, Needs]) -> None:
    graph = CodeGraph()
    roots = entry_roots(graph)
    for name in main_entry_points():
        assert roots[name], f"{name}: found no package function behind it in main.py"


def test_each_function_is_granted_exactly_what_its_code_uses(needs: dict[str, Needs], table: dict[str, dict[str, Any]]) -> None:
    problems = mismatches(needs, table)
    assert not problems, "the grants and the code disagree:\n  " + "\n  ".join(problems)


def test_the_comparison_finds_a_missing_and_an_extra_grant(needs: dict[str, Needs], table: dict[str, dict[str, Any]]) -> None:
    # The watchdog stats uploads (an upload whose storage event was lost); jobs_init never
    # enqueues. Without the first grant production fails with 403, the second is a spare key.
    broken = copy.deepcopy(table)
    del broken["watchdog"]["buckets"]["uploads"]
    broken["jobs_init"]["enqueues"] = ["chunks"]
    broken["openapi"]["firestore"] = True
    problems = "\n".join(mismatches(needs, broken))
    assert "watchdog: bucket uploads: Terraform grants None, the code needs roles/storage.objectViewer" in problems
    assert "service/watchdog.py" in problems
    assert "jobs_init: queue chunks: the code never enqueues to it" in problems
    assert "openapi: firestore = True, the code never uses Firestore" in problems


def test_grants_to_function_identities_are_exactly_the_table_driven_ones(module: Module) -> None:
    found: set[tuple[str, str]] = set()
    for block in module.blocks.get("resource", []):
        for rtype, bodies in block.items():
            for name, body in bodies.items():
                text = json.dumps({k: v for k, v in body.items() if k in ("member", "members", "policy_data", "bindings")})
                if FN_MEMBER.search(text):
                    found.add((rtype, name))
    assert found == set(GRANTS), f"grants to a function's identity outside the table: {sorted(found - set(GRANTS))}"
    for (rtype, name), expected in GRANTS.items():
        body = module.resources(rtype)[name]
        for key, value in expected.items():
            assert body.get(key) == value, f"{rtype}.{name}.{key} = {body.get(key)!r}, expected {value!r}"
    endpoint_key = module.resources("google_secret_manager_secret_iam_member")["fn_endpoint_key"]["for_each"]
    assert "if f.provider_keys" in endpoint_key and "local.functions" in endpoint_key
    for local, field in GRANT_LOCALS.items():
        expr = module.locals[local]
        assert "local.functions" in expr and field in expr, f"local.{local} is not derived from {field}: {expr}"


def test_the_signer_holds_exactly_what_the_signed_urls_do(needs: dict[str, Needs], module: Module) -> None:
    # A signed URL carries the signer's rights: create in uploads (a client's PUT), read in
    # results (a client's GET), no more.
    signed: dict[str, set[str]] = {}
    for n in needs.values():
        for bucket, ops in n.bucket_ops("sign").items():
            signed.setdefault(bucket, set()).update(ops)
    want = {bucket: storage_role(ops, redelivered=False) for bucket, ops in signed.items()}
    granted: dict[str, str] = {}
    for body in module.resources("google_storage_bucket_iam_member").values():
        if body["member"] == 'serviceAccount:${google_service_account.role["signer"].email}':
            named = re.fullmatch(r'\$\{google_storage_bucket\.data\["(\w+)"\]\.name\}', body["bucket"])
            assert named, body
            granted[named[1]] = body["role"]
    assert granted == want
