"""The web page: the static files of ``promptforge/web`` at ``GET /ui`` and ``/ui/<file>``.

No key is needed to fetch the page; the page itself asks for the key and calls the API
with it. Only the files listed in that directory at start-up are served, looked up by
exact name (no subdirectories, no dot files, only known types), so no path can reach
anything else. Every answer carries a strict Content-Security-Policy: the page runs only
its own script and talks only to its own origin.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import traceback
from pathlib import Path

import flask

from .. import logs
from .envelope import ApiError, internal

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
PREFIX = "/ui"
INDEX = "index.html"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "connect-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*\.[a-z]+")


@functools.cache
def page_headers() -> dict[str, str]:
    """The security headers of the page's files: the page may also connect to the events
    function's own origin, from which it streams job events."""
    from urllib.parse import urlsplit

    from .. import config

    events = urlsplit(config.load().events_url)
    if not events.scheme or not events.netloc:
        return SECURITY_HEADERS
    origin = f"{events.scheme}://{events.netloc}"
    policy = CONTENT_SECURITY_POLICY.replace("connect-src 'self'", f"connect-src 'self' {origin}")
    return {**SECURITY_HEADERS, "Content-Security-Policy": policy}


@functools.cache
def files(directory: Path = WEB_DIR) -> dict[str, tuple[bytes, str, str]]:
    """File name -> (content, content type, ETag) of every servable file, read once."""
    found: dict[str, tuple[bytes, str, str]] = {}
    for path in sorted(directory.iterdir()):
        content_type = CONTENT_TYPES.get(path.suffix)
        if content_type and path.is_file() and _NAME.fullmatch(path.name):
            body = path.read_bytes()
            found[path.name] = (body, content_type, hashlib.sha256(body).hexdigest()[:20])
    return found


def _error(exc: ApiError, extra: dict[str, str] | None = None) -> flask.Response:
    headers = {**SECURITY_HEADERS, **exc.headers, **(extra or {})}
    return flask.Response(json.dumps(exc.body()), status=exc.status, headers=headers, mimetype="application/json")


def _name(path: str) -> str | None:
    """The file a request path asks for: ``/ui`` is the page itself."""
    if path in (PREFIX, PREFIX + "/"):
        return INDEX
    if path.startswith(PREFIX + "/"):
        return path[len(PREFIX) + 1 :]
    return None


def serve(request: flask.Request) -> flask.Response:
    """``GET /ui`` and ``GET /ui/<file>``: one of the page's files, or the 404 envelope."""
    try:
        if request.method not in ("GET", "HEAD"):
            return _error(ApiError(405, "method_not_allowed", "Use GET"), {"Allow": "GET, HEAD"})
        name = _name(request.path)
        found = files().get(name or "")
        if found is None:
            return _error(ApiError(404, "not_found", "No such file"))
        body, content_type, etag = found
        response = flask.Response(body, status=200, headers=page_headers(), content_type=content_type)
        # Revalidated on every load (cheap, with the ETag), so a deployment shows at once.
        response.headers["Cache-Control"] = "no-cache"
        response.set_etag(etag)
        response.make_conditional(request)  # 304 when If-None-Match names this version
        return response
    except Exception as exc:  # the last line of defence, as in public.endpoint
        logs.error(
            "unhandled error", path=request.path, error_type=type(exc).__name__, where=traceback.format_tb(exc.__traceback__)[-3:]
        )
        return _error(internal())
