"""Read the Terraform and functions/main.py for the structural tests.

The Terraform is parsed with python-hcl2, never evaluated: the tests check what the
configuration says (which entry point each function resource deploys, with which
trigger, identity and settings), and Cloud Build's `terraform validate` and `plan` check
the rest. PROMPTFORGE_TERRAFORM_DIR points the tests at another copy of terraform/ (the
breakage tests use it to show that these tests fail on a broken copy).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hcl2
from hcl2 import SerializationOptions

ROOT = Path(__file__).resolve().parents[2]
CONFIG_PY = ROOT / "functions" / "promptforge" / "config.py"
FUNCTION_TYPE = "google_cloudfunctions2_function"
# The dynamic event_trigger of a for_each function resource: present when the entry's
# event is set. Any other form is refused rather than guessed at.
EVENT_FROM_ENTRY = "${each.value.event == null ? [] : [each.value.event]}"

_OPTIONS = SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=False)


def terraform_dir() -> Path:
    return Path(os.environ.get("PROMPTFORGE_TERRAFORM_DIR") or ROOT / "terraform")


def module_dir() -> Path:
    return terraform_dir() / "modules" / "promptforge"


@dataclass(frozen=True)
class Module:
    """The top-level blocks of every .tf file of one module directory."""

    blocks: dict[str, list[dict[str, Any]]]

    @classmethod
    def load(cls, directory: Path) -> Module:
        blocks: dict[str, list[dict[str, Any]]] = {}
        for path in sorted(directory.glob("*.tf")):
            with path.open() as f:
                for kind, items in hcl2.load(f, serialization_options=_OPTIONS).items():
                    blocks.setdefault(kind, []).extend(items)
        return cls(blocks)

    @property
    def locals(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for block in self.blocks.get("locals", []):
            merged.update(block)
        return merged

    def resources(self, resource_type: str) -> dict[str, dict[str, Any]]:
        """name => body of every resource of ``resource_type``."""
        found: dict[str, dict[str, Any]] = {}
        for block in self.blocks.get("resource", []):
            for name, body in block.get(resource_type, {}).items():
                found[name] = body
        return found


@dataclass(frozen=True)
class Deployed:
    """One entry point deployed by one function resource (instance)."""

    address: str
    entry_point: str
    trigger: str  # "http" or "event"
    spec: dict[str, Any]  # the local.functions entry, {} for a resource without one


def main_entry_points() -> dict[str, str]:
    """Entry point name => "http" or "event": the route table's ENTRY_POINTS, from which
    functions/main.py makes one module-level callable each (tests/unit/test_entry_points.py)."""
    from promptforge.api.routes import ENTRY_POINTS

    return {ep.name: ep.trigger for ep in ENTRY_POINTS}


def deployed_functions(module: Module) -> list[Deployed]:
    """Every (resource instance, entry point, trigger) the module deploys."""
    out: list[Deployed] = []
    for name, body in module.resources(FUNCTION_TYPE).items():
        address = f"{FUNCTION_TYPE}.{name}"
        entry = body["build_config"][0]["entry_point"]
        static_event = "event_trigger" in body
        dynamic = [d["event_trigger"] for d in body.get("dynamic", []) if "event_trigger" in d]
        if entry != "${each.key}":
            out.append(Deployed(address, entry, "event" if static_event or dynamic else "http", {}))
            continue
        table = re.fullmatch(r"\$\{local\.(\w+)\}", str(body.get("for_each")))
        if table is None:
            raise AssertionError(f"{address}: entry_point = each.key needs for_each = local.<map>, got {body.get('for_each')!r}")
        if dynamic and dynamic[0]["for_each"] != EVENT_FROM_ENTRY:
            raise AssertionError(f"{address}: dynamic event_trigger must be for_each = {EVENT_FROM_ENTRY}")
        for key, spec in module.locals[table[1]].items():
            has_event = static_event or bool(dynamic and spec.get("event") is not None)
            out.append(Deployed(f"{address}[{key}]", key, "event" if has_event else "http", spec))
    return out


def config_env_names(config_py: Path = CONFIG_PY) -> set[str]:
    """The environment variables functions/promptforge/config.py's settings model reads."""
    from promptforge import config

    assert config.__file__ and Path(config.__file__).resolve() == config_py.resolve(), config.__file__
    return {name for variable in config.variables() for name in variable.names}


def env_names_set(expression: str) -> set[str]:
    """The names an environment_variables expression (a merge of object literals) sets."""
    return set(re.findall(r"\b((?:PROMPTFORGE|GOOGLE)_\w+)\s*=", expression))
