"""docs/api-contract.md, the contract the README points to, stays in step with the OpenAPI
document the service serves (built here in process from the same pydantic models)."""

from __future__ import annotations

import re

from promptforge.api import openapi
from tests.conftest import ROOT

CONTRACT = (ROOT / "docs" / "api-contract.md").read_text(encoding="utf-8")
DOCUMENT = openapi.document(("fake",), 1000)


def test_the_contract_has_a_section_for_every_operation_of_the_openapi_document() -> None:
    operations = {(method.upper(), path) for path, ops in DOCUMENT["paths"].items() for method in ops}
    sections = set(re.findall(r"^### (GET|POST|PUT|DELETE|PATCH) (/\S+)", CONTRACT, re.M))
    assert ("GET", "/v1/openapi.json") in operations and "`GET /v1/openapi.json`" in CONTRACT  # named in its opening
    assert sections == operations - {("GET", "/v1/openapi.json")}


def test_the_contract_names_every_field_of_the_documents_schemas() -> None:
    missing = {
        f"{name}.{field}"
        for name, schema in DOCUMENT["components"]["schemas"].items()
        for field in schema.get("properties", {})
        if not re.search(rf"\b{field}\b", CONTRACT)
    }
    assert not missing, f"docs/api-contract.md does not name {sorted(missing)}"


def test_the_readme_links_to_the_contract_in_docs_and_nothing_outside_the_repository() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "(docs/api-contract.md)" in readme
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        assert "../shared/" not in path.read_text(encoding="utf-8"), path.name
