"""Retake the dashboard screenshots in docs/pages/img/ (docs/pages/dashboard.md).

    python docs/screenshot.py [--out docs/pages/img]

Fills a memory store with a quarter of an hour of jobs (the store's wall clock is moved a
minute at a time, so the throughput chart has fifteen bars), leaves some running, queued,
waiting for a retry and canceled, serves the dashboard on a loopback port and photographs
the overview and a failed job's page with headless Chromium (Debian's ``chromium`` and
``chromium-driver``; Selenium drives it).
"""

from __future__ import annotations

import argparse
import random
import shutil
import time
from functools import partial
from pathlib import Path
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import Request
from quart_trio import QuartTrio

from asyncendpoints_trio import (
    AsyncContext,
    AsyncEndpoints,
    EndpointsConfig,
    MemoryStore,
    RetryPolicy,
)

WIDTH = 1200
TOKEN = "screenshot"


class MovableClock:
    """``time.time()`` plus an offset the script moves, to write a past quarter hour."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


class ReportError(Exception):
    pass


class Holds:
    """Jobs that run until the photographs are taken."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.running = 0
        self.all_running = trio.Event()
        self.stop = trio.Event()

    async def hold(self) -> None:
        self.running += 1
        if self.running == self.count:
            self.all_running.set()
        await self.stop.wait()


def make_app(clock: MovableClock, holds: Holds) -> tuple[QuartTrio, AsyncEndpoints]:
    app = QuartTrio(__name__)
    config = EndpointsConfig(concurrency=4, prefetch=0, shutdown_grace=0.5, lease_ttl=2.0,
                             heartbeat_interval=0.2, expose_stack_traces=True,
                             instance_id="web-1")
    endpoints = AsyncEndpoints(app, config=config, store=MemoryStore(wall_clock=clock))

    @endpoints.handler("ProcessData", retry=RetryPolicy(max_retries=0))
    async def process_data(ctx: AsyncContext[Any]) -> dict[str, int]:
        rows = int(ctx.request["rows"])
        if ctx.request.get("hold"):
            await ctx.report_progress({"done": rows // 3, "total": rows})
            await holds.hold()
        if ctx.request.get("bad"):
            try:
                raise KeyError(f"column 'amount' in row {rows}")
            except KeyError as cause:
                raise ValueError("the upload is not a valid ledger") from cause
        return {"rows": rows}

    @endpoints.handler("SendInvoice", retry=RetryPolicy(max_retries=2, base_delay=600))
    async def send_invoice(ctx: AsyncContext[Any]) -> str:
        if ctx.request.get("bad"):
            raise ReportError("the mail relay refused the message (452 too many recipients)")
        return "sent"

    @endpoints.handler("ResizeImage", retry=RetryPolicy(max_retries=0))
    async def resize_image(ctx: AsyncContext[Any]) -> dict[str, int]:
        return {"width": 640, "height": 480}

    endpoints.map_job_details()

    def admin(request: Request) -> bool:
        return request.cookies.get("admin_token") == TOKEN

    endpoints.map_admin("/admin", authorize=admin)
    endpoints.map_dashboard("/admin/ui")
    return app, endpoints


async def fill(endpoints: AsyncEndpoints, clock: MovableClock, holds: Holds) -> str:
    """Fifteen minutes of history, then the jobs of now; returns a failed job's id."""
    rng = random.Random(7)
    failed = ""
    for minute in range(15):
        clock.offset = (minute - 14) * 60.0
        ids = []
        for _ in range(rng.randint(8, 16)):
            ids.append((await endpoints.submit("ResizeImage", {})).id)
        for _ in range(rng.randint(3, 7)):
            bad = rng.random() < 0.15
            job = await endpoints.submit("ProcessData", {"rows": rng.randint(10, 900),
                                                         "bad": bad})
            ids.append(job.id)
            failed = job.id if bad else failed
        for job_id in ids:
            await endpoints.wait(job_id, 10)
    clock.offset = 0.0
    flaky = await endpoints.submit("SendInvoice", {"bad": True})  # waits for its retry
    for rows in (1200, 4800, 600, 9000):  # running, holding every slot
        await endpoints.submit("ProcessData", {"rows": rows, "hold": True})
    with trio.fail_after(10):
        await holds.all_running.wait()
        async with endpoints.store.watch(flaky.id) as watch:
            job = watch.current
            while job is not None and job.status.value != "Scheduled":
                job = await watch.changed(job.version)
    for _ in range(3):
        await endpoints.submit("SendInvoice", {})  # queued behind them
    doomed = await endpoints.submit("ResizeImage", {})
    await endpoints.cancel(doomed.id)
    return failed


def photograph(url: str, failed: str, out: Path) -> list[Path]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                 "--disable-gpu", f"--window-size={WIDTH},900", "--force-device-scale-factor=1",
                 "--hide-scrollbars"):
        options.add_argument(flag)
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser") or ""
    driver = webdriver.Chrome(options=options,
                              service=Service(executable_path=shutil.which("chromedriver")))
    saved = []
    try:
        driver.get(f"{url}/admin/ui/icon.svg")
        driver.add_cookie({"name": "admin_token", "value": TOKEN, "path": "/"})
        for name, fragment, ready in (
            ("dashboard.png", "#/", "return document.querySelector('#instances tbody')"
             ".textContent.includes('4 of 4')"),
            ("dashboard-job.png", f"#/jobs/{failed}",
             "return document.querySelector('#error pre')"),
        ):
            driver.get(f"{url}/admin/ui{fragment}")
            WebDriverWait(driver, 20).until(lambda d, r=ready: d.execute_script(r))
            driver.execute_script("document.querySelectorAll('details').forEach("
                                  "(d) => { d.open = true; }); document.activeElement.blur()")
            height = driver.execute_script("return document.documentElement.scrollHeight")
            # The whole page in one picture: a viewport as tall as the page (to a limit).
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
                "width": WIDTH, "height": min(int(height), 1500), "deviceScaleFactor": 1,
                "mobile": False})
            path = out / name
            driver.save_screenshot(str(path))
            saved.append(path)
            driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    finally:
        driver.quit()
    return saved


async def main(out: Path) -> None:
    clock = MovableClock()
    holds = Holds(4)
    app, endpoints = make_app(clock, holds)
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = config.errorlog = None
    done = trio.Event()
    async with trio.open_nursery() as nursery:
        urls = await nursery.start(partial(serve, app, config, shutdown_trigger=done.wait))
        try:
            failed = await fill(endpoints, clock, holds)
            for path in await trio.to_thread.run_sync(photograph, urls[0], failed, out):
                print(f"{path}: {path.stat().st_size // 1024} KiB")
        finally:
            holds.stop.set()
            done.set()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "pages" / "img")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    trio.run(main, args.out)
