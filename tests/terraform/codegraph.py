"""What each Cloud Function's code asks of Google Cloud, read statically from its source.

A static call graph, built with ``ast`` and never by running anything: from each entry
point in functions/main.py, through every function of functions/promptforge it can
reach, to the calls on the ports (``service/ports.py``) that the production adapters turn
into Google API calls:

    JobStore / Tx methods        (deps.store.*, tx.*)        Firestore
    BlobStore methods            (deps.blobs.*, blobs.*)     Cloud Storage, by bucket
                                 signed_*_url                 IAM signBlob (as the signer)
    TaskQueue.enqueue_plan/chunk/notify (deps.tasks.*)       Cloud Tasks, by queue
    the provider port (deps.providers(...))                  the provider keys (Secret Manager)

How it resolves things, and where it over-approximates (so a need is never missed; a
need found on a path that never runs would show up as a grant the test demands, and is
then for a human to judge):

- A function's body includes its nested functions and lambdas (transactions, callbacks).
- A name or ``module.attr`` that refers to a function of the package is an edge, called
  or not (``functools.partial(f, ...)``, ``asyncio.to_thread(f, ...)`` count).
- ``self.m`` inside a class is that class's method; referring to a class makes all its
  methods reachable (the object, once made, may have any of them called).
- The adapters and the composition root (``promptforge.adapters``, ``promptforge.wiring``)
  are not followed: they implement the ports, whose calls are what is counted. Opening a
  provider through the port (``deps.providers``), or reaching
  ``promptforge.adapters.providers`` directly, is the provider-keys need.
- A bucket is the ``upload_bucket`` / ``results_bucket`` setting an argument names, or a
  local variable assigned from one, or a parameter bound at the call site (``publish(
  deps.blobs, bucket, ...)``). A bucket it cannot resolve is an error, not a guess.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

FUNCTIONS_DIR = Path(__file__).resolve().parents[2] / "functions"
PACKAGE = "promptforge"
NOT_FOLLOWED = ("promptforge.adapters", "promptforge.wiring")
PROVIDERS = "promptforge.adapters.providers"

BUCKET_SETTINGS = {"upload_bucket": "uploads", "results_bucket": "results"}
QUEUE_METHODS = {"enqueue_plan": "plan", "enqueue_chunk": "chunks", "enqueue_notify": "notify"}
# Receivers, by the last name of the expression a port method is called on.
STORE_RECEIVERS = {"store", "tx"}
BLOB_RECEIVERS = {"blobs"}
TASK_RECEIVERS = {"tasks"}
# The Deps attribute that opens LLM providers (service/provider_port.py ProviderFactory).
PROVIDER_FACTORY = "providers"
# What each BlobStore method does to the objects of its bucket.
BLOB_OPS = {
    "open_read": {"read"},
    "exists": {"read"},
    "stat": {"read"},
    "write": {"create"},
    "open_write": {"create"},
    "compose": {"read", "create"},
    "delete": {"delete"},
}
SIGNING = {"signed_upload_url": "create", "signed_download_url": "read"}


@dataclass(frozen=True)
class Use:
    """One use of Google Cloud, with where in the code it is."""

    kind: str  # "firestore", "bucket", "sign", "queue", "provider_keys"
    detail: str  # bucket:op, queue name, the signed URL's bucket:op, ""
    where: str  # module:line


@dataclass
class Func:
    qualname: str
    module: str
    node: ast.FunctionDef | ast.AsyncFunctionDef
    cls: str | None = None

    @property
    def params(self) -> list[str]:
        args = self.node.args
        names = [a.arg for a in [*args.posonlyargs, *args.args]]
        return names[1:] if self.cls and names and names[0] in ("self", "cls") else names


@dataclass
class Module:
    name: str
    tree: ast.Module
    functions: dict[str, Func] = field(default_factory=dict)
    classes: dict[str, dict[str, Func]] = field(default_factory=dict)


def _module_name(path: Path) -> str:
    rel = path.relative_to(FUNCTIONS_DIR).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


class CodeGraph:
    """Every module of functions/promptforge and functions/main.py, parsed."""

    def __init__(self, functions_dir: Path = FUNCTIONS_DIR) -> None:
        self.modules: dict[str, Module] = {}
        paths = [functions_dir / "main.py", *sorted((functions_dir / PACKAGE).rglob("*.py"))]
        for path in paths:
            name = _module_name(path)
            mod = Module(name, ast.parse(path.read_text(), str(path)))
            for node in mod.tree.body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    mod.functions[node.name] = Func(f"{name}.{node.name}", name, node)
                elif isinstance(node, ast.ClassDef):
                    mod.classes[node.name] = {
                        m.name: Func(f"{name}.{node.name}.{m.name}", name, m, node.name)
                        for m in node.body
                        if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))
                    }
            self.modules[name] = mod
        self.port_methods = self._port_methods()

    def _port_methods(self) -> dict[str, set[str]]:
        ports = self.modules[f"{PACKAGE}.service.ports"]
        methods = {name: set(body) for name, body in ports.classes.items()}
        return {
            "store": methods["JobStore"] | methods["Tx"],
            "blobs": methods["BlobStore"],
            "tasks": methods["TaskQueue"],
        }

    # --- names -----------------------------------------------------------------------

    def _resolve_from(self, module: str, node: ast.ImportFrom) -> str:
        if node.level == 0:
            return node.module or ""
        package = module.split(".")
        is_package = (FUNCTIONS_DIR / Path(*package) / "__init__.py").exists()
        base = package if is_package else package[:-1]
        base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
        return ".".join([*base, *([node.module] if node.module else [])])

    def imports(self, module: str, scope: ast.AST) -> dict[str, str]:
        """Local name => the module or module.symbol it stands for, for the imports written
        directly in ``scope`` (the module body, or a function's body with its nested ones)."""
        names: dict[str, str] = {}
        nodes = scope.body if isinstance(scope, ast.Module) else ast.walk(scope)
        for node in nodes:
            if isinstance(node, ast.ImportFrom):
                base = self._resolve_from(module, node)
                for alias in node.names:
                    names[alias.asname or alias.name] = f"{base}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:  # import a.b as c: c is a.b
                        names[alias.asname] = alias.name
                    else:  # import a.b: a is a
                        first = alias.name.split(".")[0]
                        names[first] = first
        return names

    def lookup(self, dotted: str) -> list[Func] | str | None:
        """A qualified name as functions (a function, or every method of a class), the
        module name itself when it is a module, or None when it is not in the package."""
        if dotted in self.modules:
            return dotted
        module, _, attr = dotted.rpartition(".")
        mod = self.modules.get(module)
        if mod is None:
            return None
        if attr in mod.functions:
            return [mod.functions[attr]]
        if attr in mod.classes:
            return list(mod.classes[attr].values())
        return None


def _tail(expr: ast.expr) -> str | None:
    """The last name of a receiver: deps.store -> store, self.deps.blobs -> blobs, tx -> tx."""
    if isinstance(expr, ast.Attribute):
        return expr.attr
    if isinstance(expr, ast.Name):
        return expr.id
    return None


def _bucket_of(expr: ast.expr) -> str | None:
    if isinstance(expr, ast.Attribute) and expr.attr in BUCKET_SETTINGS:
        return BUCKET_SETTINGS[expr.attr]
    return None


class _Walker:
    """The uses and the outgoing edges of one function body, with its bucket bindings."""

    def __init__(self, graph: CodeGraph, fn: Func, binding: dict[str, str]) -> None:
        self.graph = graph
        self.fn = fn
        self.binding = binding
        mod = graph.modules[fn.module]
        self.names = {**graph.imports(fn.module, mod.tree), **graph.imports(fn.module, fn.node)}
        self.locals = self._bucket_locals()

    def where(self, node: ast.AST) -> str:
        return f"{self.fn.module.replace('.', '/')}.py:{getattr(node, 'lineno', '?')}"

    def _bucket_locals(self) -> dict[str, str]:
        """Local names assigned a bucket setting anywhere in the body (``bucket = s.results_bucket``,
        ``bucket, scratch = self.s.results_bucket, ...``)."""
        found: dict[str, str] = {}
        for node in ast.walk(self.fn.node):
            if not isinstance(node, ast.Assign):
                continue
            for target in node.targets:
                pairs: list[tuple[ast.expr, ast.expr]] = [(target, node.value)]
                if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                    pairs = list(zip(target.elts, node.value.elts, strict=False))
                for t, v in pairs:
                    bucket = _bucket_of(v)
                    if isinstance(t, ast.Name) and bucket:
                        found[t.id] = bucket
        return found

    def bucket(self, expr: ast.expr) -> str | None:
        direct = _bucket_of(expr)
        if direct:
            return direct
        if isinstance(expr, ast.Name):
            return self.locals.get(expr.id) or self.binding.get(expr.id)
        return None

    def uses(self) -> Iterator[Use]:
        methods = self.graph.port_methods
        for node in ast.walk(self.fn.node):
            if not isinstance(node, ast.Attribute):
                continue
            tail = _tail(node.value)
            if tail == "deps" and node.attr == PROVIDER_FACTORY:
                yield Use("provider_keys", "", self.where(node))
            elif tail in STORE_RECEIVERS and node.attr in methods["store"]:
                yield Use("firestore", "", self.where(node))
            elif tail in TASK_RECEIVERS and node.attr in methods["tasks"]:
                yield Use("queue", QUEUE_METHODS[node.attr], self.where(node))
            elif tail in BLOB_RECEIVERS and node.attr in methods["blobs"]:
                yield from self._blob_use(node)

    def _blob_use(self, attr: ast.Attribute) -> Iterator[Use]:
        call = next(
            (c for c in ast.walk(self.fn.node) if isinstance(c, ast.Call) and c.func is attr),
            None,
        )
        arg = None
        if call is not None:
            arg = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "bucket"), None)
        bucket = self.bucket(arg) if arg is not None else None
        if bucket is None:
            raise AssertionError(
                f"{self.where(attr)}: cannot tell which bucket {attr.attr} uses in {self.fn.qualname}; "
                "name the setting (settings.upload_bucket / results_bucket) or a variable assigned from it"
            )
        if attr.attr in SIGNING:
            yield Use("sign", f"{bucket}:{SIGNING[attr.attr]}", self.where(attr))
        else:
            for op in sorted(BLOB_OPS[attr.attr]):
                yield Use("bucket", f"{bucket}:{op}", self.where(attr))

    def edges(self) -> Iterator[tuple[Func, dict[str, str]]]:
        """(function reached, its bucket bindings) for every reference to a package function."""
        calls = {id(c.func): c for c in ast.walk(self.fn.node) if isinstance(c, ast.Call)}
        for node in ast.walk(self.fn.node):
            targets = self._targets(node)
            if targets is None:
                continue
            call = calls.get(id(node))
            for target in targets:
                yield target, self._bind(target, call)

    def _targets(self, node: ast.AST) -> list[Func] | None:
        mod = self.graph.modules[self.fn.module]
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            if node.id in self.names:
                found = self.graph.lookup(self.names[node.id])
                return found if isinstance(found, list) else None
            if node.id in mod.functions:
                return [mod.functions[node.id]]
            if node.id in mod.classes:
                return list(mod.classes[node.id].values())
            return None
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            base = node.value.id
            if base in ("self", "cls") and self.fn.cls:
                method = mod.classes[self.fn.cls].get(node.attr)
                return [method] if method else None
            if base in self.names:
                found = self.graph.lookup(f"{self.names[base]}.{node.attr}")
                return found if isinstance(found, list) else None
        return None

    def _bind(self, target: Func, call: ast.Call | None) -> dict[str, str]:
        """The callee's parameters that the call passes a bucket to."""
        if call is None:
            return {}
        params = target.params
        bound: dict[str, str] = {}
        for i, arg in enumerate(call.args):
            bucket = self.bucket(arg)
            if bucket and i < len(params):
                bound[params[i]] = bucket
        for kw in call.keywords:
            bucket = self.bucket(kw.value) if kw.arg else None
            if bucket and kw.arg:
                bound[kw.arg] = bucket
        return bound


