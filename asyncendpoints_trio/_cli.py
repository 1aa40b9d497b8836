"""Command line: ``python -m asyncendpoints_trio serve module:app`` and ``worker module:app``.

Every mistake ends in one line on stderr and exit code 2, never a traceback: a bad option, an
app that cannot be imported, a setup that can never work, a port that is taken, a store that
cannot be reached at start.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import typing
from collections.abc import Sequence
from typing import Any

from ._errors import ConfigurationError
from ._logging import configure_logging
from .http._endpoints import AsyncEndpoints, endpoints_of

log = logging.getLogger("asyncendpoints_trio.cli")

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

_SERVE_EXAMPLES = """\
examples:
  python -m asyncendpoints_trio serve examples.quickstart:app
  python -m asyncendpoints_trio serve myapp:app --bind 0.0.0.0:8000 \\
      --redis-url redis://localhost:6379/0 --workers 4 --wait-for-store 30
  python -m asyncendpoints_trio serve myapp:app --no-workers --redis-url redis://redis:6379/0
"""

_WORKER_EXAMPLES = """\
examples:
  python -m asyncendpoints_trio worker myapp:app --redis-url redis://localhost:6379/0
  REDIS_URL=redis://redis:6379/0 python -m asyncendpoints_trio worker myapp:app --queue reports
