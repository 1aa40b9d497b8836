"""``map_dashboard``'s routes over plain HTTP: the page and its assets, their types and
security headers, the admin hook in front of every one, and the setup errors.
(The page in a browser: tests/test_dashboard.py.)"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

import httpx
import pytest
from quart import Response
from quart_trio import QuartTrio

from asyncendpoints_trio import AsyncEndpoints, ConfigurationError, EndpointsConfig, MemoryStore

from .conftest import client_for, serving

TOKEN = "s3cret"
ASSETS = {"app.js": "text/javascript", "dom.js": "text/javascript", "api.js": "text/javascript",
          "overview.js": "text/javascript", "jobs.js": "text/javascript",
          "job.js": "text/javascript", "job_parts.js": "text/javascript",
          "app.css": "text/css", "icon.svg": "image/svg+xml"}


def bearer_or_cookie(request: Any) -> bool | Response:
    """The hook the docs show: a bearer token for curl, the same token in a cookie for a
    browser (which cannot add headers to page loads or EventSource), the cookie only from
    the page itself or a typed address."""
    if request.headers.get("Authorization") == f"Bearer {TOKEN}":
        return True
    if "admin_token" in request.cookies:
        return request.cookies["admin_token"] == TOKEN and \
            request.headers.get("Sec-Fetch-Site", "same-origin") in ("same-origin", "none")
    if "Authorization" in request.headers:
        return False
    return Response('{"title": "Unauthorized", "status": 401}', status=401,
                    content_type="application/problem+json",
                    headers={"WWW-Authenticate": "Bearer"})


def make_app(**dashboard: Any) -> QuartTrio:
    app = QuartTrio(__name__)
    endpoints = AsyncEndpoints(app, config=EndpointsConfig(shutdown_grace=1),
                               store=MemoryStore())
    endpoints.map_admin("/ops", authorize=bearer_or_cookie)
    endpoints.map_dashboard("/ops/board", **dashboard)
    return app


AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def test_the_page_names_its_assets_and_the_admin_api() -> None:
    async with client_for(make_app(poll_interval=0.5)) as client:
        for path in ("/ops/board", "/ops/board/"):
            page = await client.get(path, headers=AUTH)
            assert page.status_code == 200, page.text
            assert page.headers["content-type"] == "text/html; charset=utf-8"
            assert page.headers["cache-control"] == "no-store"
            assert_locked_down(page.headers)
            # Where the API is comes from the server, never hard-coded in the script.
            assert 'data-api="/ops"' in page.text and 'data-poll="0.5"' in page.text
            assert '<script type="module" src="/ops/board/app.js"></script>' in page.text
            assert '<link rel="stylesheet" href="/ops/board/app.css">' in page.text
            # No inline script (the CSP would refuse it anyway) and nothing from elsewhere.
            assert re.findall(r"<script(?![^>]*\bsrc=)", page.text) == []
            assert offsite_urls(page.text) == []


async def test_assets_come_with_their_types_and_a_validator() -> None:
    async with client_for(make_app()) as client:
        for name, content_type in ASSETS.items():
            answer = await client.get(f"/ops/board/{name}", headers=AUTH)
            assert answer.status_code == 200
            assert answer.headers["content-type"].split(";")[0] == content_type
            assert answer.content, name
            assert_locked_down(answer.headers)
            assert offsite_urls(answer.text) == [], name
            etag = answer.headers["etag"]
            again = await client.get(f"/ops/board/{name}",
                                     headers={**AUTH, "If-None-Match": etag})
            assert again.status_code == 304 and again.content == b""
            # Each module's imports are files served here too.
            for target in re.findall(r'from "\./([\w.]+)"', answer.text):
                assert target in ASSETS, (name, target)
        package = resources.files("asyncendpoints_trio.http") / "dashboard"
        assert {f.name for f in package.iterdir()} - {"index.html"} == set(ASSETS)
        missing = await client.get("/ops/board/nope.js", headers=AUTH)
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"


async def test_the_hook_guards_the_page_and_every_asset() -> None:
    async with client_for(make_app()) as client:
        for path in ("/ops/board", "/ops/board/", *(f"/ops/board/{n}" for n in ASSETS),
                     "/ops/board/nope.js"):
            anonymous = await client.get(path)
            assert anonymous.status_code == 401, path
            assert anonymous.headers["www-authenticate"] == "Bearer"
            assert "data-api" not in anonymous.text and "EventSource" not in anonymous.text
            wrong = await client.get(path, headers={"Authorization": "Bearer guess"})
            assert wrong.status_code == 403, path
            assert wrong.headers["content-type"] == "application/problem+json"
            client.cookies.set("admin_token", TOKEN)
            try:
                assert (await client.get(path)).status_code in (200, 404), path
                # The cookie rides along when another site links or posts here: refused.
                cross = await client.get(path, headers={"Sec-Fetch-Site": "cross-site"})
                assert cross.status_code == 403, path
            finally:
                client.cookies.clear()
        # The same hook guards the API the page calls.
        assert (await client.get("/ops/stats")).status_code == 401
        assert (await client.get("/ops/stats", headers=AUTH)).status_code == 200


async def test_under_a_root_path_the_page_points_below_it() -> None:
    # An app mounted at /svc (Hypercorn's root_path, as behind a path-routing proxy).
    async with serving(make_app(), root_path="/svc") as url, \
            httpx.AsyncClient(base_url=url) as client:
        page = await client.get("/svc/ops/board", headers=AUTH)
        script = await client.get("/svc/ops/board/app.js", headers=AUTH)
    assert page.status_code == 200 and 'data-api="/svc/ops"' in page.text
    assert '<script type="module" src="/svc/ops/board/app.js"></script>' in page.text
    assert script.status_code == 200


def assert_locked_down(headers: Any) -> None:
    policy = headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "frame-ancestors 'none'" in policy
    assert headers["x-content-type-options"] == "nosniff"


def offsite_urls(text: str) -> list[str]:
    # The SVG namespace is a name, not a download.
    return [url for url in re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"')]*", text)
            if not url.startswith("http://www.w3.org/")]


def test_the_dashboard_needs_the_admin_api_first() -> None:
    endpoints = AsyncEndpoints(QuartTrio(__name__), store=MemoryStore())
    with pytest.raises(ConfigurationError, match="map_admin"):
        endpoints.map_dashboard()


@pytest.mark.parametrize(("rule", "options"), [
    ("/ops/<name>", {}), ("ops", {}), ("/", {}), ("/ops", {}), ("/ops/", {}),
    ("/ops/board", {"poll_interval": 0}),
    ("/ops/board", {"poll_interval": float("nan")}), ("/ops/board", {"poll_interval": True}),
])
def test_bad_dashboard_options_fail_at_setup(rule: str, options: dict[str, Any]) -> None:
    endpoints = AsyncEndpoints(QuartTrio(__name__), store=MemoryStore())
    endpoints.map_admin("/ops", authorize=bearer_or_cookie)
    with pytest.raises(ConfigurationError):
        endpoints.map_dashboard(rule, **options)


def test_one_dashboard_per_app() -> None:
    endpoints = AsyncEndpoints(QuartTrio(__name__), store=MemoryStore())
    endpoints.map_admin("/ops", authorize=bearer_or_cookie)
    endpoints.map_dashboard("/ops/board")
    with pytest.raises(ConfigurationError, match="already"):
        endpoints.map_dashboard("/ops/other")
