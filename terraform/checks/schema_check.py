"""An offline schema check of the Terraform: what `terraform validate` checks with the provider.

`terraform validate` needs the Google provider binaries, which cannot be downloaded where
the offline checks run. This check reads the configuration with python-hcl2 and compares
every `resource` and `data` block of a Google type with the provider schemas recorded in
provider_schema/google-6.x.json (written by extract_provider_schema.py from the providers'
source at the release the environments pin). It reports, with file, line and address:

- an argument or block the provider does not have for that type, at any nesting depth
  (`dynamic "x" { content { ... } }` stands for block `x`; the meta-arguments count,
  depends_on, for_each, provider, lifecycle, provisioner and connection are allowed);
- an argument written as a block or a block written as an argument;
- a computed-only attribute set in the configuration;
- a required argument or block missing (any value counts as present, a variable or an
  expression too; a `dynamic` block counts as present);
- more blocks of a kind than the provider allows (static blocks only);
- a type that exists only in google-beta used without `provider = google-beta`;
- a Google type that is not in the JSON (re-run the extractor: its docstring says how);
- a reference `TYPE.NAME[...].attr[...].attr` (or data.TYPE.NAME...) to a resource of
  the module that is not declared (when the module declares others of that type) or to
  an attribute or block the provider does not have (followed through nested blocks;
  not into computed-only nested values);
- a provider version constraint that does not match the extracted release: each
  environment must pin hashicorp/google and hashicorp/google-beta to "~> MAJOR.MINOR" of
  the JSON's version; a shared module must declare only the sources, not a version.

Types of other providers (random, archive, terraform_data, ...) are not checked.

Usage: python terraform/checks/schema_check.py [TERRAFORM_DIR] [--schema FILE]
(exit 1 and one line per finding when there are findings).
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, TypeGuard

import hcl2
from hcl2 import SerializationOptions

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = Path(__file__).resolve().parent / "provider_schema" / "google-6.x.json"
META_ARGUMENTS = {"count", "depends_on", "for_each", "provider", "lifecycle", "provisioner", "connection"}
DYNAMIC_ARGUMENTS = {"for_each", "iterator", "labels", "content"}
CHECKED_SOURCES = {"hashicorp/google": "google", "hashicorp/google-beta": "google-beta"}
_OPTIONS = SerializationOptions(strip_string_quotes=True, explicit_blocks=True, with_comments=False)


@dataclass(frozen=True, order=True)
class Finding:
    file: str  # relative to the repository root when inside it
    line: int
    address: str  # resource address in its module: TYPE.NAME or data.TYPE.NAME (or a terraform block)
    path: str  # the argument or block, dotted from the resource ("" for the resource itself)
    message: str

    def __str__(self) -> str:
        where = f"{self.address}: {self.path}" if self.path else self.address
        return f"{self.file}:{self.line}: {where}: {self.message}"


@cache
def load_schema(path: Path = SCHEMA_FILE) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(path.read_text())
    return schema


def _is_block_list(value: Any) -> TypeGuard[list[dict[str, Any]]]:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) and v.get("__is_block__") for v in value)


def _is_dynamic(value: Any) -> bool:
    """`dynamic "x" {...}` blocks: [{"x": {..., "__is_block__": True}}, ...]."""
    return isinstance(value, list) and all(
        isinstance(item, dict) and all(_is_block_list([item[k]]) for k in _keys(item)) for item in value
    )


def _keys(body: dict[str, Any]) -> list[str]:
    return [k for k in body if not k.startswith("__")]


def _reference(value: Any) -> str:
    """`google-beta` or `${google-beta.alias}` => google-beta.alias."""
    text = str(value).strip()
    if text.startswith("${") and text.endswith("}"):
        text = text[2:-1]
    return text.strip()


class _Lines:
    """Approximate lines of findings: the resource's header, then each path element below it."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()

    def resource(self, kind: str, type_: str, name: str) -> int:
        pattern = re.compile(rf'^\s*{kind}\s+"?{re.escape(type_)}"?\s+"?{re.escape(name)}"?\s*\{{')
        for n, line in enumerate(self.lines):
            if pattern.match(line):
                return n + 1
        return 1

    def below(self, start: int, path: list[str]) -> int:
        line = start
        for key in path:
            pattern = re.compile(rf'^\s*(?:dynamic\s+"{re.escape(key)}"|{re.escape(key)})\s*(?:=|\{{)')
            for n in range(line, len(self.lines)):
                if pattern.match(self.lines[n]):
                    line = n + 1
                    break
            else:
                return line
        return line