"""


class _Help(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown after each option's help (unless it says its default itself); the
    examples' layout kept."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default is None or action.default is False or \
                action.default is argparse.SUPPRESS or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:
        # argparse's own: usage and the message; "error:" first, for people and scripts.
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _level(text: str) -> str:
    if text.lower() not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(LOG_LEVELS)}")
    return text.lower()


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number >= 0")
    return value


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return int(text)


def _replicas(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return int(text)


def _positive_seconds(text: str) -> float:
    value = _seconds(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a number of seconds > 0")
    return value


def parser() -> argparse.ArgumentParser:
    from . import __version__

    top = _Parser(prog="asyncendpoints-trio", formatter_class=_Help,
                  description="Run an asyncendpoints-trio service: HTTP and jobs (serve), "
                  "or jobs only (worker).", epilog=_SERVE_EXAMPLES + "\n" + _WORKER_EXAMPLES)
    top.add_argument("--version", action="version", version=f"asyncendpoints-trio {__version__}")
    sub = top.add_subparsers(dest="command", required=True, metavar="{serve,worker}",
                             parser_class=_Parser)

    def common(p: argparse.ArgumentParser, what: str) -> None:
        p.add_argument("app", help="the Quart-Trio app with AsyncEndpoints, as module:attribute")
        p.add_argument("--redis-url", default=None, metavar="URL",
                       help="the Redis store to share jobs through (redis://, rediss://, "
                       "unix://); default: $REDIS_URL, or the app's own choice")
        p.add_argument("--queue", default=None, metavar="NAME",
                       help="the Redis key space; instances that share work share it "
                       "(default: the app's, 'default')")
        p.add_argument("--partitions", type=_count, default=None, metavar="P",
                       help="Redis: spread the queue over P hash tags (Cluster slots); every "
                       "instance of a queue must use the same P (default: the app's, 1)")
        p.add_argument("--replicas-ack", type=_replicas, default=None, metavar="N",
                       help="Redis replicas that must confirm a submit before its 202, and "
                       "an outcome (WAIT); 0: none (default: the app's, 0)")
        p.add_argument("--replicas-timeout", type=_positive_seconds, default=None,
                       metavar="SECONDS",
                       help="how long that WAIT may take; a shortfall answers 503 "
                       "(default: the app's, 1)")
        p.add_argument("--wait-for-store", type=_seconds, default=0.0, metavar="SECONDS",
                       help="at start, how long to wait for the store to answer; 0 fails at "
                       "once with a message naming it")
        p.add_argument("--graceful-timeout", type=_seconds, default=None, metavar="SECONDS",
                       help=f"on SIGINT/SIGTERM, how long {what} may take to finish before "
                       "they are cancelled (default: the app's shutdown_grace, 10)")
        p.add_argument("--lease-ttl", type=_seconds, default=None, metavar="SECONDS",
                       help="how long a claimed job stays this instance's without a renewal "
                       "(default: the app's, 30)")
        p.add_argument("--heartbeat", type=_seconds, default=None, metavar="SECONDS",
                       help="how often held leases are renewed, at most half the lease TTL "
                       "(default: the app's, 10)")
        p.add_argument("--log-level", type=_level, default="info", metavar="LEVEL",
                       help=f"one of {', '.join(LOG_LEVELS)}")
        p.add_argument("--log-format", choices=("text", "json"), default="text",
                       help="text lines, or JSON lines for a log pipeline (our loggers "
                       "and Hypercorn's)")

    serve = sub.add_parser(
        "serve", formatter_class=_Help, epilog=_SERVE_EXAMPLES,
        help="serve the app's HTTP API and run its jobs (Hypercorn, trio worker)",
        description="Serve the app's HTTP API with Hypercorn's trio worker, and run its jobs "
        "in the same processes.")
    common(serve, "running jobs and open HTTP requests")
    serve.add_argument("--bind", default="127.0.0.1:8000", metavar="HOST:PORT",
                       help="where to listen (port 0: any free port, logged at start)")
    serve.add_argument("--workers", type=_count, default=1, metavar="N",
                       help="processes, each with its own runtime; more than one needs Redis")
    serve.add_argument("--no-workers", action="store_true",
                       help="API only: accept and serve jobs, run no handlers (needs Redis "
                       "and a worker elsewhere)")
    serve.add_argument("--keep-alive", type=_seconds, default=5.0, metavar="SECONDS",
                       help="close an idle keep-alive connection after this long")
    serve.add_argument("--backlog", type=_count, default=100, metavar="N",
                       help="the listen backlog: connections the kernel queues for us")
    serve.add_argument("--access-log", action="store_true",
                       help="log one line per HTTP request (logger asyncendpoints_trio.access)")
    serve.add_argument("--metrics", action="store_true",
                       help="serve the Prometheus page at /metrics (if the app maps none)")
    worker = sub.add_parser(
        "worker", formatter_class=_Help, epilog=_WORKER_EXAMPLES,
        help="run the app's jobs only, from a shared Redis store: no HTTP",
        description="Run the app's job handlers, claiming jobs from a Redis store that API "
        "instances (serve) submit to. Serves no HTTP.")
    common(worker, "running jobs")
    worker.add_argument("--metrics-bind", default=None, metavar="HOST:PORT",
                        help="serve the Prometheus page at http://HOST:PORT/metrics")
    return top


def overrides_of(args: argparse.Namespace) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if args.graceful_timeout is not None:
        found["shutdown_grace"] = args.graceful_timeout
    if getattr(args, "no_workers", False):
        found["run_workers"] = False
    if args.redis_url:
        from .redis._factory import check_url

        check_url(args.redis_url)  # a bad URL is an error now, not at the first request
        found["redis_url"] = args.redis_url
    if args.queue is not None:
        found["queue"] = args.queue
    if args.partitions is not None:
        found["partitions"] = args.partitions
    if args.replicas_ack is not None:
        found["replicas_ack"] = args.replicas_ack
    if args.replicas_timeout is not None:
        found["replicas_timeout"] = args.replicas_timeout
    if args.lease_ttl is not None:
        found["lease_ttl"] = args.lease_ttl
    if args.heartbeat is not None:
        found["heartbeat_interval"] = args.heartbeat
    return found


def load_endpoints(app_path: str, overrides: dict[str, Any]) -> tuple[Any, AsyncEndpoints]:
    from hypercorn.utils import NoAppError, load_application

    try:
        wrapper = load_application(app_path, 0)
    except NoAppError as exc:
        raise ConfigurationError(str(exc)) from None
    except ImportError as exc:
        raise ConfigurationError(f"cannot import {app_path}: {exc}") from None
    except Exception as exc:  # the app's module itself failed while being imported
        raise ConfigurationError(f"importing {app_path} failed: {type(exc).__name__}: "
                                 f"{exc}") from None
    app = typing.cast(Any, wrapper).app  # ASGIWrapper keeps the framework app here
    return app, configure(endpoints_of(app), overrides)


def configure(endpoints: AsyncEndpoints, overrides: dict[str, Any]) -> AsyncEndpoints:
    """Apply command-line choices to the app's endpoints, or say why they cannot apply."""
    if "lease_ttl" in overrides and "heartbeat_interval" not in overrides:
        # Only the TTL given: renew often enough for it rather than refuse the default.
        overrides["heartbeat_interval"] = min(endpoints.config.heartbeat_interval,
                                              overrides["lease_ttl"] / 3)
    if "redis_url" not in overrides and os.environ.get("REDIS_URL"):
        if endpoints.store_from_config:
            from .redis._factory import check_url

            check_url(os.environ["REDIS_URL"])
            overrides["redis_url"] = os.environ["REDIS_URL"]
        else:
            log.warning("REDIS_URL is set, but this app brings its own store; ignoring it")
    if _STORE_OPTIONS.keys() & overrides.keys() and not endpoints.store_from_config:
        flags = [flag for name, flag in _STORE_OPTIONS.items() if name in overrides]
        given = flags[0] if len(flags) == 1 else f"{', '.join(flags[:-1])} and {flags[-1]}"
        raise ConfigurationError(
            "this app passes its own store to AsyncEndpoints (or used it at import), so "
            f"{given} cannot choose one; drop them, or let the app's config choose the store")
    if overrides:
        endpoints.config = dataclasses.replace(endpoints.config, **overrides)
    if endpoints.store_from_config and not endpoints.config.redis_url and \
            endpoints.config.replicas_ack > 0:
        raise ConfigurationError(
            f"--replicas-ack {endpoints.config.replicas_ack} needs the Redis store: the "
            "in-memory store has no replicas to wait for; pass --redis-url (or set REDIS_URL)")
    return endpoints


