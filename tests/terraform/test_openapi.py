"""The API Gateway's OpenAPI document serves exactly the public routes, each from the
function that serves it in functions/promptforge/api/routes.py: it is generated from them
(terraform/generate.py), and the checked-in template is what the generator writes."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from promptforge.api.routes import ROUTES
from terraform import generate
from tests.terraform.tfmodel import Module, module_dir

TEMPLATE_VAR = re.compile(r"\$\{([^}]*)\}")
BACKEND = re.compile(r"backends\.(\w+)")


def render(template: str) -> str:
    """Fill the template as gateway.tf does, with a recognisable URL per backend."""

    def value(m: re.Match[str]) -> str:
        expr = m.group(1)
        if expr == "title":
            return "PromptForge test"
        backend = BACKEND.fullmatch(expr)
        assert backend, f"the template uses ${{{expr}}}, which gateway.tf does not provide"
        return f"https://backend.invalid/{backend[1]}"

    return TEMPLATE_VAR.sub(value, template)


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(render((module_dir() / "openapi.yaml.tftpl").read_text()))
    return doc


def operations(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(method.upper(), path): op for path, item in doc["paths"].items() for method, op in item.items()}


def test_the_template_is_the_one_generated_from_the_routes() -> None:
    assert (module_dir() / "openapi.yaml.tftpl").read_text() == generate.render(), (
        "openapi.yaml.tftpl is stale: run `.venv/bin/python terraform/generate.py`"
    )


def test_the_template_fills_in_to_one_string_per_value() -> None:
    # A backend URL or a title with YAML's special characters stays one string.
    odd = "https://x.invalid/a: b # c"
    template = (module_dir() / "openapi.yaml.tftpl").read_text()
    doc = yaml.safe_load(TEMPLATE_VAR.sub(lambda m: odd, template))
    assert doc["info"]["title"] == odd
    assert {op["x-google-backend"]["address"] for op in operations(doc).values()} == {odd}


def test_is_openapi_2_as_api_gateway_requires(document: dict[str, Any]) -> None:
    assert document["swagger"] == "2.0"
    assert document["schemes"] == ["https"]


def test_paths_and_methods_are_the_routes(document: dict[str, Any]) -> None:
    served = set(operations(document))
    routes = {(route.method, route.path) for route in ROUTES}
    assert served == routes, (
        f"missing from the OpenAPI document: {sorted(routes - served)}; not a route: {sorted(served - routes)}"
    )


def test_each_route_goes_to_its_function_with_its_path(document: dict[str, Any]) -> None:
    ops = operations(document)
    for route in ROUTES:
        backend = ops[(route.method, route.path)]["x-google-backend"]
        assert backend["address"] == f"https://backend.invalid/{route.function}", route
        # The function reads the job id from the path it receives.
        assert backend["path_translation"] == "APPEND_PATH_TO_ADDRESS", route
        # One function may serve several routes (the web page): its first operation is
        # named after it, the others after it with a suffix, as ids must be unique.
        operation_id = ops[(route.method, route.path)]["operationId"]
        assert operation_id == route.function or operation_id.startswith(route.function + "_"), route
    ids = [op["operationId"] for op in ops.values()]
    assert len(ids) == len(set(ids)), f"operation ids repeat: {sorted(ids)}"


def test_path_parameters_are_declared(document: dict[str, Any]) -> None:
    for (method, path), op in operations(document).items():
        declared = set()
        for p in op.get("parameters", []):
            p = document["parameters"][p["$ref"].rsplit("/", 1)[1]] if "$ref" in p else p
            if p["in"] == "path":
                declared.add(p["name"])
        assert declared == set(re.findall(r"\{(\w+)\}", path)), (method, path)


def test_backends_are_the_gateway_functions() -> None:
    functions = Module.load(module_dir()).locals["functions"]
    gateway = {name for name, spec in functions.items() if spec["access"] == "gateway"}
    used = set(BACKEND.findall((module_dir() / "openapi.yaml.tftpl").read_text()))
    assert used == gateway
