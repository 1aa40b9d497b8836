"""The jobs dashboard: one HTML page and its assets, served behind the admin hook.

Everything the page needs ships in ``http/dashboard/`` (hand-written HTML, CSS and script;
no CDN, no build step), so it works on a network without the internet. The page is a
template with three holes, filled per request: where its assets are, where the admin API
is (both under the app's root path, so a mounted app works), and how often it polls.

Every answer carries a strict Content-Security-Policy (scripts, styles and connections
from this origin only, no inline script, no framing): the page shows job data that came
from clients, and the policy keeps a payload from ever running as script.
"""

from __future__ import annotations

import hashlib
import html
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import PurePosixPath

from quart import Quart, Response, request

from .._errors import ConfigurationError
from ._admin import AdminOptions, admitted
from ._problems import Problem

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
# Every file in dashboard/ but the page itself is served as it is, typed by its suffix.
ASSET_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
PAGE = "index.html"


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def _files() -> Traversable:
    return resources.files(__package__) / "dashboard"


def load_assets() -> dict[str, Asset]:
    assets = {}
    for file in _files().iterdir():
        content_type = ASSET_TYPES.get(PurePosixPath(file.name).suffix)
        if content_type is None or not file.is_file():
            continue
        body = file.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        assets[file.name] = Asset(body, content_type, etag)
    return assets


def check_poll_interval(poll_interval: float) -> float:
    if isinstance(poll_interval, bool) or not isinstance(poll_interval, int | float) or \
            not math.isfinite(poll_interval) or not 0.1 <= poll_interval <= 3600:
        raise ConfigurationError(f"poll_interval must be a number of seconds from 0.1 to "
                                 f"3600, not {poll_interval!r}")
    return float(poll_interval)


def mount_dashboard(app: Quart, rule: str, *, admin: AdminOptions, poll_interval: float,
                    endpoint: str) -> list[str]:
    """Add the page (at ``rule`` and ``rule/``) and its assets (``rule/<name>``) to
    ``app``; returns the rules added."""
    base = rule.rstrip("/")
    if not rule.startswith("/") or "<" in rule or not base or base == admin.prefix:
        # "/" would put its files over the whole app; the admin prefix, over the API's.
        raise ConfigurationError(f"the dashboard rule must be a fixed path starting with "
                                 f"'/', other than '/' and the admin prefix, not {rule!r}")
    if endpoint in app.view_functions:
        raise ConfigurationError("map_dashboard was called already")
    poll = check_poll_interval(poll_interval)
    api = admin.prefix
    template = (_files() / PAGE).read_text(encoding="utf-8")
    assets = load_assets()

    async def page_view() -> Response:
        answer = await admitted(admin)
        if answer is not None:
            return answer
        root = request.root_path
        page = (template.replace("{{base}}", html.escape(root + base))
                .replace("{{api}}", html.escape(root + api))
                .replace("{{poll}}", f"{poll:g}"))
        return Response(page, content_type="text/html; charset=utf-8", headers={
            **SECURITY_HEADERS, "Cache-Control": "no-store"})

    async def asset_view(name: str) -> Response:
        answer = await admitted(admin)
        if answer is not None:
            return answer
        asset = assets.get(name)
        if asset is None:
            return Problem(404, detail=f"the dashboard has no file {name[:100]!r}",
                           code="NotFound").to_response()
        headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache", "ETag": asset.etag}
        if asset.etag in request.headers.get("If-None-Match", ""):
            return Response(b"", status=304, headers=headers)
        return Response(asset.body, content_type=asset.content_type, headers=headers)

    view: Callable[[], Awaitable[Response]] = page_view
    app.add_url_rule(base, endpoint, view, methods=["GET"])
    app.add_url_rule(base + "/", endpoint + "_slash", view, methods=["GET"])
    app.add_url_rule(base + "/<path:name>", endpoint + "_asset", asset_view, methods=["GET"])
    return [base, base + "/", base + "/<path:name>"]
