"""Command line: ``python -m asyncendpoints_trio serve module:app`` and ``worker module:app``.

``serve`` runs the app under Hypercorn's trio worker. With ``--workers 1`` (the default) the
server runs in this very process, so a signal sent to this PID reaches the server itself;
with more, Hypercorn forks that many processes, each with its own runtime.
``worker`` runs only the job runtime of the app's ``AsyncEndpoints``: no HTTP.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
import typing
from collections.abc import AsyncIterator, Sequence
from functools import partial
from typing import Any

import trio

from ._errors import ConfigurationError
from .http._endpoints import AsyncEndpoints, endpoints_of
from .runtime import OUTCOME_FLUSH, Runtime

log = logging.getLogger("asyncendpoints_trio.cli")

# Hypercorn's multi-process mode starts each worker by importing an application path; this
# variable carries our options to them (see _cli_app.py).
_SPEC_ENV = "ASYNCENDPOINTS_TRIO_CLI_SPEC"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asyncendpoints-trio",
                                     description="Run an asyncendpoints-trio service.")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("app", help="the Quart-Trio app, as module:attribute")
        p.add_argument("--graceful-timeout", type=float, default=None, metavar="SECONDS",
                       help="on shutdown, how long running jobs (and open HTTP requests) may "
                       "take to finish (default: the app's shutdown_grace, 10 s)")
        p.add_argument("--log-level", default="INFO")
        p.add_argument("--redis-url", default=None, metavar="URL",
                       help="share jobs through Redis (default: $REDIS_URL; without either, "
                       "the in-memory store)")
        p.add_argument("--queue", default=None, metavar="NAME",
                       help="Redis key space; instances that share work share it "
                       "(default: the app's, 'default')")
        p.add_argument("--lease-ttl", type=float, default=None, metavar="SECONDS",
                       help="how long a claimed job stays ours without a heartbeat")
        p.add_argument("--heartbeat", type=float, default=None, metavar="SECONDS",
                       help="how often held leases are renewed (at most half the lease TTL)")

    serve = sub.add_parser("serve", help="serve HTTP and run jobs (Hypercorn, trio worker)")
    common(serve)
    serve.add_argument("--bind", default="127.0.0.1:8000", metavar="HOST:PORT")
    serve.add_argument("--workers", type=int, default=1, metavar="N",
                       help="processes; each runs its own runtime (default 1)")
    serve.add_argument("--keep-alive", type=float, default=5.0, metavar="SECONDS",
                       help="close an idle keep-alive connection after this long (default 5)")
    serve.add_argument("--no-workers", action="store_true",
                       help="API only: accept and serve jobs, run no handlers")
    worker = sub.add_parser("worker", help="run jobs only, no HTTP")
    common(worker)
    return parser


def overrides_of(args: argparse.Namespace) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if args.graceful_timeout is not None:
        found["shutdown_grace"] = args.graceful_timeout
    if getattr(args, "no_workers", False):
        found["run_workers"] = False
    if args.redis_url:
        from .redis import parse_url

        parse_url(args.redis_url)  # a bad URL is an error now, not at the first request
        found["redis_url"] = args.redis_url
    if args.queue is not None:
        found["queue"] = args.queue
    if args.lease_ttl is not None:
        found["lease_ttl"] = args.lease_ttl
    if args.heartbeat is not None:
        found["heartbeat_interval"] = args.heartbeat
    return found


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def load_endpoints(app_path: str, overrides: dict[str, Any]) -> tuple[Any, AsyncEndpoints]:
    from hypercorn.utils import NoAppError, load_application

    try:
        wrapper = load_application(app_path, 0)
    except NoAppError as exc:
        raise ConfigurationError(str(exc)) from None
    app = typing.cast(Any, wrapper).app  # ASGIWrapper keeps the framework app here
    endpoints = endpoints_of(app)
    if "lease_ttl" in overrides and "heartbeat_interval" not in overrides:
        # Only the TTL given: renew often enough for it rather than refuse the default.
        overrides["heartbeat_interval"] = min(endpoints.config.heartbeat_interval,
                                              overrides["lease_ttl"] / 3)
    if "redis_url" not in overrides and os.environ.get("REDIS_URL"):
        if endpoints.store_from_config:
            overrides["redis_url"] = os.environ["REDIS_URL"]
            from .redis import parse_url

            parse_url(overrides["redis_url"])
        else:
            log.warning("REDIS_URL is set, but this app brings its own store; ignoring it")
    if {"redis_url", "queue"} & overrides.keys() and not endpoints.store_from_config:
        raise ConfigurationError(
            "this app passes its own store to AsyncEndpoints (or used it at import), so "
            "--redis-url and --queue cannot choose one; drop them, or let the "
            "app's config choose the store")
    if overrides:
        endpoints.config = dataclasses.replace(endpoints.config, **overrides)
    return app, endpoints


async def _first_signal(signals: AsyncIterator[int]) -> None:
    async for signum in signals:
        log.info("received %s; shutting down gracefully", signal.Signals(signum).name)
        return


async def _serve_until_signal(app: Any, config: Any) -> None:
    from hypercorn.trio import serve as hypercorn_serve

    # The receiver is open before anything starts, so an early signal is never lost to
    # the default handler (which would kill us without a drain).
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        await hypercorn_serve(app, config, shutdown_trigger=partial(_first_signal, signals))


def _hypercorn_config(args: argparse.Namespace, grace: float) -> Any:
    from hypercorn.config import Config

    config = Config()
    config.bind = [args.bind]
    config.worker_class = "trio"
    config.workers = args.workers
    config.graceful_timeout = grace
    config.keep_alive_timeout = args.keep_alive
    # Hypercorn gives the app's shutdown 60 s by default; our drain may need more.
    config.shutdown_timeout = max(60.0, grace + OUTCOME_FLUSH + 10.0)
    config.accesslog = None
    config.loglevel = args.log_level.upper()
    return config


def serve(args: argparse.Namespace) -> int:
    overrides = overrides_of(args)
    if args.workers < 1:
        raise ConfigurationError("--workers must be >= 1")
    if not 0 < args.keep_alive < float("inf"):
        raise ConfigurationError(f"--keep-alive must be a number of seconds > 0, not "
                                 f"{args.keep_alive}")
    app, endpoints = load_endpoints(args.app, overrides)
    config = _hypercorn_config(args, endpoints.config.shutdown_grace)
    if args.workers == 1:
        trio.run(_serve_until_signal, app, config)
        return 0
    from hypercorn.run import run

    os.environ[_SPEC_ENV] = json.dumps({"app": args.app, "overrides": overrides,
                                        "log_level": args.log_level})
    config.application_path = "asyncendpoints_trio._cli_app:load()"
    return int(run(config))


async def run_worker(endpoints: AsyncEndpoints) -> None:
    runtime = Runtime(endpoints.store, endpoints.handlers, endpoints.config)
    endpoints.runtime = runtime
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(runtime.run)
            await _first_signal(signals)
            runtime.stop()
            await runtime.wait_stopped()
    await endpoints.store.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(args.log_level)
    sys.path.insert(0, os.getcwd())
    try:
        if args.command == "serve":
            return serve(args)
        _, endpoints = load_endpoints(args.app, overrides_of(args))
        trio.run(run_worker, endpoints)
        return 0
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