@dataclass
class _Context:
    file: str
    address: str
    lines: _Lines
    start: int
    provider: str
    findings: list[Finding]

    def add(self, path: list[str], message: str, *, at: list[str] | None = None) -> None:
        line = self.lines.below(self.start, path if at is None else at)
        self.findings.append(Finding(self.file, line, self.address, ".".join(path), message))


def _suggest(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.75)
    return f' (did you mean "{close[0]}"?)' if close else ""


def _check_body(body: dict[str, Any], schema: dict[str, Any], ctx: _Context, path: list[str], top: bool) -> None:
    attributes: dict[str, Any] = schema["attributes"]
    blocks: dict[str, Any] = schema["blocks"]
    known = sorted([*attributes, *blocks])
    present: set[str] = set()
    static_count: dict[str, int] = {}
    for key in _keys(body):
        value = body[key]
        here = [*path, key]
        if top and key in META_ARGUMENTS:
            continue
        if key == "dynamic" and _is_dynamic(value) and "dynamic" not in known:
            for item in value:
                for label in _keys(item):
                    _check_dynamic(label, item[label], schema, ctx, path)
                    present.add(label)
            continue
        if _is_block_list(value):
            nested = blocks.get(key) or (attributes.get(key) or {}).get("block")
            if nested is None:
                if key in attributes:
                    ctx.add(here, f'"{key}" is an argument, not a block: write {key} = ...')
                else:
                    ctx.add(here, f'the provider ({ctx.provider}) has no block "{key}" here{_suggest(key, known)}')
                continue
            inner = nested.get("block", nested) if key in blocks else nested
            static_count[key] = static_count.get(key, 0) + len(value)
            for item in value:
                _check_body(item, inner, ctx, here, top=False)
            present.add(key)
            continue
        if key in attributes:
            if attributes[key]["mode"] == "computed":
                ctx.add(here, f'"{key}" is computed-only in the provider ({ctx.provider}): it cannot be set')
            present.add(key)
        elif key in blocks:
            ctx.add(here, f'"{key}" is a block, not an argument: write {key} {{ ... }}')
            present.add(key)
        else:
            ctx.add(here, f'the provider ({ctx.provider}) has no argument "{key}" here{_suggest(key, known)}')
    for name, attr in attributes.items():
        if attr["mode"] == "required" and name not in present:
            ctx.add([*path, name], f'required argument "{name}" is missing', at=path)
    for name, block in blocks.items():
        if block.get("min_items", 0) > 0 and name not in present:
            ctx.add([*path, name], f'required block "{name}" is missing (at least {block["min_items"]})', at=path)
        elif name in static_count:
            count = static_count[name]
            if block.get("nesting") == "single" and count > 1:
                ctx.add([*path, name], f'at most one "{name}" block is allowed, found {count}')
            elif block.get("max_items") and count > block["max_items"]:
                ctx.add([*path, name], f'at most {block["max_items"]} "{name}" block(s) allowed, found {count}')
            elif block.get("min_items", 0) > count:
                ctx.add([*path, name], f'at least {block["min_items"]} "{name}" block(s) needed, found {count}')


def _check_dynamic(label: str, body: dict[str, Any], schema: dict[str, Any], ctx: _Context, path: list[str]) -> None:
    here = [*path, label]
    nested = schema["blocks"].get(label)
    inner = nested["block"] if nested else (schema["attributes"].get(label) or {}).get("block")
    if inner is None:
        known = sorted([*schema["attributes"], *schema["blocks"]])
        if label in schema["attributes"]:
            ctx.add(here, f'dynamic "{label}": "{label}" is an argument, not a block')
        else:
            ctx.add(here, f'dynamic "{label}": the provider ({ctx.provider}) has no block "{label}" here{_suggest(label, known)}')
        return
    for key in _keys(body):
        if key not in DYNAMIC_ARGUMENTS:
            ctx.add([*here, key], f'dynamic "{label}" takes only for_each, iterator, labels and content, not "{key}"')
    if "for_each" not in body:
        ctx.add(here, f'dynamic "{label}": required argument "for_each" is missing')
    content = body.get("content")
    if not _is_block_list(content) or len(content) != 1:
        ctx.add(here, f'dynamic "{label}": needs exactly one content block')
        return
    _check_body(content[0], inner, ctx, here, top=False)