# Options that set up the store the config makes (the config's name -> the flag).
_STORE_OPTIONS = {"redis_url": "--redis-url", "queue": "--queue", "partitions": "--partitions",
                  "replicas_ack": "--replicas-ack", "replicas_timeout": "--replicas-timeout"}


def shares_jobs(endpoints: AsyncEndpoints) -> bool:
    """Can processes share this app's jobs? Not through an in-memory store."""
    from .stores._memory import MemoryStore
    from .telemetry._instrumented import unwrapped

    if endpoints.store_from_config:
        return bool(endpoints.config.redis_url)
    return not isinstance(unwrapped(endpoints.store), MemoryStore)


def refuse_unworkable(args: argparse.Namespace, endpoints: AsyncEndpoints) -> None:
    if shares_jobs(endpoints):
        return
    fix = "pass --redis-url (or set REDIS_URL) so that processes share one store"
    if args.command == "worker":
        raise ConfigurationError(
            "a worker runs jobs that other processes submit, and the in-memory store is "
            f"this process's alone; {fix}")
    if args.no_workers:
        raise ConfigurationError(
            "--no-workers with the in-memory store: jobs would be queued and never run; "
            f"{fix}, and run a worker beside it")
    if args.workers > 1:
        raise ConfigurationError(
            f"--workers {args.workers} with the in-memory store: each process would have jobs "
            "of its own, and a GET could reach a process that does not have the job; "
            f"{fix}, or serve with one worker")


def main(argv: Sequence[str] | None = None, *, app: Any = None) -> int:
    """The command line. With ``app``, serve that app object (``run``) instead of
    importing one; its argument is then not taken."""
    from ._cli_serve import run_command

    arguments = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(arguments)
    configure_logging(args.log_level, args.log_format)
    sys.path.insert(0, os.getcwd())
    try:
        return run_command(args, app)
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def run(app: Any, argv: Sequence[str] | None = None) -> int:
    """Serve ``app`` (a Quart-Trio app with ``AsyncEndpoints``) as ``serve`` would, taking
    the command line's options from ``argv`` (default: ``sys.argv[1:]``). For a script's
    ``if __name__ == "__main__": sys.exit(asyncendpoints_trio.run(app))``."""
    options = list(sys.argv[1:] if argv is None else argv)
    return main(["serve", "<this app>", *options], app=app)
