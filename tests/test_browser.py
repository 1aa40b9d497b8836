"""A browser's own ``EventSource`` against the job's event stream: headless Chromium.

The page and the stream come from one origin (our test app), as an app would serve them.
The browser's waits are Selenium's (bounded), in a thread; the server runs on Trio.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
from quart import Response
from quart_trio import QuartTrio

from asyncendpoints_trio import AsyncContext, AsyncEndpoints, EndpointsConfig, MemoryStore

from ._browser import start_browser, wait_for
from .conftest import client_for

pytestmark = pytest.mark.slow

PAGE = """<!doctype html>
<title>waiting</title>
<script>
  window.seen = [];
  const source = new EventSource(new URLSearchParams(location.search).get("job"));
  for (const kind of ["status", "progress"]) {
    source.addEventListener(kind, (e) => {
      window.seen.push([kind, e.lastEventId, JSON.parse(e.data).progress]);
    });
  }
  source.addEventListener("terminal", (e) => {
    const job = JSON.parse(e.data);
    window.seen.push(["terminal", e.lastEventId, job.status, job.result]);
    source.close();  // the stream has ended for good: no reconnect
    document.title = "done";
  });
</script>
"""


def make_app() -> tuple[QuartTrio, trio.Event]:
    app = QuartTrio(__name__)
    endpoints = AsyncEndpoints(app, config=EndpointsConfig(shutdown_grace=1,
                                                           heartbeat_interval=0.05),
                               store=MemoryStore())
    release = trio.Event()

    @endpoints.handler("Steps")
    async def steps(ctx: AsyncContext[Any]) -> dict[str, int]:
        await ctx.report_progress({"step": 1})
        await release.wait()
        return {"steps": 2}

    endpoints.map_async_post("Steps", "/steps")
    endpoints.map_job_details()

    @app.route("/page")
    async def page() -> Response:
        return Response(PAGE, content_type="text/html")

    return app, release


async def test_event_source_in_chromium_receives_the_terminal_event() -> None:
    app, release = make_app()
    async with client_for(app) as client:
        location = (await client.post("/steps", json={})).headers["location"]
        driver = await trio.to_thread.run_sync(start_browser)
        try:
            url = f"{client.base_url}/page?job={location}"
            await trio.to_thread.run_sync(driver.get, url)
            # The handler's report reaches the page before the job may end.
            await trio.to_thread.run_sync(
                wait_for, driver, "return window.seen.some(e => e[2] && e[2].step === 1)")
            release.set()
            await trio.to_thread.run_sync(wait_for, driver, "return document.title === 'done'")
            seen = await trio.to_thread.run_sync(driver.execute_script, "return window.seen")
        finally:
            await trio.to_thread.run_sync(driver.quit)
    assert seen[-1][0] == "terminal" and seen[-1][2:] == ["Completed", {"steps": 2}]
    # The report came as its own event, or with the first one if it was there already.
    assert seen[-2][0] in ("status", "progress") and seen[-2][2] == {"step": 1}
    ids = [int(event[1]) for event in seen]
    assert ids == sorted(set(ids)), seen
