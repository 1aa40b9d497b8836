"""Fixtures shared by the whole suite: a real Hypercorn on a loopback port, a real client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator
from contextlib import asynccontextmanager
from functools import partial

import httpx
import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve
from quart_trio import QuartTrio


@asynccontextmanager
async def serving(app: QuartTrio, *, graceful_timeout: float = 5.0,
                  root_path: str = "") -> AsyncIterator[str]:
    """Serve ``app`` with Hypercorn's trio worker on 127.0.0.1:<free port>; yield its URL.

    Leaving the block shuts the server down the way a signal would (graceful), which runs
    the app's after_serving hooks and so the runtime's drain.
    """
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.graceful_timeout = graceful_timeout
    config.root_path = root_path  # the app mounted below a path, as behind a proxy
    config.accesslog = None
    config.errorlog = None
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        urls = await nursery.start(
            partial(hypercorn_serve, app, config, shutdown_trigger=shutdown.wait)
        )
        try:
            yield urls[0]
        finally:
            shutdown.set()


@asynccontextmanager
async def client_for(app: QuartTrio, **kwargs: object) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(app, **kwargs) as url, httpx.AsyncClient(base_url=url, timeout=10) as c:  # type: ignore[arg-type]
        yield c


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the test item (``item.rep_call``), so that a fixture's
    teardown can tell a failed test (the browser tests save screenshots then)."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