@dataclass
class Needs:
    """What one entry point's code uses, with one place in the code for each use."""

    uses: dict[tuple[str, str], str] = field(default_factory=dict)

    def add(self, use: Use) -> None:
        self.uses.setdefault((use.kind, use.detail), use.where)

    @property
    def firestore(self) -> bool:
        return any(kind == "firestore" for kind, _ in self.uses)

    @property
    def provider_keys(self) -> bool:
        return any(kind == "provider_keys" for kind, _ in self.uses)

    @property
    def signs_urls(self) -> bool:
        return any(kind == "sign" for kind, _ in self.uses)

    @property
    def queues(self) -> set[str]:
        return {detail for kind, detail in self.uses if kind == "queue"}

    def bucket_ops(self, kind: str = "bucket") -> dict[str, set[str]]:
        ops: dict[str, set[str]] = {}
        for k, detail in self.uses:
            if k == kind:
                bucket, op = detail.split(":")
                ops.setdefault(bucket, set()).add(op)
        return ops


def entry_roots(graph: CodeGraph) -> dict[str, list[Func]]:
    """Entry point => the package functions functions/main.py makes it from: its handler
    (``promptforge.api.routes.ENTRY_POINTS``), the settings and deps (``wiring.live``)
    but for the static page, and the HTTP wrapper (``public.endpoint``) of the rest."""
    from promptforge.api.routes import ENTRY_POINTS

    roots: dict[str, list[Func]] = {}
    for ep in ENTRY_POINTS:
        module = ep.handler.split(".")[0]
        dotted = [f"promptforge.api.{ep.handler}"]
        if module != "web":
            dotted.append("promptforge.wiring.live")
            if ep.trigger == "http":
                dotted.append("promptforge.api.public.endpoint")
        found: list[Func] = []
        for name in dotted:
            target = graph.lookup(name)
            if not isinstance(target, list):
                raise AssertionError(f"{ep.name}: {name} is not a function the code graph knows")
            found.extend(target)
        roots[ep.name] = found
    return roots


def needs_of(graph: CodeGraph, roots: list[Func]) -> Needs:
    """Everything reachable from ``roots``, with bucket parameters bound along the way."""
    needs = Needs()
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    stack: list[tuple[Func, dict[str, str]]] = [(root, {}) for root in roots]
    while stack:
        fn, binding = stack.pop()
        key = (fn.qualname, tuple(sorted(binding.items())))
        if key in seen:
            continue
        seen.add(key)
        if fn.module.startswith(PROVIDERS):
            needs.add(Use("provider_keys", "", f"{fn.module.replace('.', '/')}.py:{fn.node.lineno}"))
            continue
        if fn.module.startswith(NOT_FOLLOWED):
            continue
        walker = _Walker(graph, fn, binding)
        for use in walker.uses():
            needs.add(use)
        stack.extend(walker.edges())
    return needs
