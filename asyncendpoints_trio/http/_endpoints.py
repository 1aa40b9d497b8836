"""``AsyncEndpoints``: the public face. Mount it on a Quart-Trio app, register handlers,
map routes; the job runtime starts and stops with the app's serving lifecycle."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import orjson
from quart import Quart, Response, request, url_for
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from .._config import EndpointsConfig
from .._errors import ConfigurationError, NotAccepting
from .._handlers import HandlerRegistry, make_spec
from .._job import MAX_PRIORITY, MIN_PRIORITY, Job
from .._retry import RetryPolicy
from ..runtime import OUTCOME_FLUSH, Runtime
from ..runtime._statistics import RuntimeStatistics
from ..stores._memory import MemoryStore
from ..stores._protocol import JobStore, NewJob, Submitted
from ..telemetry._instrumented import InstrumentedStore
from ._access import AuthorizeHook, OwnerOf
from ._connection_fix import install_connection_fix
from ._events import EventStreams
from ._jobs import make_job_view
from ._observe import make_health_view, make_metrics_view
from ._openapi import RouteInfo, build_openapi
from ._problems import problem
from ._submit import PreQueueHook, RouteOptions, make_submit_view

F = TypeVar("F")

EXTENSION_KEY = "asyncendpoints_trio"
_PREFIX = "asyncendpoints"
_UUID_CONVERTER = re.compile(r"<uuid:([^<>]+)>")
_PLACEHOLDER_ID = "00000000-0000-4000-8000-000000000000"


class AsyncEndpoints:
    """Asynchronous request-reply endpoints for one Quart-Trio app.

    ``store`` defaults to what ``config.redis_url`` says: a ``RedisStore`` on that URL, or
    with no URL a ``MemoryStore``. ``config`` defaults to ``EndpointsConfig()``.
    """

    def __init__(
        self,
        app: Quart | None = None,
        *,
        store: JobStore | None = None,
        config: EndpointsConfig | None = None,
        openapi_path: str | None = "/openapi.json",
        title: str = "asyncendpoints-trio API",
        owner_of: OwnerOf | None = None,
    ) -> None:
        """``owner_of(access) -> str | None``: the owner claim of a request (see
        ``http/_access.py``); with it, a job is only ever shown to its owner."""
        self.config = config or EndpointsConfig()
        self.owner_of = owner_of
        self._store = store
        self._instrumented: InstrumentedStore | None = None
        self._owns_store = store is None
        self.handlers = HandlerRegistry()
        self.runtime: Runtime | None = None
        self.job_endpoint: str | None = None
        self._job_rule: str | None = None
        self._job_authorized = False
        self._routes: list[RouteInfo] = []
        self._openapi_path = openapi_path
        self._title = title
        self._openapi: bytes | None = None
        self._location_templates: dict[str, str] = {}
        self.event_streams = EventStreams()  # the job event streams open now
        self.app: Quart | None = None
        if app is not None:
            self.init_app(app)

    @property
    def store_from_config(self) -> bool:
        """True while the store can still be chosen by the config (not passed in, not
        made yet)."""
        return self._store is None

    @property
    def store(self) -> JobStore:
        """The job store, its calls timed and counted for the metrics; made from the config
        on first use (the CLI may change the config before serving, so this waits as long
        as it can). The store itself is ``store.inner``."""
        if self._instrumented is None:
            if self._store is None:
                self._store = make_store(self.config)
            if not self.config.metrics:
                return self._store
            self._instrumented = InstrumentedStore(self._store)
        return self._instrumented

    # ---- setup --------------------------------------------------------------------------

    def init_app(self, app: Quart) -> None:
        if not isinstance(app, QuartTrio):
            raise ConfigurationError(
                "AsyncEndpoints needs a quart_trio.QuartTrio app (the runtime runs on Trio)"
            )
        if EXTENSION_KEY in app.extensions:
            raise ConfigurationError("this app has an AsyncEndpoints already")
        self.app = app
        app.extensions[EXTENSION_KEY] = self
        install_connection_fix(app)
        app.before_serving(self._start)
        app.after_serving(self._stop)
        app.register_error_handler(HTTPException, self._http_error)
        if self._openapi_path is not None:
            app.add_url_rule(self._openapi_path, f"{_PREFIX}.openapi", self._openapi_view,
                             methods=["GET"])

    def handler(
        self,
        name: str,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        request_type: Any = None,
        result_type: Any = None,
        strict: bool | None = None,
    ) -> Callable[[F], F]:
        """Register the decorated coroutine (or class with ``async def handle``) for ``name``.

        ``strict``: validate request bodies in pydantic's strict mode (``"5"`` is not an
        int); ``None`` follows ``config.strict_validation`` (lax by default)."""

        def register(handler: F) -> F:
            self.register(name, handler, retry=retry, timeout=timeout,
                          request_type=request_type, result_type=result_type, strict=strict)
            return handler

        return register

    def register(self, name: str, handler: Any, **options: Any) -> None:
        self.handlers.add(make_spec(name, handler, **options))
        self._openapi = None

    def map_async_post(self, name: str, rule: str, **options: Any) -> None:
        """``POST rule`` queues a ``name`` job; see ``map_async`` for the options."""
        self.map_async("POST", name, rule, **options)

    def map_async_put(self, name: str, rule: str, **options: Any) -> None:
        self.map_async("PUT", name, rule, **options)

    def map_async_patch(self, name: str, rule: str, **options: Any) -> None:
        self.map_async("PATCH", name, rule, **options)

    def map_async_delete(self, name: str, rule: str, **options: Any) -> None:
        self.map_async("DELETE", name, rule, **options)

    def map_async(
        self, method: str, name: str, rule: str, *, hook: PreQueueHook | None = None,
        authorize: AuthorizeHook | None = None, priority: int = MIN_PRIORITY,
        client_priority: bool = True,
    ) -> None:
        """Map ``method rule`` to queue ``name`` jobs.

        ``authorize(access)`` runs first, before the body is read: ``True`` admits, ``False``
        answers 403, a response or ``Problem`` is sent instead. ``hook(submit_context)``
        runs after validation and may answer instead (``None``: queue the job).
        ``priority`` is the route's (``MIN_PRIORITY``..``MAX_PRIORITY``, higher first);
        with ``client_priority`` an ``X-Priority`` header may choose another.
        """
        app = self._require_app()
        spec = self.handlers.require(name)  # unknown job names fail here, at setup
        if isinstance(priority, bool) or not isinstance(priority, int) or \
                not MIN_PRIORITY <= priority <= MAX_PRIORITY:
            raise ConfigurationError(f"priority must be an integer from {MIN_PRIORITY} to "
                                     f"{MAX_PRIORITY}, not {priority!r}")
        endpoint = f"{_PREFIX}.{name}.{method.lower()}.{len(self._routes)}"
        options = RouteOptions(hook, authorize, priority, client_priority)
        app.add_url_rule(rule, endpoint, make_submit_view(self, name, endpoint, options),
                         methods=[method.upper()])
        self._routes.append(RouteInfo(method.upper(), rule, spec, hook is not None,
                                      authorize is not None, client_priority))
        self._openapi = None

    def map_job_details(self, rule: str = "/jobs/<uuid:job_id>", *,
                        authorize: AuthorizeHook | None = None) -> None:
        """``GET`` reads a job (``?wait=SECONDS`` long-polls), ``DELETE`` cancels it.

        ``authorize(access)`` sees the request and the job: ``True`` admits, ``False``
        answers 404 (a stranger cannot tell the job from none), a response is sent instead.
        """
        app = self._require_app()
        variables = re.findall(r"<(?:[^:<>]+:)?([^<>]+)>", rule)
        if variables != ["job_id"]:
            # Location is built from the job id alone, so no other variable can be filled.
            raise ConfigurationError(
                f"the job rule {rule!r} must have exactly one variable, <job_id> "
                f"(found {variables or 'none'})"
            )
        if self.job_endpoint is not None:
            raise ConfigurationError("map_job_details was called already")
        view = make_job_view(self, authorize)
        self._job_authorized = authorize is not None
        self.job_endpoint = f"{_PREFIX}.job"
        app.add_url_rule(rule, self.job_endpoint, view, methods=["GET", "DELETE"])
        if _UUID_CONVERTER.search(rule):
            # Without this, a malformed id would match no rule and get Quart's HTML 404.
            loose = _UUID_CONVERTER.sub(r"<\1>", rule)
            app.add_url_rule(loose, f"{_PREFIX}.job_any", view, methods=["GET", "DELETE"])
        self._job_rule = rule
        self._openapi = None

    def map_metrics(self, rule: str = "/metrics") -> None:
        """Serve the Prometheus page (text exposition) at ``rule``."""
        app = self._require_app()
        app.add_url_rule(rule, f"{_PREFIX}.metrics", make_metrics_view(self), methods=["GET"])

    def map_metrics_once(self, rule: str = "/metrics") -> None:
        """``map_metrics`` unless the app mapped its page already (``serve --metrics``)."""
        app = self._require_app()
        if f"{_PREFIX}.metrics" not in app.view_functions:
            self.map_metrics(rule)

    def map_health(self, rule: str = "/healthz") -> None:
        """Health probes at ``rule``: readiness (``200`` when the runtime accepts work and
        the store answers; ``503`` problem+json naming the reason), and with ``?live=1``
        liveness (``503`` only while an actor is crash-looping)."""
        app = self._require_app()
        app.add_url_rule(rule, f"{_PREFIX}.health", make_health_view(self), methods=["GET"])

    def _require_app(self) -> Quart:
        if self.app is None:
            raise ConfigurationError("call init_app(app) before mapping routes")
        return self.app

    # ---- lifecycle ------------------------------------------------------------------------

    async def _start(self) -> None:
        app = self._require_app()
        # Quart cancels background tasks this long after the server stops, even before
        # after_serving runs; our drain needs the grace period plus the outcome flush.
        need = self.config.shutdown_grace + OUTCOME_FLUSH + 1.0
        current = app.config.get("BACKGROUND_TASK_SHUTDOWN_TIMEOUT")
        if current is None or current < need:
            app.config["BACKGROUND_TASK_SHUTDOWN_TIMEOUT"] = need
        self.runtime = Runtime(self.store, self.handlers, self.config)
        await app.nursery.start(self.runtime.run)  # type: ignore[attr-defined]

    async def _stop(self) -> None:
        if self.runtime is not None:
            self.runtime.stop()
            await self.runtime.wait_stopped()
        if self._owns_store and self._store is not None:
            await self._store.aclose()

    # ---- used by the routes ----------------------------------------------------------------

    async def submit(self, new: NewJob) -> Submitted:
        if self.runtime is None:
            raise NotAccepting("the job runtime has not started (is the app serving?)")
        return await self.runtime.submit(new)

    async def cancel(self, job_id: str) -> Job | None:
        if self.runtime is None:
            return await self.store.cancel(job_id)
        return await self.runtime.cancel(job_id)

    def end_event_streams(self) -> None:
        """End every open job event stream (and each one opened from now on, after its
        first event): call it when the server begins to shut down, so that open streams
        do not hold the drain for the whole graceful timeout. Clients reconnect with their
        ``Last-Event-ID``. The CLI's ``serve`` calls it on SIGTERM and SIGINT."""
        self.event_streams.end_all()

    def health(self) -> dict[str, Any]:
        """Is the runtime accepting work, and how is each actor doing (state, restarts,
        last error)? Serve it from a route of your own if your platform probes health."""
        if self.runtime is None:
            return {"accepting": False, "actors": {}}
        return self.runtime.health()

    def location_of(self, job_id: str) -> str | None:
        """The job's URL path (for ``Location``), or None without ``map_job_details``.

        ``url_for`` runs once per mount point (root path) and is then filled in: it was a
        sixth of the submit route's own time.
        """
        if self.job_endpoint is None:
            return None
        root = request.root_path
        template = self._location_templates.get(root)
        if template is None:
            template = self._location_templates[root] = url_for(self.job_endpoint,
                                                                job_id=_PLACEHOLDER_ID)
        return template.replace(_PLACEHOLDER_ID, job_id)

    def run(self, argv: Sequence[str] | None = None) -> int:
        """Serve this app as ``python -m asyncendpoints_trio serve`` would, with that
        command's options from ``argv`` (default: ``sys.argv[1:]``); returns the exit code.
        ``sys.exit(endpoints.run())`` at the end of a script makes it a service."""
        from .._cli import run

        if self.app is None:
            raise ConfigurationError("call init_app(app) before run()")
        return run(self.app, argv)

    def statistics(self) -> RuntimeStatistics | None:
        """The runtime's typed snapshot (see ``Runtime.statistics``); ``None`` before the
        app serves (the store's own: ``store.statistics()``)."""
        return None if self.runtime is None else self.runtime.statistics()

    # ---- views -------------------------------------------------------------------------

    async def _openapi_view(self) -> Response:
        if self._openapi is None:
            self._openapi = orjson.dumps(build_openapi(
                self._title, self._routes, self._job_rule,
                guarded=self._job_authorized or self.owner_of is not None))
        return Response(self._openapi, content_type="application/json")

    async def _http_error(self, exc: HTTPException) -> Any:
        rule = request.url_rule
        if rule is not None and (rule.endpoint or "").startswith(_PREFIX + "."):
            return problem(exc.code or 500, exc.description, code=type(exc).__name__)
        return exc


def make_store(config: EndpointsConfig) -> JobStore:
    if config.redis_url:
        from ..stores._redis import RedisStore

        return RedisStore.from_url(config.redis_url, queue=config.queue,
                                   retention=config.retention)
    return MemoryStore(retention=config.retention, max_bytes=config.memory_budget)


def endpoints_of(app: Quart) -> AsyncEndpoints:
    """The ``AsyncEndpoints`` mounted on ``app`` (used by the CLI)."""
    found = getattr(app, "extensions", {}).get(EXTENSION_KEY)
    if not isinstance(found, AsyncEndpoints):
        raise ConfigurationError("this app has no AsyncEndpoints mounted")
    return found
