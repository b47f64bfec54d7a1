"""Extract the resource schemas PromptForge uses from the Google providers' Go source.

`terraform validate` needs the provider binaries, which cannot be downloaded where the
offline checks run. This script reads the providers' source instead (hashicorp/
terraform-provider-google and hashicorp/terraform-provider-google-beta), at a release
tag, and writes terraform/checks/provider_schema/google-6.x.json: for every resource and
data-source type that the Terraform under terraform/ uses (plus any --also TYPE), its
arguments (required / optional / computed-only) and nested blocks, recursively, as the
Terraform Plugin SDK v2 presents them to Terraform core. schema_check.py checks the
configuration against that JSON. The JSON is committed; this script is run by hand when
the provider version is raised, never in CI.

How the Go is read: a small interpreter for the subset of Go the schemas are written in.
It tokenizes each package, finds the function or variable that builds a type's
*schema.Resource (from the provider's registration maps in google/provider/), and
evaluates it: composite literals (&schema.Resource{...}, map[string]*schema.Schema{...},
&schema.Schema{...}), calls of the provider's own functions (straight-line statements
only: assignments, map and field writes, return), package variables, and a few helpers
implemented here with the provider's semantics (tpgresource.DatasourceSchemaFromResourceSchema,
Add{Required,Optional}FieldsToSchema, DeleteFieldsFromSchema, MergeSchemas). Anything it
cannot evaluate where a schema is needed is an error, never a silent gap. Then, like the
SDK's CoreConfigSchema: a TypeList/TypeSet whose Elem is a *schema.Resource is a nested
block (min_items 1 when Required, 0 when Optional; computed-only ones and ConfigMode
SchemaConfigModeAttr ones are attributes), an "id" attribute (optional+computed) is added
when absent, and a resource with Timeouts gets a "timeouts" block.

Usage (a checkout or a bare git directory of each repository; --ref for a bare one):

    python terraform/checks/extract_provider_schema.py \\
        --google /work/.mirror/hashicorp+terraform-provider-google/repo \\
        --google-beta /work/.mirror/hashicorp+terraform-provider-google-beta/repo \\
        --ref v6.50.0 [--also google_pubsub_topic ...] \\
        [--out terraform/checks/provider_schema/google-6.x.json]

The bare directories above are what the session tool `fetch` (github:hashicorp/...)
leaves; `git clone --bare https://github.com/hashicorp/terraform-provider-google` gives
the same. The types to extract are the ones `resource "T"` / `data "T"` name in
terraform/**/*.tf, the --also ones, and the ones already in the output file.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "terraform" / "checks" / "provider_schema" / "google-6.x.json"
REPOSITORIES = {
    "google": "https://github.com/hashicorp/terraform-provider-google",
    "google-beta": "https://github.com/hashicorp/terraform-provider-google-beta",
}


class ExtractError(Exception):
    pass


# --------------------------------------------------------------------------- sources


class Source:
    """Files of one repository at one ref: a bare git dir (or a clone) read with git, or a plain tree."""

    def __init__(self, path: Path, ref: str | None) -> None:
        self.path = path
        self.git_dir: Path | None = None
        if (path / "objects").is_dir() and (path / "HEAD").is_file():
            self.git_dir = path
        elif (path / ".git").exists() and ref:
            self.git_dir = path / ".git"
        self.ref = ref or "HEAD"
        self._files: list[str] | None = None
        self._cat: subprocess.Popen[bytes] | None = None

    def _git(self, *args: str) -> str:
        assert self.git_dir is not None
        return subprocess.run(["git", f"--git-dir={self.git_dir}", *args], check=True, capture_output=True, text=True).stdout

    def commit(self) -> str | None:
        return self._git("rev-parse", f"{self.ref}^{{commit}}").strip() if self.git_dir else None

    def files(self) -> list[str]:
        if self._files is None:
            if self.git_dir:
                self._files = self._git("ls-tree", "-r", "--name-only", self.ref).splitlines()
            else:
                self._files = [str(p.relative_to(self.path)) for p in self.path.rglob("*.go")] + ["go.mod"]
        return self._files

    def read(self, name: str) -> str:
        if not self.git_dir:
            return (self.path / name).read_text()
        if self._cat is None:
            self._cat = subprocess.Popen(
                ["git", f"--git-dir={self.git_dir}", "cat-file", "--batch"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
        assert self._cat.stdin and self._cat.stdout
        self._cat.stdin.write(f"{self.ref}:{name}\n".encode())
        self._cat.stdin.flush()
        header = self._cat.stdout.readline().decode().split()
        if len(header) < 3:
            raise ExtractError(f"{name}: not at {self.ref}")
        data = self._cat.stdout.read(int(header[2]))
        self._cat.stdout.read(1)
        return data.decode()

    def package_files(self, directory: str) -> list[str]:
        prefix = directory.rstrip("/") + "/"
        return sorted(
            f
            for f in self.files()
            if f.startswith(prefix) and "/" not in f[len(prefix) :] and f.endswith(".go") and not f.endswith("_test.go")
        )


# --------------------------------------------------------------------------- Go tokens

_TOKEN = re.compile(
    r"""(?P<nl>\n)|(?P<ws>[ \t\r\f]+)|(?P<lc>//[^\n]*)|(?P<bc>/\*.*?\*/)
    |(?P<raw>`[^`]*`)|(?P<str>"(?:\\.|[^"\\\n])*")|(?P<chr>'(?:\\.|[^'\\\n])+')
    |(?P<num>0[xX][0-9a-fA-F_]+|(?:\d[\d_]*(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?i?)
    |(?P<id>[^\W\d]\w*)
    |(?P<op><<=|>>=|&\^=|\.\.\.|&&|\|\||<-|\+\+|--|==|!=|<=|>=|:=|\+=|-=|\*=|/=|%=|&=|\|=|\^=|<<|>>|&\^|[-+*/%&|^<>=!(){}\[\],;.:~])
    """,
    re.S | re.X,
)


@dataclass(frozen=True)
class Tok:
    kind: str  # id, str, num, chr, op, ;
    value: Any
    line: int


def _go_string(text: str) -> str:
    if text.startswith("`"):
        return text[1:-1].replace("\r", "")
    try:
        return json.loads(text)
    except ValueError:
        return text[1:-1]


def tokenize(text: str) -> list[Tok]:
    """Go tokens, with the language's automatic semicolons (kind ';')."""
    out: list[Tok] = []
    line = 1
    pos = 0

    def semicolon() -> None:
        if out:
            last = out[-1]
            if last.kind in ("id", "str", "num", "chr") or (last.kind == "op" and last.value in (")", "]", "}", "++", "--")):
                out.append(Tok(";", ";", line))

    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ExtractError(f"line {line}: cannot tokenize {text[pos : pos + 20]!r}")
        kind = m.lastgroup
        value = m.group()
        pos = m.end()
        if kind == "nl":
            semicolon()
            line += 1
        elif kind in ("ws", "lc"):
            pass
        elif kind == "bc":
            if "\n" in value:
                semicolon()
                line += value.count("\n")
        elif kind in ("raw", "str"):
            out.append(Tok("str", _go_string(value), line))
            line += value.count("\n")
        elif kind == "op" and value == ";":
            out.append(Tok(";", ";", line))
        else:
            out.append(Tok(kind, value, line))
    semicolon()
    return out


# --------------------------------------------------------------------------- Go parser (a subset)

_BINARY = {
    "||": 1,
    "&&": 2,
    "==": 3,
    "!=": 3,
    "<": 3,
    "<=": 3,
    ">": 3,
    ">=": 3,
    "+": 4,
    "-": 4,
    "|": 4,
    "^": 4,
    "*": 5,
    "/": 5,
    "%": 5,
    "<<": 5,
    ">>": 5,
    "&": 5,
    "&^": 5,
}
_SKIPPED_STATEMENTS = {
    "if",
    "for",
    "switch",
    "select",
    "go",
    "defer",
    "goto",
    "break",
    "continue",
    "fallthrough",
    "const",
    "type",
}
_ASSIGN = {":=", "=", "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=", "<<=", ">>=", "&^="}


@dataclass
class FuncDecl:
    name: str
    params: list[tuple[str, bool]]  # (name, variadic)
    body: list[Tok]
    file: str
    imports: dict[str, str]


@dataclass
class VarDecl:
    name: str
    expr: list[Tok]
    file: str
    imports: dict[str, str]


class Parser:
    def __init__(self, toks: list[Tok], where: str = "") -> None:
        self.t = toks
        self.i = 0
        self.where = where

    # -- helpers
    def peek(self, k: int = 0) -> Tok | None:
        j = self.i + k
        return self.t[j] if j < len(self.t) else None

    def at(self, value: str, k: int = 0) -> bool:
        tok = self.peek(k)
        return tok is not None and tok.kind in ("op", ";", "id") and tok.value == value

    def next(self) -> Tok:
        tok = self.peek()
        if tok is None:
            raise ExtractError(f"{self.where}: unexpected end")
        self.i += 1
        return tok

    def expect(self, value: str) -> Tok:
        tok = self.next()
        if tok.value != value:
            raise ExtractError(f"{self.where}:{tok.line}: expected {value!r}, got {tok.value!r}")
        return tok

    def skip_group(self) -> list[Tok]:
        """At an opening bracket: skip to after its match; return the tokens inside."""
        open_tok = self.next()
        pairs = {"(": ")", "[": "]", "{": "}"}
        stack = [pairs[open_tok.value]]
        start = self.i
        while stack:
            tok = self.next()
            if tok.kind == "op":
                if tok.value in pairs:
                    stack.append(pairs[tok.value])
                elif tok.value in (")", "]", "}") and tok.value != stack.pop():
                    raise ExtractError(f"{self.where}:{tok.line}: unbalanced {tok.value!r}")
        return self.t[start : self.i - 1]

    def skip_statement(self) -> list[Tok]:
        """Skip to the ';' that ends this statement (at bracket depth 0); return the tokens."""
        start = self.i
        while self.peek() is not None and not self.at(";"):
            if self.peek().kind == "op" and self.peek().value in "([{":
                self.skip_group()
            else:
                self.i += 1
        end = self.i
        if self.peek() is not None:
            self.i += 1
        return self.t[start:end]

    # -- files
    def parse_file(self, file: str) -> tuple[dict[str, FuncDecl], dict[str, VarDecl]]:
        funcs: dict[str, FuncDecl] = {}
        variables: dict[str, VarDecl] = {}
        imports: dict[str, str] = {}
        while self.peek() is not None:
            tok = self.next()
            if tok.kind == ";":
                continue
            if tok.value == "package":
                self.skip_statement()
            elif tok.value == "import":
                specs = self.skip_group() if self.at("(") else self.skip_statement()
                for spec in _split(specs, ";"):
                    if not spec:
                        continue
                    path = spec[-1].value
                    alias = spec[0].value if len(spec) == 2 else path.rstrip("/").split("/")[-1].replace("-", "_")
                    imports[alias] = path
            elif tok.value == "func":
                decl = self.parse_func_decl(file, imports)
                if decl is not None:
                    funcs[decl.name] = decl
            elif tok.value in ("var", "const"):
                specs = self.skip_group() if self.at("(") else self.skip_statement()
                for spec in _split(specs, ";"):
                    eq = next((n for n, s in enumerate(spec) if s.kind == "op" and s.value == "="), None)
                    if spec and eq is not None and eq >= 1 and spec[0].kind == "id":
                        variables[spec[0].value] = VarDecl(spec[0].value, spec[eq + 1 :], file, imports)
            elif tok.value == "type":
                if self.at("("):
                    self.skip_group()
                else:
                    self.skip_statement()
            else:
                raise ExtractError(f"{self.where}:{tok.line}: unexpected top-level {tok.value!r}")
        return funcs, variables

    def parse_func_decl(self, file: str, imports: dict[str, str]) -> FuncDecl | None:
        method = self.at("(")
        if method:
            self.skip_group()
        name = self.next().value
        if self.at("["):
            self.skip_group()
        params = _params(self.skip_group())
        # result type: up to the body's "{" (interface{} and struct{...} are part of the type)
        while not self.at("{") and not self.at(";"):
            if self.at("interface") or self.at("struct"):
                self.i += 1
                self.skip_group()
            elif self.peek().kind == "op" and self.peek().value in "([":
                self.skip_group()
            else:
                self.i += 1
        if self.at(";"):
            return None
        body = self.skip_group()
        return None if method else FuncDecl(name, params, body, file, imports)

    # -- types
    def parse_type(self) -> str:
        tok = self.next()
        v = tok.value
        if v == "*":
            return "*" + self.parse_type()
        if v == "[":
            size = "".join(str(x.value) for x in self.skip_statement_until("]"))
            return f"[{size}]" + self.parse_type()
        if v == "map":
            self.expect("[")
            key = self.parse_type()
            self.expect("]")
            return f"map[{key}]" + self.parse_type()
        if v == "chan":
            return "chan " + self.parse_type()
        if v in ("interface", "struct"):
            self.skip_group()
            return v + "{}"
        if v == "func":
            self.skip_group()
            if self.at("("):
                self.skip_group()
            elif self.peek() is not None and (self.peek().kind == "id" or self.at("*") or self.at("[")):
                self.parse_type()
            return "func"
        if v == "(":
            inner = self.parse_type()
            self.expect(")")
            return inner
        if tok.kind != "id":
            raise ExtractError(f"{self.where}:{tok.line}: expected a type, got {v!r}")
        if self.at(".") and self.peek(1) is not None and self.peek(1).kind == "id":
            self.i += 1
            v += "." + self.next().value
        return v

    def skip_statement_until(self, closing: str) -> list[Tok]:
        start = self.i
        while not self.at(closing):
            if self.peek().kind == "op" and self.peek().value in "([{":
                self.skip_group()
            else:
                self.i += 1
        end = self.i
        self.i += 1
        return self.t[start:end]

    # -- expressions
    def expr(self, prec: int = 1) -> tuple:
        left = self.unary()
        while True:
            tok = self.peek()
            if tok is None or tok.kind != "op" or tok.value not in _BINARY or _BINARY[tok.value] < prec:
                return left
            self.i += 1
            right = self.expr(_BINARY[tok.value] + 1)
            left = ("binary", tok.value, left, right)

    def unary(self) -> tuple:
        tok = self.peek()
        if tok is not None and tok.kind == "op" and tok.value in ("&", "*", "-", "+", "!", "^", "<-"):
            self.i += 1
            return ("unary", tok.value, self.unary())
        return self.primary()

    def primary(self) -> tuple:
        tok = self.peek()
        if tok is None:
            raise ExtractError(f"{self.where}: unexpected end of expression")
        if tok.kind == "op" and tok.value == "(":
            self.i += 1
            x = self.expr()
            self.expect(")")
        elif tok.kind == "id" and tok.value == "func":
            self.i += 1
            self.skip_group()
            while not self.at("{") and not self.at(";") and not self.at(",") and not self.at(")"):
                if self.peek().kind == "op" and self.peek().value in "([":
                    self.skip_group()
                elif self.at("interface") or self.at("struct"):
                    self.i += 1
                    self.skip_group()
                else:
                    self.i += 1
            if self.at("{"):
                self.skip_group()
                return ("funclit",)
            return ("type", "func")
        elif (tok.kind == "id" and tok.value in ("map", "chan", "struct", "interface")) or (
            tok.kind == "op" and tok.value == "["
        ):
            x = ("type", self.parse_type())
        elif tok.kind == "id":
            self.i += 1
            x = ("ident", tok.value)
        elif tok.kind == "str":
            self.i += 1
            x = ("lit", tok.value)
        elif tok.kind == "num":
            self.i += 1
            text = tok.value.replace("_", "")
            try:
                x = ("lit", int(text, 0))
            except ValueError:
                try:
                    x = ("lit", float(text))
                except ValueError:
                    x = ("opaque", text)
        elif tok.kind == "chr":
            self.i += 1
            x = ("lit", tok.value)
        else:
            raise ExtractError(f"{self.where}:{tok.line}: unexpected {tok.value!r} in an expression")
        while True:
            if self.at("."):
                self.i += 1
                if self.at("("):
                    self.i += 1
                    typ = "type" if self.at("type") else self.parse_type()
                    if typ == "type":
                        self.i += 1
                    self.expect(")")
                    x = ("assert", x, typ)
                else:
                    x = ("sel", x, self.next().value)
            elif self.at("("):
                self.i += 1
                args = []
                while not self.at(")"):
                    args.append(self.expr())
                    if self.at("..."):
                        self.i += 1
                        args[-1] = ("spread", args[-1])
                    if self.at(","):
                        self.i += 1
                self.expect(")")
                x = ("call", x, args)
            elif self.at("["):
                self.i += 1
                if self.at(":"):
                    self.skip_statement_until("]")
                    x = ("opaque", "slice")
                    continue
                idx = self.expr()
                if self.at(":"):
                    self.skip_statement_until("]")
                    x = ("opaque", "slice")
                    continue
                self.expect("]")
                x = ("index", x, idx)
            elif self.at("{") and x[0] in ("ident", "sel", "type"):
                x = self.composite(_type_name(x))
            else:
                return x

    def composite(self, typ: str | None) -> tuple:
        self.expect("{")
        elems: list[tuple[tuple | None, tuple]] = []
        while not self.at("}"):
            while self.at(";"):
                self.i += 1
            if self.at("}"):
                break
            first = self.composite(None) if self.at("{") else self.expr()
            if self.at(":"):
                self.i += 1
                value = self.composite(None) if self.at("{") else self.expr()
                elems.append((first, value))
            else:
                elems.append((None, first))
            if self.at(","):
                self.i += 1
            while self.at(";"):
                self.i += 1
        self.expect("}")
        return ("comp", typ, elems)

    # -- statements
    def statements(self) -> list[tuple]:
        out: list[tuple] = []
        while self.peek() is not None:
            tok = self.peek()
            if tok.kind == ";":
                self.i += 1
                continue
            start = self.i
            try:
                out.append(self.statement())
            except ExtractError as exc:
                self.i = start
                self.skip_statement()
                out.append(("unparsed", str(exc)))
        return out

    def statement(self) -> tuple:
        tok = self.peek()
        if tok.kind == "op" and tok.value == "{":
            self.skip_group()
            return ("skipped",)
        if tok.kind == "id" and tok.value in _SKIPPED_STATEMENTS:
            self.skip_statement()
            return ("skipped",)
        if tok.kind == "id" and tok.value == "return":
            self.i += 1
            values = []
            while not self.at(";") and self.peek() is not None:
                values.append(self.expr())
                if self.at(","):
                    self.i += 1
            self._end()
            return ("return", values)
        if tok.kind == "id" and tok.value == "var":
            self.i += 1
            name = self.next().value
            if not self.at("="):
                typ = self.parse_type()
                if not self.at("="):
                    self._end()
                    return ("assign", "=", [("ident", name)], [("zero", typ)])
            self.i += 1
            value = self.expr()
            self._end()
            return ("assign", "=", [("ident", name)], [value])
        lhs = [self.expr()]
        while self.at(","):
            self.i += 1
            lhs.append(self.expr())
        if self.peek() is not None and self.peek().value in _ASSIGN:
            op = self.next().value
            if self.at("range"):
                self.skip_statement()
                return ("skipped",)
            rhs = [self.expr()]
            while self.at(","):
                self.i += 1
                rhs.append(self.expr())
            self._end()
            return ("assign", op, lhs, rhs)
        if self.at("++") or self.at("--"):
            self.i += 1
            self._end()
            return ("skipped",)
        self._end()
        return ("expr", lhs[0])

    def _end(self) -> None:
        if self.peek() is not None:
            if not self.at(";"):
                raise ExtractError(f"{self.where}:{self.peek().line}: expected end of statement, got {self.peek().value!r}")
            self.i += 1


def _split(toks: list[Tok], sep: str) -> list[list[Tok]]:
    parts: list[list[Tok]] = [[]]
    depth = 0
    for tok in toks:
        if tok.kind == "op" and tok.value in "([{":
            depth += 1
        elif tok.kind == "op" and tok.value in ")]}":
            depth -= 1
        if depth == 0 and tok.value == sep and tok.kind in ("op", ";"):
            parts.append([])
        else:
            parts[-1].append(tok)
    return [p for p in parts if p]


def _params(toks: list[Tok]) -> list[tuple[str, bool]]:
    parts = _split(toks, ",")
    named = any(len(p) >= 2 and p[0].kind == "id" for p in parts)
    if not named:
        return [("_", False) for _ in parts]
    return [(p[0].value, any(t.value == "..." for t in p[1:])) for p in parts]


def _type_name(x: tuple) -> str:
    if x[0] == "ident":
        return x[1]
    if x[0] == "sel":
        return _type_name(x[1]) + "." + x[2]
    return x[1]


# --------------------------------------------------------------------------- evaluation


@dataclass
class GoObj:
    """A struct value (schema.Resource, schema.Schema, ...): pointers are shared Python objects."""

    type: str
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Sym:
    """A name from outside the provider (schema.TypeString, schema.DefaultTimeout, ...)."""

    name: str


@dataclass(frozen=True)
class Opaque:
    why: str


@dataclass(frozen=True)
class FuncRef:
    package: str
    name: str


@dataclass(frozen=True)
class Native:
    name: str


@dataclass
class Package:
    directory: str
    funcs: dict[str, FuncDecl]
    variables: dict[str, VarDecl]
    values: dict[str, Any] = field(default_factory=dict)


class Interpreter:
    def __init__(self, source: Source) -> None:
        self.source = source
        go_mod = source.read("go.mod")
        match = re.search(r"^module\s+(\S+)", go_mod, re.M)
        if not match:
            raise ExtractError("go.mod has no module line")
        self.module = match.group(1)
        self.packages: dict[str, Package] = {}
        self.depth = 0

    def package(self, directory: str) -> Package:
        if directory not in self.packages:
            funcs: dict[str, FuncDecl] = {}
            variables: dict[str, VarDecl] = {}
            files = self.source.package_files(directory)
            if not files:
                raise ExtractError(f"no Go package at {directory}")
            for name in files:
                f, v = Parser(tokenize(self.source.read(name)), name).parse_file(name)
                funcs.update(f)
                variables.update(v)
            self.packages[directory] = Package(directory, funcs, variables)
        return self.packages[directory]

    def package_dir(self, import_path: str) -> str | None:
        if import_path.startswith(self.module + "/"):
            return import_path[len(self.module) + 1 :]
        return None

    # -- lookups
    def global_value(self, pkg: Package, name: str) -> Any:
        if name in pkg.values:
            return pkg.values[name]
        if name in pkg.variables:
            decl = pkg.variables[name]
            value = self.eval(Parser(decl.expr, decl.file).expr(), Scope(pkg, decl.imports, {}))
            pkg.values[name] = value
            return value
        if name in pkg.funcs:
            if pkg.directory.endswith("tpgresource") and name in NATIVES:
                return Native(name)
            return FuncRef(pkg.directory, name)
        return Opaque(f"{pkg.directory}.{name}")

    # -- expressions
    def eval(self, x: tuple, scope: Scope, hint: str | None = None) -> Any:
        kind = x[0]
        if kind == "lit":
            return x[1]
        if kind in ("opaque", "funclit"):
            return Opaque(kind)
        if kind == "type":
            return Sym("type:" + x[1])
        if kind == "zero":
            return None
        if kind == "ident":
            name = x[1]
            if name in scope.locals:
                return scope.locals[name]
            if name in ("true", "false"):
                return name == "true"
            if name == "nil":
                return None
            if name in ("make", "append", "len", "new"):
                return Native(name)
            return self.global_value(scope.pkg, name)
        if kind == "sel":
            base = x[1]
            if base[0] == "ident" and base[1] not in scope.locals and base[1] in scope.imports:
                path = scope.imports[base[1]]
                directory = self.package_dir(path)
                if directory is None:
                    return Sym(path.rstrip("/").split("/")[-1] + "." + x[2])
                return self.global_value(self.package(directory), x[2])
            value = self.eval(base, scope)
            if isinstance(value, GoObj):
                return value.fields.get(x[2])
            return Opaque(f"field {x[2]}")
        if kind == "unary":
            value = self.eval(x[2], scope, hint)
            if x[1] == "&":
                return value
            if x[1] == "-" and isinstance(value, (int, float)):
                return -value
            if x[1] == "!" and isinstance(value, bool):
                return not value
            return Opaque(f"unary {x[1]}")
        if kind == "binary":
            left, right = self.eval(x[2], scope), self.eval(x[3], scope)
            if isinstance(left, (int, float, str)) and type(left) is type(right) and x[1] in ("+", "*", "-"):
                try:
                    return {"+": lambda a, b: a + b, "*": lambda a, b: a * b, "-": lambda a, b: a - b}[x[1]](left, right)
                except TypeError:
                    return Opaque("binary")
            return Opaque("binary")
        if kind == "index":
            base = self.eval(x[1], scope)
            key = self.eval(x[2], scope)
            if isinstance(base, dict):
                return base.get(key)
            if isinstance(base, list) and isinstance(key, int) and 0 <= key < len(base):
                return base[key]
            return Opaque("index")
        if kind == "assert":
            return self.eval(x[1], scope)
        if kind == "spread":
            return self.eval(x[1], scope)
        if kind == "comp":
            return self.composite(x, scope, hint)
        if kind == "call":
            return self.call(x, scope)
        raise ExtractError(f"cannot evaluate {kind}")

    def composite(self, x: tuple, scope: Scope, hint: str | None) -> Any:
        typ = x[1] or hint
        if typ is None:
            raise ExtractError("a composite literal without a type")
        typ = typ.lstrip("*&")
        if typ.startswith("map["):
            depth = 0
            for n, ch in enumerate(typ):
                depth += ch == "["
                depth -= ch == "]"
                if depth == 0 and ch == "]":
                    elem = typ[n + 1 :]
                    break
            out: dict[Any, Any] = {}
            for key, value in x[2]:
                out[self.eval(key, scope) if key is not None else len(out)] = self.eval(value, scope, elem)
            return out
        if typ.startswith("["):
            elem = typ[typ.index("]") + 1 :]
            return [self.eval(value, scope, elem) for _, value in x[2]]
        obj = GoObj(self.type_name(typ, scope))
        for n, (key, value) in enumerate(x[2]):
            name = key[1] if key is not None and key[0] == "ident" else str(n)
            obj.fields[name] = self.eval(value, scope)
        return obj

    def type_name(self, typ: str, scope: Scope) -> str:
        if "." in typ:
            alias, rest = typ.split(".", 1)
            path = scope.imports.get(alias)
            if path is not None:
                return path.rstrip("/").split("/")[-1] + "." + rest
        return typ

    def call(self, x: tuple, scope: Scope) -> Any:
        fn = self.eval(x[1], scope)
        args = [self.eval(a, scope) for a in x[2]]
        if isinstance(fn, Native):
            return NATIVES[fn.name](*args)
        if isinstance(fn, FuncRef):
            return self.call_func(fn, args)
        if isinstance(fn, Sym) and fn.name.startswith("type:"):
            return args[0] if args else None
        return Opaque("call")

    def call_func(self, ref: FuncRef, args: list[Any]) -> Any:
        pkg = self.package(ref.package)
        decl = pkg.funcs[ref.name]
        self.depth += 1
        if self.depth > 60:
            raise ExtractError(f"recursion too deep at {ref.package}.{ref.name}")
        try:
            local: dict[str, Any] = {}
            for n, (name, variadic) in enumerate(decl.params):
                local[name] = args[n:] if variadic else (args[n] if n < len(args) else None)
            scope = Scope(pkg, decl.imports, local)
            for st in Parser(decl.body, f"{decl.file}:{ref.name}").statements():
                if st[0] == "return":
                    values = [self.eval(v, scope) for v in st[1]]
                    return values[0] if len(values) == 1 else tuple(values)
                if st[0] == "assign":
                    self.assign(st, scope)
                elif st[0] == "expr":
                    self.eval(st[1], scope)
            return None
        finally:
            self.depth -= 1

    def assign(self, st: tuple, scope: Scope) -> None:
        _, op, lhs, rhs = st
        if op not in (":=", "="):
            return
        values = [self.eval(v, scope) for v in rhs]
        if len(lhs) > 1 and len(values) == 1:
            values = list(values[0]) if isinstance(values[0], tuple) else [Opaque("multi")] * len(lhs)
        for target, value in zip(lhs, values, strict=False):
            if target[0] == "ident":
                if target[1] != "_":
                    scope.locals[target[1]] = value
            elif target[0] == "index":
                base = self.eval(target[1], scope)
                if isinstance(base, dict):
                    base[self.eval(target[2], scope)] = value
            elif target[0] == "sel":
                base = self.eval(target[1], scope)
                if isinstance(base, GoObj):
                    base.fields[target[2]] = value


@dataclass
class Scope:
    pkg: Package
    imports: dict[str, str]
    locals: dict[str, Any]


# The provider helpers that build data-source and IAM schemas (google/tpgresource), with
# the provider's semantics.


def _ds_from_resource(rs: Any) -> dict[str, Any]:
    if not isinstance(rs, dict):
        raise ExtractError("DatasourceSchemaFromResourceSchema of something that is not a schema map")
    out: dict[str, Any] = {}
    for key, value in rs.items():
        fields = {"Computed": True, "Type": value.fields.get("Type")}
        elem = value.fields.get("Elem")
        if isinstance(elem, GoObj) and elem.type == "schema.Resource" and _type(value) in ("list", "set"):
            elem = GoObj("schema.Resource", {"Schema": _ds_from_resource(elem.fields.get("Schema"))})
        fields["Elem"] = elem
        out[key] = GoObj("schema.Schema", fields)
    return out


def _fix_flags(schema: dict[str, Any], required: bool, *keys: str) -> None:
    for key in keys:
        schema[key].fields.update({"Computed": False, "Optional": not required, "Required": required})


def _merge(*maps: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for m in maps:
        if isinstance(m, dict):
            out.update(m)
    return out


def _make(*args: Any) -> Any:
    typ = args[0].name if args and isinstance(args[0], Sym) else ""
    return {} if typ.startswith("type:map") else []


def _append(base: Any, *items: Any) -> Any:
    out = list(base) if isinstance(base, list) else []
    for item in items:
        out.extend(item if isinstance(item, list) else [item])
    return out


NATIVES = {
    "DatasourceSchemaFromResourceSchema": _ds_from_resource,
    "FixDatasourceSchemaFlags": _fix_flags,
    "AddRequiredFieldsToSchema": lambda s, *k: _fix_flags(s, True, *k),
    "AddOptionalFieldsToSchema": lambda s, *k: _fix_flags(s, False, *k),
    "DeleteFieldsFromSchema": lambda s, *k: [s.pop(key, None) for key in k] and None,
    "MergeSchemas": _merge,
    "make": _make,
    "append": _append,
    "len": lambda v: len(v) if isinstance(v, (list, dict, str)) else Opaque("len"),
    "new": lambda *a: GoObj("new"),
}


# --------------------------------------------------------------------------- Terraform's view of a schema

_TYPES = {
    "schema.TypeBool": "bool",
    "schema.TypeInt": "number",
    "schema.TypeFloat": "number",
    "schema.TypeString": "string",
    "schema.TypeList": "list",
    "schema.TypeSet": "set",
    "schema.TypeMap": "map",
}


def _type(s: GoObj) -> str:
    t = s.fields.get("Type")
    if not isinstance(t, Sym) or t.name not in _TYPES:
        raise ExtractError(f"schema with Type {t!r}")
    return _TYPES[t.name]


def _attr_type(s: GoObj) -> str:
    t = _type(s)
    if t in ("list", "set", "map"):
        elem = s.fields.get("Elem")
        if isinstance(elem, GoObj) and elem.type == "schema.Resource":
            return f"{t}(object)"
        if isinstance(elem, GoObj) and elem.type == "schema.Schema":
            return f"{t}({_attr_type(elem)})"
        return f"{t}(string)" if t == "map" else t
    return t


def block_schema(schema_map: Any, path: str) -> dict[str, Any]:
    """Terraform core's view of one SDKv2 schema map: {"attributes": ..., "blocks": ...}."""
    if not isinstance(schema_map, dict):
        raise ExtractError(f"{path}: the schema is not a map literal the extractor could evaluate ({schema_map!r})")
    attributes: dict[str, Any] = {}
    blocks: dict[str, Any] = {}
    for name in sorted(schema_map):
        s = schema_map[name]
        where = f"{path}.{name}"
        if not isinstance(s, GoObj) or s.type != "schema.Schema":
            raise ExtractError(f"{where}: not a schema.Schema ({s!r})")
        required = s.fields.get("Required") is True
        optional = s.fields.get("Optional") is True
        computed = s.fields.get("Computed") is True
        elem = s.fields.get("Elem")
        mode = s.fields.get("ConfigMode")
        mode = mode.name if isinstance(mode, Sym) else None
        t = _type(s)
        nested = isinstance(elem, GoObj) and elem.type == "schema.Resource" and t in ("list", "set")
        deprecated = s.fields.get("Deprecated")
        if nested and not (computed and not optional) and mode != "schema.SchemaConfigModeAttr":
            min_items = s.fields.get("MinItems") or 0
            max_items = s.fields.get("MaxItems") or 0
            if required and min_items == 0:
                min_items = 1
            if optional and min_items > 0:
                min_items = 0
            entry: dict[str, Any] = {"nesting": t}
            if min_items:
                entry["min_items"] = min_items
            if max_items:
                entry["max_items"] = max_items
            if isinstance(deprecated, str) and deprecated:
                entry["deprecated"] = True
            entry["block"] = block_schema(elem.fields.get("Schema"), where)
            blocks[name] = entry
            continue
        if not (required or optional or computed):
            raise ExtractError(f"{where}: neither Required, Optional nor Computed")
        attr: dict[str, Any] = {
            "mode": "required" if required else "optional" if optional else "computed",
            "type": _attr_type(s),
        }
        if isinstance(deprecated, str) and deprecated:
            attr["deprecated"] = True
        if nested and mode == "schema.SchemaConfigModeAttr":
            # an attribute that may also be written as blocks ("attributes as blocks")
            attr["block"] = block_schema(elem.fields.get("Schema"), where)
        attributes[name] = attr
    return {"attributes": attributes, "blocks": blocks}


def type_schema(resource: Any, name: str, with_timeouts: bool) -> dict[str, Any]:
    if not isinstance(resource, GoObj) or resource.type != "schema.Resource":
        raise ExtractError(f"{name}: did not evaluate to a *schema.Resource ({resource!r})")
    if resource.fields.get("SchemaFunc") is not None and resource.fields.get("Schema") is None:
        raise ExtractError(f"{name}: uses SchemaFunc, which the extractor does not follow")
    block = block_schema(resource.fields.get("Schema"), name)
    block["attributes"].setdefault("id", {"mode": "optional", "type": "string", "implicit": True})
    timeouts = resource.fields.get("Timeouts")
    if with_timeouts and isinstance(timeouts, GoObj):
        keys = [k.lower() for k in ("Create", "Read", "Update", "Delete", "Default") if timeouts.fields.get(k) is not None]
        block["blocks"]["timeouts"] = {
            "nesting": "single",
            "block": {"attributes": {k: {"mode": "optional", "type": "string"} for k in keys}, "blocks": {}},
        }
    message = resource.fields.get("DeprecationMessage")
    if isinstance(message, str) and message:
        block["deprecated"] = message
    return block


# --------------------------------------------------------------------------- registration maps


def registrations(interp: Interpreter, provider_dir: str) -> dict[str, dict[str, tuple]]:
    """kind ("resource"/"data") => type name => (the Go expression that builds it, its scope)."""
    pkg = interp.package(provider_dir)
    maps = {"data": "DatasourceMapWithErrors", "resource": "ResourceMapWithErrors"}
    out: dict[str, dict[str, tuple]] = {}
    for kind, func in maps.items():
        decl = pkg.funcs.get(func)
        if decl is None:
            raise ExtractError(f"{provider_dir}: no func {func}")
        names = [t.value for t in decl.body if t.kind == "id" and t.value in pkg.variables]
        found: dict[str, tuple] = {}
        for var in names:
            vdecl = pkg.variables[var]
            literal = Parser(vdecl.expr, vdecl.file).expr()
            if literal[0] != "comp":
                raise ExtractError(f"{var}: not a map literal")
            for key, value in literal[2]:
                if key is not None and key[0] == "lit":
                    found.setdefault(key[1], (value, Scope(pkg, vdecl.imports, {})))
        out[kind] = found
    return out


def extract(source: Source, wanted: dict[str, set[str]]) -> tuple[dict[str, dict[str, Any]], dict[str, list[str]]]:
    interp = Interpreter(source)
    provider_dir = next(d for d in ("google/provider", "google-beta/provider") if source.package_files(d))
    regs = registrations(interp, provider_dir)
    out: dict[str, dict[str, Any]] = {"resource": {}, "data": {}}
    missing: dict[str, list[str]] = {"resource": [], "data": []}
    for kind, names in wanted.items():
        for name in sorted(names):
            if name not in regs[kind]:
                missing[kind].append(name)
                continue
            expr, scope = regs[kind][name]
            out[kind][name] = type_schema(interp.eval(expr, scope), f"{kind} {name}", with_timeouts=kind == "resource")
    return out, missing


# --------------------------------------------------------------------------- the types PromptForge uses

_TF_TYPE = re.compile(r'^\s*(resource|data)\s+"([a-z0-9_]+)"', re.M)


def used_types(terraform_dir: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {"resource": set(), "data": set()}
    for path in terraform_dir.rglob("*.tf"):
        if ".terraform" in path.parts:
            continue
        for kind, name in _TF_TYPE.findall(path.read_text()):
            if name.startswith(("google_",)):
                found[kind].add(name)
    return found


def _version(ref: str) -> str:
    return ref[1:] if re.fullmatch(r"v\d+\.\d+\.\d+", ref) else ref


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--google", type=Path, required=True, help="terraform-provider-google: a checkout or bare git dir")
    parser.add_argument("--google-beta", type=Path, required=True, help="terraform-provider-google-beta, likewise")
    parser.add_argument("--ref", default="v6.50.0", help="the release tag to read (default v6.50.0)")
    parser.add_argument("--also", nargs="*", default=[], metavar="TYPE", help="more resource types (data.TYPE for a data source)")
    parser.add_argument("--terraform", type=Path, default=ROOT / "terraform")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    wanted = used_types(args.terraform)
    for name in args.also:
        if name.startswith("data."):
            wanted["data"].add(name[5:])
        else:
            wanted["resource"].add(name)
    if args.out.exists():
        previous = json.loads(args.out.read_text())
        for kind in ("resource", "data"):
            wanted[kind].update(previous.get(kind, {}))

    schemas: dict[str, dict[str, dict[str, Any]]] = {}
    providers: dict[str, dict[str, Any]] = {}
    for local, path in (("google", args.google), ("google-beta", args.google_beta)):
        source = Source(path, args.ref)
        schemas[local], missing = extract(source, wanted)
        providers[local] = {
            "source": f"hashicorp/{local}",
            "version": _version(args.ref),
            "tag": args.ref,
            "commit": source.commit(),
            "repository": REPOSITORIES[local],
            "not_in_provider": {k: v for k, v in missing.items() if v},
        }
        print(
            f"{local} {args.ref} ({providers[local]['commit']}): "
            f"{len(schemas[local]['resource'])} resources, {len(schemas[local]['data'])} data sources",
            file=sys.stderr,
        )

    out: dict[str, Any] = {
        "format": 1,
        "about": "Resource and data-source schemas of the Google providers, as Terraform core sees them, for the "
        "types terraform/ uses. Written by terraform/checks/extract_provider_schema.py from the providers' Go "
        'source; read by terraform/checks/schema_check.py. A beta provider schema equal to the GA one is "same".',
        "providers": providers,
        "resource": {},
        "data": {},
    }
    for kind in ("resource", "data"):
        for name in sorted(wanted[kind]):
            ga = schemas["google"][kind].get(name)
            beta = schemas["google-beta"][kind].get(name)
            if ga is None and beta is None:
                print(f"warning: {kind} {name} is in neither provider (or is a plugin-framework type)", file=sys.stderr)
                continue
            entry: dict[str, Any] = {"beta_only": ga is None}
            if ga is not None:
                entry["google"] = ga
            if beta is not None:
                entry["google-beta"] = "same" if beta == ga else beta
            out[kind][name] = entry
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1, sort_keys=False) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
