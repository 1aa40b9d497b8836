"""Helpers to run a Runtime in-process, without HTTP."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import trio

from asyncendpoints_trio import (
    EndpointsConfig,
    HandlerRegistry,
    Job,
    JobStore,
    MemoryStore,
    NewJob,
    Runtime,
)
from asyncendpoints_trio._handlers import make_spec


def registry(**handlers: Any) -> HandlerRegistry:
    reg = HandlerRegistry()
    for name, handler in handlers.items():
        if isinstance(handler, tuple):
            handler, options = handler
        else:
            options = {}
        reg.add(make_spec(name, handler, **options))
    return reg


def new(name: str, request: Any = None, *, max_retries: int = 3, key: str | None = None) -> NewJob:
    payload = orjson.dumps(request)
    return NewJob(id=str(uuid.uuid4()), name=name, payload=payload, max_retries=max_retries,
                  idempotency_key=key, fingerprint=payload.decode())


@asynccontextmanager
async def running(
    handlers: HandlerRegistry,
    config: EndpointsConfig | None = None,
    store: JobStore | None = None,
) -> AsyncIterator[Runtime]:
    rt = Runtime(store or MemoryStore(), handlers, config or EndpointsConfig())
    async with trio.open_nursery() as nursery:
        await nursery.start(rt.run)
        try:
            yield rt
        finally:
            rt.stop()
            await rt.wait_stopped()


async def wait_terminal(rt: Runtime, job_id: str, timeout: float = 60.0) -> Job:
    with trio.fail_after(timeout):
        while True:
            job = await rt.wait_for_terminal(job_id, timeout)
            assert job is not None
            if job.is_terminal:
                return job


async def start(nursery: trio.Nursery, handlers: HandlerRegistry, config: EndpointsConfig,
                store: JobStore) -> Runtime:
    """A runtime started in ``nursery``; stop it with ``await stop(rt)``."""
    rt = Runtime(store, handlers, config)
    await nursery.start(rt.run)
    return rt


async def stop(rt: Runtime) -> None:
    rt.stop()
    await rt.wait_stopped()


def restarts(rt: Runtime) -> dict[str, int]:
    return {name: actor["restarts"] for name, actor in rt.health()["actors"].items()}
