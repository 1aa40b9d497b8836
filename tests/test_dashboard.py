"""The dashboard in headless Chromium against a real Hypercorn and the real admin API:
counts that match the store, a job page that follows its job live, Cancel and Retry from
the page, the hook locking the page out, a phone-sized screen, the keyboard, contrast.

The browser runs in a thread (Selenium's waits are bounded); the server runs on Trio. A
failed test leaves a screenshot, the page's HTML and its console in ``ARTIFACTS_DIR``
(default ``test-artifacts/``): see tests/_browser.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import trio
from quart import Response
from quart_trio import QuartTrio

from asyncendpoints_trio import (
    AsyncContext,
    AsyncEndpoints,
    EndpointsConfig,
    MemoryStore,
    RetryPolicy,
)
from asyncendpoints_trio.stores._protocol import JobStore

from ._browser import Browser, browser_factory
from .conftest import client_for

__all__ = ["browser_factory"]  # the fixture, imported to be found

pytestmark = pytest.mark.slow

TOKEN = "dashboard-test-token"
VIEWER = "read-only-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
POLL = 0.2  # the page's refresh interval here, seconds


def token_or_cookie(request: Any) -> bool | Response:
    """As docs/pages/dashboard.md: the page, its fetches and its event stream come with the
    cookie and a same-origin ``Sec-Fetch-Site`` (a typed address: ``none``). A viewer's
    cookie may look, not act."""
    if request.headers.get("Authorization") == f"Bearer {TOKEN}":
        return True
    if request.cookies.get("admin_token") == VIEWER:
        return request.method == "GET"
    if request.cookies.get("admin_token") == TOKEN:
        return request.headers.get("Sec-Fetch-Site") in ("same-origin", "none")
    return Response('{"title": "Unauthorized", "status": 401, "detail": "sign in first"}',
                    status=401, content_type="application/problem+json",
                    headers={"WWW-Authenticate": "Bearer"})


@dataclass
class Gates:
    """Jobs that wait for the test: ``Hold`` runs until its gate opens."""

    gates: dict[str, trio.Event] = field(default_factory=dict)
    failing: set[str] = field(default_factory=set)

    def gate(self, key: str) -> trio.Event:
        return self.gates.setdefault(key, trio.Event())


def make_app(gates: Gates, store: JobStore, *, concurrency: int = 1, streams: bool = True
             ) -> QuartTrio:
    """``streams=False``: the hook refuses event streams, as a proxy that cannot pass them
    on would break them."""
    app = QuartTrio(__name__)
    # A short lease: an instance renews its presence (and the load it shows) about every
    # 3/4 of it.
    config = EndpointsConfig(shutdown_grace=1, heartbeat_interval=0.05, lease_ttl=1.0,
                             concurrency=concurrency, prefetch=0, expose_stack_traces=True)
    endpoints = AsyncEndpoints(app, config=config, store=store)

    @endpoints.handler("Hold", retry=RetryPolicy(max_retries=0))
    async def hold(ctx: AsyncContext[Any]) -> dict[str, str]:
        await ctx.report_progress({"done": 1, "total": 4})
        await gates.gate(ctx.request["key"]).wait()
        return {"held": ctx.request["key"]}

    @endpoints.handler("Quick", retry=RetryPolicy(max_retries=0))
    async def quick(ctx: AsyncContext[Any]) -> str:
        return "done"

    @endpoints.handler("Flaky", retry=RetryPolicy(max_retries=0))
    async def flaky(ctx: AsyncContext[Any]) -> str:
        if ctx.request["key"] in gates.failing:
            gates.failing.discard(ctx.request["key"])  # fails once, then works
            try:
                raise KeyError("row 17")
            except KeyError as cause:
                raise ValueError("could not read the input") from cause
        return "worked"

    @endpoints.handler("Echo", retry=RetryPolicy(max_retries=0))
    async def echo(ctx: AsyncContext[Any]) -> Any:
        # What clients send comes back in results and error messages, as it does in apps.
        if ctx.request.get("fail"):
            raise ValueError(ctx.request["text"])
        return {"text": ctx.request["text"]}

    for name in ("Hold", "Quick", "Flaky", "Echo"):
        endpoints.map_async_post(name, f"/{name.lower()}")
    endpoints.map_job_details()
    def authorize(request: Any) -> bool | Response:
        if not streams and "text/event-stream" in request.headers.get("Accept", ""):
            return False
        return token_or_cookie(request)

    endpoints.map_admin("/admin", authorize=authorize)
    endpoints.map_dashboard("/admin/ui", poll_interval=POLL)
    return app


@dataclass
class Site:
    client: httpx.AsyncClient
    gates: Gates
    store: JobStore

    async def submit(self, name: str, key: str = "") -> str:
        answer = await self.client.post(f"/{name.lower()}", json={"key": key})
        assert answer.status_code == 202, answer.text
        job_id: str = answer.json()["id"]
        return job_id

    async def job(self, job_id: str) -> dict[str, Any]:
        answer = await self.client.get(f"/admin/jobs/{job_id}", headers=AUTH)
        assert answer.status_code == 200, answer.text
        job: dict[str, Any] = answer.json()
        return job

    async def until(self, job_id: str, *statuses: str) -> dict[str, Any]:
        with trio.fail_after(10):
            async with self.store.watch(job_id) as watch:
                job = watch.current
                assert job is not None, job_id
                while job.status.value not in statuses:
                    job = await watch.changed(job.version)
        return await self.job(job_id)

    async def stats(self) -> dict[str, Any]:
        answer = await self.client.get("/admin/stats", headers=AUTH)
        assert answer.status_code == 200
        stats: dict[str, Any] = answer.json()
        return stats

    @property
    def url(self) -> str:
        return f"{self.client.base_url}/admin/ui"


StoreFactory = Callable[[], JobStore]


@pytest.fixture
def make_store() -> StoreFactory:
    """The memory store here; tests/redis/test_redis_dashboard.py runs some of these
    tests again on Redis."""
    return MemoryStore


@asynccontextmanager
async def site(make_store: StoreFactory, **options: Any) -> AsyncIterator[Site]:
    gates = Gates()
    store = make_store()
    app = make_app(gates, store, **options)
    try:
        async with client_for(app) as client:
            yield Site(client, gates, store)
    finally:
        for gate in gates.gates.values():
            gate.set()  # no job holds the drain


async def signed_in(start: Callable[..., Browser], s: Site, fragment: str = "",
                    **size: int) -> Browser:
    """A browser with the admin cookie, on the dashboard at ``fragment``."""
    browser = await trio.to_thread.run_sync(lambda: start(**size))
    await browser.get(f"{s.url}/app.css")  # any page of the origin, to set its cookie on
    await browser.run(browser.driver.add_cookie, {"name": "admin_token", "value": TOKEN,
                                                  "path": "/"})
    await browser.console_errors()  # that 401 is no fault of the page's
    await browser.get(s.url + fragment)
    return browser


TEXT = "return (document.getElementById(arguments[0]) || {}).textContent || ''"
STATUS_IS = "return document.getElementById('job-status')?.dataset.status === arguments[0]"


async def test_overview_counts_match_the_store_and_follow_it_live(browser_factory: Any,
                                                                  make_store: StoreFactory) -> None:
    async with site(make_store) as s:
        for _ in range(3):
            await s.until(await s.submit("Quick"), "Completed")
        s.gates.failing.add("f")
        await s.until(await s.submit("Flaky", "f"), "Failed")
        running = await s.submit("Hold", "a")
        await s.until(running, "InProgress")
        waiting = [await s.submit("Quick") for _ in range(2)]
        assert (await s.client.delete(f"/admin/jobs/{waiting[1]}", headers=AUTH)
                ).status_code == 200
        expected = {"Queued": 1, "Scheduled": 0, "InProgress": 1, "Completed": 3,
                    "Failed": 1, "Canceled": 1}
        assert (await s.stats())["byStatus"] == expected

        browser = await signed_in(browser_factory, s)
        read_counts = """
            const out = {};
            for (const div of document.querySelectorAll('#counts [data-status]'))
              out[div.dataset.status] = div.querySelector('dd').textContent;
            return out;"""
        shown = await browser.wait(f"""
            const c = (() => {{ {read_counts} }})();
            return c.Completed === '3' && c.Queued === '1' ? c : null;""")
        assert shown == {k: str(v) for k, v in expected.items()}
        by_name = await browser.js("""
            const cell = (n, s) => document.querySelector(
              `#by-name tr[data-name="${n}"] td[data-status="${s}"]`).textContent;
            return [cell('Quick', 'Completed'), cell('Quick', 'Queued'),
                    cell('Flaky', 'Failed'), cell('Hold', 'InProgress')];""")
        assert by_name == ["3", "1", "1", "1"]
        await browser.wait("return document.querySelector('#instances tbody').textContent"
                           ".includes('1 of 1 slots busy')")
        assert "failure rate 25.0%" in await browser.js(TEXT, "rate-summary")
        assert await browser.js("return document.querySelectorAll('#chart rect').length") > 0
        await browser.js("window.sameDocument = true")

        s.gates.gate("a").set()  # the held job ends, the queued one runs
        await s.until(waiting[0], "Completed")
        await browser.wait("""return document.querySelector(
            '#counts [data-status="Completed"] dd').textContent === '5'""")
        assert await browser.js("return window.sameDocument === true")  # no reload
        assert await browser.console_errors() == []  # no CSP refusal, no script error


async def test_a_job_page_follows_its_job_from_queued_to_completed(
        browser_factory: Any, make_store: StoreFactory) -> None:
    async with site(make_store) as s:
        blocker = await s.submit("Hold", "first")
        await s.until(blocker, "InProgress")
        job_id = await s.submit("Hold", "second")
        browser = await signed_in(browser_factory, s, f"#/jobs/{job_id}")
        await browser.wait(STATUS_IS, "Queued")
        assert await browser.js(TEXT, "job-stream") == "(live)"  # the event stream
        await browser.js("window.sameDocument = true")

        s.gates.gate("first").set()
        await browser.wait(STATUS_IS, "InProgress")
        await browser.wait("return document.getElementById('progress-bar')?.value === 25")
        # The running attempt is shown as such.
        await browser.wait("return document.querySelector('#attempts tbody').textContent"
                           ".includes('running')")
        s.gates.gate("second").set()
        await browser.wait(STATUS_IS, "Completed")
        assert await browser.js("return window.sameDocument === true")
        assert '"held": "second"' in await browser.js(TEXT, "result")
        timeline = await browser.js(TEXT, "timeline")
        assert "Submitted" in timeline and "Ended Completed" in timeline
        assert (await s.job(job_id))["status"] == "Completed"
        assert await browser.console_errors() == []


async def test_without_an_event_stream_the_job_page_polls(browser_factory: Any,
                                                          make_store: StoreFactory) -> None:
    async with site(make_store, streams=False) as s:
        blocker = await s.submit("Hold", "first")
        await s.until(blocker, "InProgress")
        job_id = await s.submit("Quick")
        browser = await signed_in(browser_factory, s, f"#/jobs/{job_id}")
        await browser.wait(STATUS_IS, "Queued")
        await browser.wait("return document.getElementById('job-stream').textContent "
                           "=== '(polling)'")
        assert await browser.js("return document.getElementById('alert').hidden")
        s.gates.gate("first").set()
        await browser.wait(STATUS_IS, "Completed")


ROWS = "return document.querySelectorAll('#jobs tbody tr[data-job]').length"


async def test_the_job_list_filters_pages_and_finds_by_id(browser_factory: Any,
                                                          make_store: StoreFactory) -> None:
    async with site(make_store, concurrency=4) as s:
        done = [await s.submit("Quick") for _ in range(27)]
        s.gates.failing.add("f")
        failed = await s.submit("Flaky", "f")
        for job_id in [*done, failed]:
            await s.until(job_id, "Completed", "Failed")
        browser = await signed_in(browser_factory, s, "#/jobs")
        await browser.wait(f"{ROWS} === 25")  # a page of 25, newest first
        assert await browser.js("return document.querySelector('#jobs tbody tr').dataset.job"
                                ) == failed
        await browser.click("#next")
        await browser.wait(f"{ROWS} === 3")
        assert await browser.js(TEXT, "page-no") == "Page 2"
        assert await browser.js("return document.getElementById('next').disabled")
        await browser.click("#prev")
        await browser.wait(f"{ROWS} === 25")

        await browser.js("document.getElementById('f-status').value = 'Failed'")
        await browser.click("#filters button[type=submit]")
        await browser.wait(f"{ROWS} === 1")
        assert await browser.js("return location.hash") == "#/jobs?status=Failed"
        await browser.js("location.hash = '#/jobs?name=Quick'")  # a deep link
        await browser.wait(f"{ROWS} === 25")
        assert await browser.js("return document.getElementById('f-name').value") == "Quick"

        await browser.js("document.getElementById('find-id').value = 'not-an-id'")
        await browser.click("#find button[type=submit]")
        assert "UUID" in await browser.wait(
            "return document.getElementById('find-error').textContent")
        await browser.js("document.getElementById('find-id').value = arguments[0]",
                         failed.upper())
        await browser.click("#find button[type=submit]")
        await browser.wait(STATUS_IS, "Failed")
        assert await browser.js("return location.hash") == f"#/jobs/{failed}"
        assert await browser.console_errors() == []


async def test_a_hidden_tab_pauses_the_polling(browser_factory: Any,
                                               make_store: StoreFactory) -> None:
    async with site(make_store) as s:
        browser = await signed_in(browser_factory, s)
        await browser.wait("return document.getElementById('live-state').textContent"
                           ".startsWith('Live')")
        # Headless Chromium's tab is never hidden: the page is told it is, as a browser
        # tells it when the user switches tabs.
        set_hidden = """
            Object.defineProperty(document, 'hidden', {value: arguments[0],
                                                       configurable: true});
            document.dispatchEvent(new Event('visibilitychange'));"""
        await browser.js(set_hidden, True)
        await browser.wait("return document.getElementById('live-state').textContent"
                           " === 'Paused while this tab is hidden'")
        assert await browser.js(TEXT, "live-news") == "Paused while this tab is hidden"
        s.gates.failing.add("h")
        await s.until(await s.submit("Flaky", "h"), "Failed")
        await browser.js(set_hidden, False)  # shown again: it catches up at once
        await browser.wait("""return document.querySelector(
            '#counts [data-status="Failed"] dd').textContent === '1'""")
        assert (await browser.js(TEXT, "live-state")).startswith("Live")


async def test_cancel_on_a_running_job_ends_it_canceled(browser_factory: Any,
                                                        make_store: StoreFactory) -> None:
    async with site(make_store) as s:
        job_id = await s.submit("Hold", "forever")
        await s.until(job_id, "InProgress")
        browser = await signed_in(browser_factory, s, f"#/jobs/{job_id}")
        await browser.wait(STATUS_IS, "InProgress")

        await browser.click("#cancel")
        await browser.wait("return document.getElementById('confirm').open")
        # The safe answer has the focus; the dialog names the job.
        assert await browser.js("return document.activeElement.id") == "confirm-no"
        assert job_id in await browser.js(TEXT, "confirm-text")
        await browser.click("#confirm-yes")
        await browser.wait(STATUS_IS, "Canceled")
        assert not await browser.js("return document.getElementById('confirm').open")
        assert await browser.console_errors() == []
        assert (await s.job(job_id))["status"] == "Canceled"
        # The stream may bring the end before the DELETE's own answer is shown.
        result = await browser.wait("""const text = document.getElementById('action-result')
            .textContent; return !text.startsWith('Sending') && text""")
        assert result.startswith(("Canceled", "Cancel requested")), result
        # The audit entry, from the admin detail fetched again after the terminal event.
        await browser.wait("return document.getElementById('timeline').textContent"
                           ".includes('Cancel requested')")
        assert await browser.console_errors() == []


async def test_retry_on_a_failed_job_brings_it_back(browser_factory: Any,
                                                    make_store: StoreFactory) -> None:
    async with site(make_store) as s:
        s.gates.failing.add("once")
        job_id = await s.submit("Flaky", "once")
        await s.until(job_id, "Failed")
        browser = await signed_in(browser_factory, s, f"#/jobs/{job_id}")
        await browser.wait(STATUS_IS, "Failed")
        # The error chain, with its stack traces.
        error = await browser.js(TEXT, "error")
        assert "ValueError" in error and "could not read the input" in error
        assert "Caused by builtins.KeyError" in error and "Stack trace" in error
        assert await browser.js("return document.querySelectorAll('#error pre').length") == 2

        await browser.click("#retry")
        await browser.wait("return document.getElementById('confirm').open")
        await browser.click("#confirm-yes")
        await browser.wait(STATUS_IS, "Completed")
        result = await browser.js(TEXT, "action-result")
        assert result.startswith("Retried: the job is") and "again" in result, result
        job = await s.job(job_id)
        assert job["status"] == "Completed" and job["result"] == "worked"
        assert [a["action"] for a in job["admin"]["audit"]] == ["retry"]
        await browser.wait("return document.getElementById('timeline').textContent"
                           ".includes('Retried')")
        # Retry is offered only for Failed and Canceled jobs: now it says why not.
        await browser.click("#retry")
        assert "Only a Failed or Canceled job" in await browser.js(TEXT, "action-result")
        assert not await browser.js("return document.getElementById('confirm').open")
        assert await browser.console_errors() == []


async def test_an_ended_job_page_sees_a_retry_made_elsewhere(browser_factory: Any,
                                                            make_store: StoreFactory) -> None:
    async with site(make_store) as s:
        s.gates.failing.add("elsewhere")
        job_id = await s.submit("Flaky", "elsewhere")
        await s.until(job_id, "Failed")
        browser = await signed_in(browser_factory, s, f"#/jobs/{job_id}")
        await browser.wait(STATUS_IS, "Failed")
        await browser.js("window.sameDocument = true")
        # Another operator (here: curl's equivalent) retries it.
        assert (await s.client.post(f"/admin/jobs/{job_id}/retry", headers=AUTH)
                ).status_code == 200
        await browser.wait(STATUS_IS, "Completed")
        assert await browser.js("return window.sameDocument === true")
        assert await browser.console_errors() == []


async def test_the_hook_locks_the_page_and_the_api_out(browser_factory: Any,
                                                       make_store: StoreFactory) -> None:
    async with site(make_store) as s:
        browser = await trio.to_thread.run_sync(browser_factory)
        await browser.get(s.url)
        # The hook's 401 instead of the page: no dashboard, no script, no data.
        assert await browser.js("return document.getElementById('main')") is None
        assert "sign in first" in await browser.js("return document.body.textContent")
        statuses = await browser.js("""return Promise.all(
            ['/admin/stats', '/admin/jobs', '/admin/ui/app.js'].map(
              (p) => fetch(p, {credentials: 'same-origin'}).then((r) => r.status)))""")
        assert statuses == [401, 401, 401]

        # With the cookie the page works; once it is gone the page says so, in place.
        await browser.run(browser.driver.add_cookie, {"name": "admin_token", "value": TOKEN,
                                                      "path": "/"})
        await browser.get(s.url)
        await browser.wait("return document.querySelector('#counts dd')?.textContent === '0'")
        await browser.run(browser.driver.delete_all_cookies)
        alert = await browser.wait("""const a = document.getElementById('alert');
            return !a.hidden && a.textContent""")
        assert "Sign-in needed" in alert and "401" in alert and "sign in first" in alert
        assert await browser.js("return document.getElementById('main').children.length") == 0


async def test_a_refused_action_is_reported_and_the_page_stays(browser_factory: Any,
                                                                make_store: StoreFactory) -> None:
    async with site(make_store) as s:
        s.gates.failing.add("v")
        job_id = await s.submit("Flaky", "v")
        await s.until(job_id, "Failed")
        browser = await trio.to_thread.run_sync(browser_factory)
        await browser.get(f"{s.url}/app.css")
        await browser.run(browser.driver.add_cookie, {"name": "admin_token", "value": VIEWER,
                                                      "path": "/"})
        await browser.get(f"{s.url}#/jobs/{job_id}")
        await browser.wait(STATUS_IS, "Failed")
        await browser.click("#retry")
        await browser.wait("return document.getElementById('confirm').open")
        await browser.click("#confirm-yes")
        result = await browser.wait(
            "return document.getElementById('action-result').textContent.includes('403')"
            " && document.getElementById('action-result').textContent")
        assert result.startswith("Retry refused (403)"), result
        assert await browser.js("return document.getElementById('alert').hidden")
        assert (await s.job(job_id))["status"] == "Failed"


MARKUP = "<img src=x onerror=window.pwned=1><script>window.pwned=2</script>"


async def test_client_text_is_shown_as_text_never_run(browser_factory: Any,
                                                     make_store: StoreFactory) -> None:
    async with site(make_store) as s:
        failed = await s.client.post("/echo", json={"text": MARKUP, "fail": True})
        done = await s.client.post("/echo", json={"text": MARKUP})
        for answer in (failed, done):
            await s.until(answer.json()["id"], "Completed", "Failed")
        browser = await signed_in(browser_factory, s, f"#/jobs/{failed.json()['id']}")
        assert MARKUP in await browser.wait(
            "return document.querySelector('#error pre') && "
            "document.getElementById('error').textContent")
        await browser.js("location.hash = arguments[0]", f"#/jobs/{done.json()['id']}")
        assert MARKUP in await browser.wait(
            "return document.getElementById('result').textContent.includes('img') && "
            "document.getElementById('result').textContent")
        assert await browser.js("return document.querySelectorAll('main img, main script')"
                                ".length") == 0
        assert await browser.js("return window.pwned === undefined")
        assert await browser.console_errors() == []  # nothing even tried to run


NO_SIDEWAYS_SCROLL = """return [document.documentElement.scrollWidth, window.innerWidth]"""


async def test_a_narrow_screen_needs_no_sideways_scrolling(browser_factory: Any,
                                                           make_store: StoreFactory) -> None:
    async with site(make_store) as s:
        s.gates.failing.add("n")
        failed = await s.submit("Flaky", "n")
        await s.until(failed, "Failed")
        browser = await signed_in(browser_factory, s, width=375, height=800)
        await browser.wait("return document.querySelector('#counts dd')?.textContent !== '…'")
        views = {"#/": "return document.querySelector('#counts dd').textContent !== '…'",
                 "#/jobs": "return document.querySelector('#jobs tbody a')",
                 f"#/jobs/{failed}": "return document.querySelector('#error pre')"}
        for view, ready in views.items():
            await browser.js("location.hash = arguments[0]", view)
            await browser.wait(ready)
            # Open every stack trace: long lines must wrap, not widen the page.
            await browser.js("document.querySelectorAll('details').forEach("
                             "(d) => { d.open = true; })")
            width, viewport = await browser.js(NO_SIDEWAYS_SCROLL)
            assert viewport == 375 and width <= viewport, (view, width)


async def test_the_keyboard_reaches_filters_and_buttons(browser_factory: Any,
                                                        make_store: StoreFactory) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    async with site(make_store) as s:
        job_id = await s.submit("Hold", "k")
        await s.until(job_id, "InProgress")
        browser = await signed_in(browser_factory, s, "#/jobs")
        await browser.wait("return document.querySelector('#jobs tbody a')")

        def tab_through(count: int) -> list[list[Any]]:
            seen = []
            for _ in range(count):
                ActionChains(browser.driver).send_keys(Keys.TAB).perform()
                seen.append(browser.driver.execute_script("""
                    const e = document.activeElement;
                    if (e === document.body) return ['(left the page)', 'n/a'];
                    return [e.id || e.textContent.trim().slice(0, 40),
                            getComputedStyle(e).outlineStyle];"""))
            return seen

        seen = await browser.run(tab_through, 14)
        reached = [name for name, _ in seen]
        for control in ("f-status", "f-name", "find-id"):
            assert control in reached, reached
        assert "Apply filters" in reached and "Open job" in reached, reached
        assert all(outline != "none" for _, outline in seen), repr(seen)  # focus is visible

        # A live update that rebuilds the list leaves the focus where it was.
        await browser.js("document.querySelector('#jobs tbody a').focus()")
        await s.until(await s.submit("Quick"), "Queued")
        await browser.wait("return document.querySelectorAll('#jobs tbody a').length === 2")
        assert await browser.js("return document.activeElement.dataset.key") == f"job-{job_id}"

        # A job page: both actions by keyboard; Escape declines the confirmation.
        await browser.js("location.hash = arguments[0]", f"#/jobs/{job_id}")
        await browser.wait(STATUS_IS, "InProgress")
        reached = [name for name, _ in await browser.run(tab_through, 12)]
        assert "cancel" in reached and "retry" in reached, reached
        await browser.js("document.getElementById('cancel').focus()")
        await browser.run(lambda: ActionChains(browser.driver).send_keys(Keys.ENTER).perform())
        await browser.wait("return document.getElementById('confirm').open")
        await browser.run(lambda: ActionChains(browser.driver).send_keys(Keys.ESCAPE).perform())
        await browser.wait("return !document.getElementById('confirm').open")
        await browser.wait("return document.getElementById('action-result').textContent "
                           "=== 'Cancel not sent.'")
        assert (await s.job(job_id))["status"] == "InProgress"


CONTRAST = """
const parse = (c) => c.match(/[\\d.]+/g).map(Number);
const lum = ([r, g, b]) => {
  const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
  return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
};
const background = (e) => {
  for (; e; e = e.parentElement) {
    const c = parse(getComputedStyle(e).backgroundColor);
    if (c.length < 4 || c[3] > 0) return c;
  }
  return [255, 255, 255];
};
const worst = [];
for (const e of document.querySelectorAll('body *')) {
  const own = [...e.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
  if (!own || !e.getClientRects().length || e.closest('[hidden], .sr-only, svg')) continue;
  const [a, b] = [lum(parse(getComputedStyle(e).color)), lum(background(e))];
  const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  worst.push([Math.round(ratio * 100) / 100, e.tagName, e.textContent.trim().slice(0, 30)]);
}
worst.sort((x, y) => x[0] - y[0]);
return worst.slice(0, 3);
"""


async def test_text_contrast_is_at_least_4_5_to_1(browser_factory: Any,
                                                  make_store: StoreFactory) -> None:
    async with site(make_store, concurrency=2) as s:
        # One job in each status but Scheduled, so that every badge is measured.
        await s.until(await s.submit("Hold", "c1"), "InProgress")
        s.gates.failing.add("x")
        failed = await s.submit("Flaky", "x")
        await s.until(failed, "Failed")
        await s.until(await s.submit("Quick"), "Completed")
        await s.until(await s.submit("Hold", "c2"), "InProgress")
        await s.until(await s.submit("Quick"), "Queued")
        canceled = await s.submit("Quick")
        await s.client.delete(f"/admin/jobs/{canceled}", headers=AUTH)
        await s.until(canceled, "Canceled")
        browser = await signed_in(browser_factory, s, "#/jobs")
        await browser.wait("return document.querySelectorAll('#jobs tbody tr').length >= 6")
        for fragment, ready in (("#/jobs", "#jobs tbody a"), ("#/", "#by-name tbody a"),
                                (f"#/jobs/{failed}", "#error pre")):
            await browser.js("location.hash = arguments[0]", fragment)
            await browser.wait("return document.querySelector(arguments[0])", ready)
            worst = await browser.js(CONTRAST)
            assert worst and worst[0][0] >= 4.5, (fragment, worst)