def _provider_sources(blocks: dict[str, list[Any]]) -> dict[str, str]:
    """Local provider name => source, from required_providers (defaults: the name is hashicorp/NAME)."""
    sources: dict[str, str] = {}
    for terraform in blocks.get("terraform", []):
        for required in terraform.get("required_providers", []):
            for local in _keys(required):
                spec = required[local]
                source = spec.get("source") if isinstance(spec, dict) else None
                sources[local] = str(source or f"hashicorp/{local}").lower().removeprefix("registry.terraform.io/")
    return sources


def _schema_for(entry: dict[str, Any], provider: str) -> dict[str, Any] | None:
    found = entry.get(provider)
    if found == "same":
        return entry.get("google")
    return found


def _check_versions(module: Path, schema: dict[str, Any]) -> list[Finding]:
    """Environments pin ~> MAJOR.MINOR of the extracted release; a shared module pins nothing."""
    findings: list[Finding] = []
    is_root = module.parent.name == "environments"
    for path in sorted(module.glob("*.tf")):
        text = path.read_text()
        if "required_providers" not in text:
            continue
        lines = _Lines(text)
        file = _relative(path)
        for terraform in hcl2.loads(text, serialization_options=_OPTIONS).get("terraform", []):
            for required in terraform.get("required_providers", []):
                for local in _keys(required):
                    spec = required[local] if isinstance(required[local], dict) else {}
                    source = str(spec.get("source", f"hashicorp/{local}")).lower()
                    local_name = CHECKED_SOURCES.get(source.removeprefix("registry.terraform.io/"))
                    if local_name is None:
                        continue
                    version = schema["providers"][local_name]["version"]
                    want = "~> " + ".".join(version.split(".")[:2])
                    line = lines.below(lines.below(0, ["required_providers"]), [local])
                    got = spec.get("version")
                    address = f"terraform.required_providers.{local}"
                    if is_root and got != want:
                        findings.append(
                            Finding(
                                file,
                                line,
                                address,
                                "version",
                                f'pin {source} to "{want}" (the schema was extracted from {version}), not {got!r}',
                            )
                        )
                    elif not is_root and got is not None:
                        findings.append(
                            Finding(
                                file,
                                line,
                                address,
                                "version",
                                f"a shared module declares only the source of {source}; "
                                f"the environments pin the version (here: {got!r})",
                            )
                        )
    return findings


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def module_dirs(terraform_dir: Path) -> list[Path]:
    """Every directory under terraform_dir holding .tf files (modules and environments)."""
    return sorted({p.parent for p in terraform_dir.rglob("*.tf") if ".terraform" not in p.parts})


def check_module(module: Path, schema: dict[str, Any] | None = None) -> list[Finding]:
    schema = schema or load_schema()
    findings: list[Finding] = []
    parsed: dict[Path, dict[str, Any]] = {}
    merged: dict[str, list[Any]] = {}
    for path in sorted(module.glob("*.tf")):
        parsed[path] = hcl2.loads(path.read_text(), serialization_options=_OPTIONS)
        for kind, items in parsed[path].items():
            merged.setdefault(kind, []).extend(items)
    sources = _provider_sources(merged)
    findings += _check_versions(module, schema)
    declared: dict[tuple[str, str, str], dict[str, Any] | None] = {}
    for path, blocks in parsed.items():
        lines = _Lines(path.read_text())
        file = _relative(path)
        for kind in ("resource", "data"):
            for item in blocks.get(kind, []):
                for type_ in _keys(item):
                    for name in _keys(item[type_]):
                        body = item[type_][name]
                        findings += _check_resource(kind, type_, name, body, sources, schema, file, lines)
                        declared[(kind, type_, name)] = _resolve(kind, type_, body, sources, schema)
    for path in parsed:
        findings += _check_references(path, declared)
    return sorted(findings)


def _resolve(
    kind: str, type_: str, body: dict[str, Any], sources: dict[str, str], schema: dict[str, Any]
) -> dict[str, Any] | None:
    """The schema the resource is checked against (None when not a known Google type)."""
    local = _reference(body["provider"]).split(".")[0] if "provider" in body else type_.split("_", 1)[0]
    provider = CHECKED_SOURCES.get(sources.get(local, f"hashicorp/{local}"))
    entry = schema[kind].get(type_) if provider else None
    return _schema_for(entry, provider) if entry and provider else None


