"""Operators' routes: the Prometheus page and the health probes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
import trio
from prometheus_client import CONTENT_TYPE_LATEST
from quart import Response, request

from ..telemetry._prometheus import MetricsPage
from ._problems import problem

if TYPE_CHECKING:
    from ._endpoints import AsyncEndpoints

PING_TIMEOUT = 1.0  # seconds the readiness probe waits for the store


def make_metrics_view(endpoints: AsyncEndpoints) -> Callable[[], Awaitable[Response]]:
    page = MetricsPage(lambda: endpoints.runtime, lambda: endpoints.store)

    async def metrics_view() -> Response:
        return Response(await page.render(), content_type=CONTENT_TYPE_LATEST)

    return metrics_view


def crash_looping(health: dict[str, Any]) -> list[str]:
    return sorted(name for name, actor in health.get("actors", {}).items()
                  if actor.get("crash_looping"))


async def readiness(endpoints: AsyncEndpoints) -> tuple[bool, str, str, dict[str, Any]]:
    """(ready, code, reason, body) for the readiness probe."""
    health = endpoints.health()
    body: dict[str, Any] = {"accepting": health["accepting"], "actors": health["actors"]}
    if not health["accepting"]:
        return False, "NotAccepting", "the job runtime does not accept work now", body
    looping = crash_looping(health)
    if looping:
        return False, "ActorsFailing", f"crash-looping: {', '.join(looping)}", body
    try:
        with trio.fail_after(PING_TIMEOUT):
            await endpoints.store.ping()
    except (Exception, trio.TooSlowError):
        body["store"] = "unreachable"
        return False, "StoreUnavailable", "the job store does not answer", body
    body["store"] = "ok"
    return True, "", "", body


def make_health_view(endpoints: AsyncEndpoints) -> Callable[[], Awaitable[Response]]:
    async def health_view() -> Response:
        retry_after = {"Retry-After": str(endpoints.config.retry_after)}
        if request.args.get("live") not in (None, "", "0"):
            # Liveness: the process runs and its actors are not crash-looping. A store
            # outage is no reason to restart the process, so it is not asked about.
            looping = crash_looping(endpoints.health())
            if looping:
                return problem(503, f"crash-looping: {', '.join(looping)}",
                               code="ActorsFailing", headers=retry_after)
            return Response(orjson.dumps({"status": "alive"}),
                            content_type="application/json")
        ready, code, reason, body = await readiness(endpoints)
        if not ready:
            return problem(503, reason, code=code, headers=retry_after, **body)
        return Response(orjson.dumps({"status": "ok", **body}),
                        content_type="application/json")

    return health_view
