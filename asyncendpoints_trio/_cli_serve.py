"""What the command line runs: Hypercorn's trio worker for ``serve``, the runtime alone for
``worker``; signals drain gracefully.

With one worker process the server runs in this very process, so a signal sent to this PID
reaches the server itself; with more, Hypercorn forks that many processes, each with its own
runtime. Listening sockets are made before anything starts, so a taken port or a bad
``--bind`` is one line of error and exit 2, not an exception group after the runtime started.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

import trio

from ._backoff import backoff_delay
from ._cli import configure, load_endpoints, overrides_of, refuse_unworkable
from ._errors import ConfigurationError, StoreError
from ._logging import HYPERCORN_WORKER_LOGGING
from .http._endpoints import AsyncEndpoints, endpoints_of
from .runtime import OUTCOME_FLUSH, Runtime
from .stores._protocol import JobStore

log = logging.getLogger("asyncendpoints_trio.cli")

# Hypercorn's multi-process mode starts each worker by importing an application path; this
# variable carries our options to them (see _cli_app.py).
SPEC_ENV = "ASYNCENDPOINTS_TRIO_CLI_SPEC"
_BIND = re.compile(r"^(unix:.+|fd://\d+|\[[0-9a-fA-F:]+\]:\d{1,5}|[^:\[\]]+:\d{1,5})$")


def run_command(args: argparse.Namespace, app: Any = None) -> int:
    overrides = overrides_of(args)
    if app is not None:
        if args.workers > 1:
            raise ConfigurationError(
                "run() serves the app in this process; for several worker processes use "
                "python -m asyncendpoints_trio serve module:app --workers N")
        endpoints = configure(endpoints_of(app), overrides)
    else:
        app, endpoints = load_endpoints(args.app, overrides)
    refuse_unworkable(args, endpoints)
    if args.command == "worker":
        metrics = None
        if args.metrics_bind is not None:
            if not _BIND.match(args.metrics_bind) or args.metrics_bind.startswith(
                    ("unix:", "fd:")):
                raise ConfigurationError(f"--metrics-bind {args.metrics_bind!r}: give "
                                         "HOST:PORT")
            metrics = _metrics_server(args.metrics_bind)
        trio.run(run_worker, endpoints, args.wait_for_store, metrics)
        return 0
    if args.metrics:
        endpoints.map_metrics_once()
    return serve(args, app, endpoints)


async def ensure_store(store: JobStore, wait: float) -> None:
    """Return once the store answers; past ``wait`` seconds, one line saying which store
    and what to do."""
    deadline = trio.current_time() + wait
    failures = 0
    while True:
        try:
            with trio.fail_after(max(1.0, min(10.0, deadline - trio.current_time()))):
                await store.ping()
            if failures:
                log.info("%s answers", store.describe())
            return
        except (StoreError, trio.TooSlowError) as exc:
            failures += 1
            reason = str(exc) or type(exc).__name__
            if trio.current_time() >= deadline:
                hint = ("start it, fix --redis-url, or give it time with --wait-for-store "
                        "SECONDS") if wait == 0 else "is it up, and is the URL right?"
                raise ConfigurationError(f"{store.describe()} is unreachable ({reason}); "
                                         f"{hint}") from None
            if failures == 1:
                log.warning("%s is unreachable (%s); waiting up to %.0fs for it",
                            store.describe(), reason, wait)
            await trio.sleep(min(backoff_delay(failures, 2.0),
                                 max(0.0, deadline - trio.current_time())))


async def _first_signal(signals: AsyncIterator[int],
                        on_shutdown: Callable[[], None] | None = None) -> None:
    async for signum in signals:
        log.info("received %s; shutting down gracefully", signal.Signals(signum).name)
        if on_shutdown is not None:
            # Before Hypercorn waits for its connections: open event streams end now.
            on_shutdown()
        return


def hypercorn_config(args: argparse.Namespace, grace: float) -> Any:
    from hypercorn.config import Config

    if not _BIND.match(args.bind):
        raise ConfigurationError(f"--bind {args.bind!r}: give HOST:PORT (127.0.0.1:8000, "
                                 "[::1]:8000), unix:PATH or fd://N")
    config = Config()
    config.bind = [args.bind]
    config.worker_class = "trio"
    config.workers = args.workers
    config.graceful_timeout = grace
    config.keep_alive_timeout = args.keep_alive
    config.backlog = args.backlog
    # Hypercorn's drain gives the app's shutdown 60 s by default; ours may need more.
    config.shutdown_timeout = max(60.0, grace + OUTCOME_FLUSH + 10.0)
    # Its messages under our name and through our handlers, once ("Running on ..." was
    # printed twice, the second time by a logger called "error").
    config.errorlog = logging.getLogger("asyncendpoints_trio.server")
    config.accesslog = logging.getLogger("asyncendpoints_trio.access") if args.access_log \
        else None
    config.loglevel = args.log_level.upper()
    return config


def _sockets(config: Any, bind: str) -> Any:
    try:
        sockets = config.create_sockets()
    except (OSError, OverflowError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigurationError(f"cannot listen on {bind}: {reason}") from None
    for sock in sockets.insecure_sockets:
        sock.listen(config.backlog)
    return sockets


def serve(args: argparse.Namespace, app: Any, endpoints: AsyncEndpoints) -> int:
    config = hypercorn_config(args, endpoints.config.shutdown_grace)
    sockets = _sockets(config, args.bind)
    if args.workers == 1:
        trio.run(_serve_here, app, config, sockets, endpoints.store, args.wait_for_store,
                 endpoints.end_event_streams)
        return 0
    for sock in sockets.insecure_sockets:  # the check was all we wanted: Hypercorn binds
        sock.close()
    trio.run(ensure_store, endpoints.store, args.wait_for_store)
    from hypercorn.run import run

    os.environ[SPEC_ENV] = json.dumps({"app": args.app, "overrides": overrides_of(args),
                                       "log_level": args.log_level,
                                       "log_format": args.log_format,
                                       "metrics": args.metrics})
    config.application_path = "asyncendpoints_trio._cli_app:load()"
    config.errorlog = "-"  # the workers are new processes: a logger object would not travel
    config.logconfig_dict = HYPERCORN_WORKER_LOGGING
    return int(run(config))


async def _serve_here(app: Any, config: Any, sockets: Any, store: JobStore,
                      wait: float, on_shutdown: Callable[[], None]) -> None:
    from hypercorn.trio.run import worker_serve
    from hypercorn.utils import wrap_app

    # The receiver is open before anything starts, so an early signal is never lost to
    # the default handler (which would kill us without a drain).
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        await ensure_store(store, wait)
        await worker_serve(wrap_app(app, config.wsgi_max_body_size, None), config,
                           sockets=sockets,
                           shutdown_trigger=partial(_first_signal, signals, on_shutdown))


async def run_worker(endpoints: AsyncEndpoints, wait: float = 0.0,
                     metrics: tuple[Any, Any] | None = None) -> None:
    runtime = Runtime(endpoints.store, endpoints.handlers, endpoints.config)
    endpoints.runtime = runtime
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        await ensure_store(endpoints.store, wait)
        async with trio.open_nursery() as nursery:
            if metrics is not None:
                nursery.start_soon(serve_metrics, endpoints, *metrics)
            await nursery.start(runtime.run)
            await _first_signal(signals)
            runtime.stop()
            await runtime.wait_stopped()
            nursery.cancel_scope.cancel()
    await endpoints.store.aclose()


def _metrics_server(bind: str) -> tuple[Any, Any]:
    """Hypercorn's config and listening sockets for a worker's metrics page: made before
    anything starts, so a taken port is one line of error."""
    from hypercorn.config import Config

    config = Config()
    config.bind = [bind]
    config.errorlog = logging.getLogger("asyncendpoints_trio.server")
    config.accesslog = None
    return config, _sockets(config, bind)


async def serve_metrics(endpoints: AsyncEndpoints, config: Any, sockets: Any) -> None:
    """The worker's Prometheus page, on its own port: a minimal ASGI app under Hypercorn."""
    from hypercorn.trio.run import worker_serve
    from hypercorn.utils import wrap_app
    from prometheus_client import CONTENT_TYPE_LATEST

    from .telemetry._prometheus import MetricsPage

    page = MetricsPage(lambda: endpoints.runtime, lambda: endpoints.store)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":  # nothing to start or stop: say so
            while (message := await receive())["type"] != "lifespan.shutdown":
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        found = scope["path"] == "/metrics"
        body = await page.render() if found else b"not found: try /metrics\n"
        await send({"type": "http.response.start", "status": 200 if found else 404,
                    "headers": [(b"content-type", CONTENT_TYPE_LATEST.encode() if found
                                 else b"text/plain")]})
        await send({"type": "http.response.body", "body": body})

    await worker_serve(wrap_app(app, config.wsgi_max_body_size, "asgi"), config,
                       sockets=sockets)