# TYPE.NAME or data.TYPE.NAME, an optional instance key, then .attribute[index].attribute...
_REFERENCE = re.compile(
    r"(?<![\w.])(data\.)?(google_[a-z0-9_]+)\.([A-Za-z_][\w-]*)((?:\[[^\]\n]*\])?)((?:\.[A-Za-z_]\w*(?:\[[^\]\n]*\])?)+)"
)
_STEP = re.compile(r"\.([A-Za-z_]\w*)(?:\[[^\]\n]*\])?")


def _check_references(path: Path, declared: dict[tuple[str, str, str], dict[str, Any] | None]) -> list[Finding]:
    """References to resources of this module: the resource is declared, each attribute exists."""
    findings: list[Finding] = []
    text = path.read_text()
    file = _relative(path)
    for number, line in enumerate(text.splitlines(), start=1):
        code = line.split("#", 1)[0] if line.lstrip().startswith("#") else line
        for match in _REFERENCE.finditer(code):
            kind = "data" if match[1] else "resource"
            type_, name = match[2], match[3]
            address = f"{type_}.{name}" if kind == "resource" else f"data.{type_}.{name}"
            if (kind, type_, name) not in declared:
                if any(k == kind and t == type_ for k, t, _ in declared):
                    findings.append(Finding(file, number, address, "", f"reference to undeclared {kind} {address}"))
                continue
            block = declared[(kind, type_, name)]
            steps: list[str] = []
            for step in _STEP.finditer(match[5]):
                if block is None:
                    break
                attr = step[1]
                steps.append(attr)
                if attr in block["attributes"]:
                    block = block["attributes"][attr].get("block")
                elif attr in block["blocks"]:
                    block = block["blocks"][attr]["block"]
                else:
                    known = sorted([*block["attributes"], *block["blocks"]])
                    findings.append(
                        Finding(
                            file,
                            number,
                            address,
                            ".".join(steps),
                            f'reference to an attribute the provider does not have: "{attr}"{_suggest(attr, known)}',
                        )
                    )
                    break
    return findings


def _check_resource(
    kind: str,
    type_: str,
    name: str,
    body: dict[str, Any],
    sources: dict[str, str],
    schema: dict[str, Any],
    file: str,
    lines: _Lines,
) -> list[Finding]:
    address = f"{type_}.{name}" if kind == "resource" else f"data.{type_}.{name}"
    start = lines.resource(kind, type_, name)
    default_local = type_.split("_", 1)[0]
    local = _reference(body["provider"]).split(".")[0] if "provider" in body else default_local
    source = sources.get(local, f"hashicorp/{local}")
    provider = CHECKED_SOURCES.get(source)
    if provider is None:
        if default_local == "google":
            return [Finding(file, start, address, "provider", f'provider "{local}" ({source}) is not a Google provider')]
        return []  # another provider's type: not checked
    entry = schema[kind].get(type_)
    version = schema["providers"][provider]["version"]
    if entry is None:
        return [
            Finding(
                file,
                start,
                address,
                "",
                f"{kind} type {type_} is not in {_relative(SCHEMA_FILE)}: if google {version} has it, re-run "
                "terraform/checks/extract_provider_schema.py (its docstring says how)",
            )
        ]
    if entry.get("beta_only") and provider != "google-beta":
        return [
            Finding(
                file,
                start,
                address,
                "provider",
                f"{type_} exists only in google-beta: set provider = google-beta",
            )
        ]
    type_schema = _schema_for(entry, provider)
    if type_schema is None:
        return [Finding(file, start, address, "", f"{type_} is not a {kind} type of {provider} {version}")]
    findings: list[Finding] = []
    ctx = _Context(file, address, lines, start, f"{provider} {version}", findings)
    _check_body(body, type_schema, ctx, [], top=True)
    return findings


def check(terraform_dir: Path, schema_file: Path = SCHEMA_FILE) -> list[Finding]:
    schema = load_schema(schema_file)
    findings: list[Finding] = []
    for module in module_dirs(terraform_dir):
        findings += check_module(module, schema)
    return findings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("terraform", nargs="?", type=Path, default=ROOT / "terraform")
    parser.add_argument("--schema", type=Path, default=SCHEMA_FILE)
    args = parser.parse_args(argv)
    findings = check(args.terraform, args.schema)
    for finding in findings:
        print(finding)
    providers = load_schema(args.schema)["providers"]
    label = ", ".join(f"{p['source']} {p['version']}" for p in providers.values())
    print(f"schema check ({label}): {len(findings)} finding(s)", file=sys.stderr)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
