"""The web page's function (promptforge.api.web): what it serves, with which headers, and
that no path reaches anything but the page's own files."""

from __future__ import annotations

import re

import flask
import pytest
from werkzeug.test import TestResponse

from promptforge.api import openapi, routes, web
from terraform.package_functions import INCLUDE_SUFFIXES

# As functions-framework does: every path and method goes to the one function.
APP = flask.Flask("web-test")
APP.add_url_rule("/", "serve", lambda **_: web.serve(flask.request), methods=["GET", "HEAD", "POST"])
APP.add_url_rule("/<path:rest>", "serve", methods=["GET", "HEAD", "POST"])


def get(path: str, method: str = "GET", headers: dict[str, str] | None = None) -> TestResponse:
    return APP.test_client().open(path, method=method, headers=headers or {})


def test_ui_is_the_page_and_each_file_has_its_content_type() -> None:
    page = get("/ui")
    assert page.status_code == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert page.get_data() == (web.WEB_DIR / "index.html").read_bytes()
    for name, content_type in [
        ("index.html", "text/html; charset=utf-8"),
        ("app.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ]:
        res = get(f"/ui/{name}")
        assert res.status_code == 200, name
        assert res.headers["Content-Type"] == content_type, name
        assert res.get_data() == (web.WEB_DIR / name).read_bytes(), name


def test_every_answer_carries_a_strict_content_security_policy() -> None:
    for path in ("/ui", "/ui/app.js", "/ui/nothing.js"):
        headers = get(path).headers
        policy = dict(d.strip().split(" ", 1) for d in headers["Content-Security-Policy"].split(";"))
        assert policy["default-src"] == "'self'" and policy["connect-src"] == "'self'", path
        assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'", path  # no inline code
        assert policy["frame-ancestors"] == "'none'" and policy["object-src"] == "'none'", path
        assert headers["X-Content-Type-Options"] == "nosniff", path
        assert headers["Referrer-Policy"] == "no-referrer", path


@pytest.mark.parametrize(
    "path",
    [
        "/ui/../main.py",
        "/ui/..%2Fmain.py",
        "/ui/..%2F..%2Fmain.py",
        "/ui/%2e%2e/api/web.py",
        "/ui/..%5Cmain.py",
        "/ui/../web/index.html",
        "/ui//etc/passwd",
        "/ui/%2Fetc%2Fpasswd",
        "/ui/web/index.html",
        "/ui/index.html/",
        "/ui/index.html%00.js",
        "/ui/INDEX.HTML",
        "/ui/.gitignore",
        "/ui/__init__.py",
        "/ui/nothing.js",
        "/ui/app.js.map",
        "/uiapp.js",
    ],
)
def test_no_path_reaches_anything_but_the_pages_files(path: str) -> None:
    res = get(path)
    assert res.status_code == 404, path
    assert res.headers["Content-Type"] == "application/json"
    assert res.get_json() == {"error": {"code": "not_found", "message": "No such file", "details": {}}}


def test_only_get_and_head_are_served() -> None:
    res = get("/ui", method="POST")
    assert res.status_code == 405 and res.get_json()["error"]["code"] == "method_not_allowed"
    assert res.headers["Allow"] == "GET, HEAD"
    assert get("/ui/app.js", method="HEAD").status_code == 200


def test_a_cached_copy_is_revalidated_with_its_etag() -> None:
    first = get("/ui/app.js")
    assert first.headers["Cache-Control"] == "no-cache" and first.headers["ETag"]
    again = get("/ui/app.js", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.get_data() == b""
    assert get("/ui/style.css", headers={"If-None-Match": first.headers["ETag"]}).status_code == 200


def test_every_file_of_the_page_is_served_and_deployed() -> None:
    on_disk = {p.name for p in web.WEB_DIR.iterdir()}
    assert set(web.files()) == on_disk, "a file the function would not serve (unknown type or name)"
    assert {p.suffix for p in web.WEB_DIR.iterdir()} <= INCLUDE_SUFFIXES, "terraform/package_functions.py would leave it out"


def test_the_page_loads_nothing_from_elsewhere_and_runs_no_inline_code() -> None:
    for name, (body, _, _) in web.files().items():
        text = body.decode()
        text = text.replace('xmlns="http://www.w3.org/2000/svg"', "")  # a name, not a fetch
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), name
    html = (web.WEB_DIR / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "inline scripts break under script-src 'self'"
    assert "<style" not in html and " style=" not in html and not re.search(r"\son[a-z]+=", html)
    # The key field has no name: without the script a submitted form carries no key.
    key_input = re.search(r"<input[^>]*id=\"api-key\"[^>]*>", html, re.S)
    assert key_input and " name=" not in key_input.group(0) and 'type="password"' in key_input.group(0)


def test_the_page_routes_go_to_the_web_function_and_stay_out_of_the_api_document() -> None:
    found = routes.match("GET", "/ui")
    assert found and (found[0].function, found[0].api, found[1]) == ("web", False, {})
    found = routes.match("GET", "/ui/app.js")
    assert found and found[0].function == "web" and found[1] == {"path": "app.js"}
    assert routes.match("GET", "/ui/a/b.js") is None
    assert routes.match("POST", "/ui") is None
    assert all(r.api for r in routes.ROUTES if r.function != "web")
    assert not [p for p in openapi.document()["paths"] if p.startswith("/ui")]
