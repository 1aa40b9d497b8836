"""``AsyncEndpoints``: the public face. Mount it on a Quart-Trio app, register handlers,
map routes; the job runtime starts and stops with the app's serving lifecycle."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import orjson
from quart import Quart, Response, request, url_for
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from .._config import EndpointsConfig
from .._errors import ConfigurationError, NotAccepting
from .._handlers import HandlerRegistry, make_spec
from .._job import MAX_PRIORITY, MIN_PRIORITY, Job
from .._retry import RetryPolicy
from ..runtime import OUTCOME_FLUSH, Runtime
from ..runtime._statistics import RuntimeStatistics
from ..stores._admin import admin_of
from ..stores._memory import MemoryStore
from ..stores._protocol import JobStore, NewJob, Submitted
from ..telemetry._instrumented import InstrumentedStore
from ..telemetry._tracing import send_span
from ._access import AuthorizeHook, OwnerOf
from ._admin import ActorOf, AdminHook, AdminOptions, make_admin_views
from ._connection_fix import install_connection_fix
from ._dashboard import mount_dashboard
from ._events import EventStreams
from ._idempotency import InFlight
from ._inprocess import new_job
from ._jobs import make_job_view
from ._observe import make_health_view, make_metrics_view
from ._openapi import RouteInfo, build_openapi
from ._operations import make_operation_view
from ._ours import OurPaths
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
        self.operation_endpoint: str | None = None
        self._operation_rule: str | None = None
        self._operation_templates: dict[str, str] = {}
        # The paths whose 404 and 405 answers are ours (problem+json), not the host app's.
        self._ours = OurPaths()
        self.in_flight = InFlight()  # keys of submits still being processed here
        self.event_streams = EventStreams()  # the job event streams open now
        self.admin: AdminOptions | None = None  # set by map_admin
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
            elif isinstance(self._store, MemoryStore):
                refuse_replicas_without_redis(self.config)
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
        self._ours.add(rule)
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
        _one_job_id(rule, "job")
        if self.job_endpoint is not None:
            raise ConfigurationError("map_job_details was called already")
        view = make_job_view(self, authorize)
        self._job_authorized = self._job_authorized or authorize is not None
        self.job_endpoint = f"{_PREFIX}.job"
        self._add_job_rule(app, rule, self.job_endpoint, view, ["GET", "DELETE"])
        self._job_rule = rule
        self._openapi = None

    def map_operation_status(self, rule: str = "/operations/<uuid:job_id>", *,
                             authorize: AuthorizeHook | None = None) -> None:
        """``GET`` shows a job as Azure's operation status monitor (``NotStarted``,
        ``Running``, ``Succeeded``, ``Failed``, ``Canceled``); once mapped, every submit's
        ``202`` names it in ``Operation-Location`` (an absolute URL), so off-the-shelf
        pollers such as ``azure-core``'s ``LROPoller`` drive our jobs. ``authorize`` works
        as on ``map_job_details``."""
        app = self._require_app()
        _one_job_id(rule, "operation")
        if self.operation_endpoint is not None:
            raise ConfigurationError("map_operation_status was called already")
        self._job_authorized = self._job_authorized or authorize is not None
        self.operation_endpoint = f"{_PREFIX}.operation"
        self._add_job_rule(app, rule, self.operation_endpoint,
                           make_operation_view(self, authorize), ["GET"])
        self._operation_rule = rule
        self._openapi = None

    def _add_job_rule(self, app: Quart, rule: str, endpoint: str, view: Any,
                      methods: list[str]) -> None:
        app.add_url_rule(rule, endpoint, view, methods=methods)
        if _UUID_CONVERTER.search(rule):
            # Without this, a malformed id would match no rule and get a 404 of routing's,
            # not the JobNotFound that an unknown id gets.
            loose = _UUID_CONVERTER.sub(r"<\1>", rule)
            app.add_url_rule(loose, f"{endpoint}_any", view, methods=methods)
        # Everything below the rule's fixed part (/jobs/<id>/anything) is ours too.
        self._ours.add(rule, subtree=True)

    def map_admin(self, prefix: str = "/admin", *, authorize: AdminHook,
                  actor: ActorOf | None = None, show_payloads: bool = False) -> None:
        """The admin API under ``prefix`` (see docs/pages/admin.md): list, inspect, retry
        and cancel jobs; the fleet's instances; queue statistics.

        ``authorize(request)`` is required and runs before every admin route: ``True``
        admits, ``False`` answers 403, a response is sent instead. ``actor(request)``
        names who acts, for the audit entries of retries and cancels. Payloads (which may
        hold personal data) are shown only with ``show_payloads``.
        """
        app = self._require_app()
        if authorize is None or not callable(authorize):
            raise TypeError("map_admin needs authorize=hook: there is no admin API "
                            "without an authorization check")
        if self.admin is not None:
            raise ConfigurationError("map_admin was called already")
        if not prefix.startswith("/") or prefix.endswith("/") or "<" in prefix:
            raise ConfigurationError(f"the admin prefix {prefix!r} must start with '/', "
                                     "not end with one, and have no variables")
        self.admin = AdminOptions(prefix, authorize, actor, show_payloads)
        views = make_admin_views(self, self.admin)
        base = f"{_PREFIX}.admin"
        app.add_url_rule(f"{prefix}/jobs", f"{base}.jobs", views["jobs"], methods=["GET"])
        app.add_url_rule(f"{prefix}/jobs/<job_id>", f"{base}.job", views["job"],
                         methods=["GET", "DELETE"])
        app.add_url_rule(f"{prefix}/jobs/<job_id>/retry", f"{base}.retry", views["retry"],
                         methods=["POST"])
        app.add_url_rule(f"{prefix}/instances", f"{base}.instances", views["instances"],
                         methods=["GET"])
        app.add_url_rule(f"{prefix}/stats", f"{base}.stats", views["stats"], methods=["GET"])
        self._ours.add(f"{prefix}/<path:rest>", subtree=True)
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

    def map_dashboard(self, rule: str = "/admin/ui", *, poll_interval: float = 2.0) -> None:
        """Serve the jobs dashboard (overview, job list, job pages with Cancel and Retry)
        at ``rule``, behind ``map_admin``'s authorize hook; the page uses that admin API.
        ``poll_interval``: seconds between the page's refreshes of lists and counts."""
        app = self._require_app()
        if self.admin is None:
            raise ConfigurationError(
                "map_dashboard needs map_admin(prefix, authorize=...) first: the page uses "
                "the admin API and is served behind its authorize hook")
        for added in mount_dashboard(app, rule, admin=self.admin, poll_interval=poll_interval,
                                     endpoint=f"{_PREFIX}.dashboard"):
            self._ours.add(added)

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

    async def submit(self, name: str, value: Any = None, *,
                     idempotency_key: str | None = None, priority: int = MIN_PRIORITY,
                     delay: float | None = None, job_id: str | None = None) -> Job:
        """Queue a ``name`` job from Python, without HTTP; returns the job as stored.

        ``value`` is validated against the handler's request type (lax, as pydantic's
        ``validate_python``): ``pydantic.ValidationError`` if it does not fit.
        ``idempotency_key``: the same key with the same value returns the existing job;
        with another value raises ``IdempotencyConflict``. In-process keys are apart
        from every HTTP route's. ``priority`` 0..9; ``delay``: seconds before it may
        start; ``job_id``: a UUID to use as the job's id (the same id with the same value
        again returns that job). Raises ``NotAccepting`` before the app serves.
        """
        spec = self.handlers.require(name)
        with send_span(name, self.config.queue) as span:
            new = new_job(self.config, spec, value, idempotency_key=idempotency_key,
                          priority=priority, delay=delay, job_id=job_id)
            submitted = await self.enqueue(new)
            if span.is_recording():
                span.set_attribute("messaging.message.id", submitted.job.id)
        return submitted.job

    async def wait(self, job_id: str, timeout: float) -> Job | None:
        """The job once it is final, or as it stands after ``timeout`` seconds (check
        ``job.is_terminal``); ``None`` for no such job (or one removed after retention)."""
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or \
                not math.isfinite(timeout) or timeout < 0:
            raise ValueError(f"timeout must be a finite number of seconds >= 0, not "
                             f"{timeout!r}")
        return await self.store.wait_for_terminal(str(job_id), timeout)

    async def enqueue(self, new: NewJob) -> Submitted:
        """Store one prepared job (the submit routes' and ``submit``'s shared last step)."""
        if self.runtime is None:
            raise NotAccepting("the job runtime has not started (is the app serving?)")
        return await self.runtime.submit(new)

    @property
    def key_retention(self) -> float:
        """Seconds an idempotency key is kept after its job ends: the store's retention
        (a key lives as long as its job), or ``config.retention`` for a store that does
        not say."""
        store = self.store
        inner = getattr(store, "inner", store)
        retention = getattr(inner, "retention", None)
        if isinstance(retention, int | float) and not isinstance(retention, bool):
            return float(retention)
        return self.config.retention

    async def cancel(self, job_id: str, *, audited: bool = False,
                     by: str | None = None) -> Job | None:
        """Cancel a job: at once if it waits, by request if it runs. ``audited``: an
        operator's cancel, kept in the job's audit (``by``: who)."""
        if self.runtime is None:
            if audited:
                return await admin_of(self.store).cancel_audited(job_id, by=by)
            return await self.store.cancel(job_id)
        return await self.runtime.cancel(job_id, audited=audited, by=by)

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

    def operation_path_of(self, job_id: str) -> str | None:
        """The job's operation status path, or None without ``map_operation_status``."""
        if self.operation_endpoint is None:
            return None
        root = request.root_path
        template = self._operation_templates.get(root)
        if template is None:
            template = self._operation_templates[root] = url_for(self.operation_endpoint,
                                                                 job_id=_PLACEHOLDER_ID)
        return template.replace(_PLACEHOLDER_ID, job_id)

    def operation_location_of(self, job_id: str) -> str | None:
        """``Operation-Location``: the absolute URL of the job's operation status."""
        return self.absolute_url(self.operation_path_of(job_id))

    def absolute_url(self, path: str | None) -> str | None:
        """``path`` on the host and scheme this request came to. Behind a proxy, this is
        the host the proxy forwards (``Host``, or with Hypercorn's ``ProxyFixMiddleware``
        the ``X-Forwarded-*``/``Forwarded`` headers it trusts)."""
        if path is None:
            return None
        return f"{request.scheme}://{request.host}{path}"

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
                guarded=self._job_authorized or self.owner_of is not None,
                operation_rule=self._operation_rule,
                admin_prefix=None if self.admin is None else self.admin.prefix))
        return Response(self._openapi, content_type="application/json")

    async def _http_error(self, exc: HTTPException) -> Any:
        rule = request.url_rule
        if rule is not None:
            ours = (rule.endpoint or "").startswith(_PREFIX + ".")
        else:
            # Routing found no rule (404) or none for this method (405): ours only for
            # paths under our rules, so the host app's other pages stay its own.
            ours = isinstance(exc, NotFound | MethodNotAllowed) and \
                self._ours.covers(request.path, self._require_app().url_map.converters)
        if not ours:
            return exc
        headers: dict[str, str] = {}
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            headers["Allow"] = ", ".join(exc.valid_methods)
        detail = exc.description
        if isinstance(exc, NotFound) and rule is None:
            detail = f"no route {request.path[:200]!r}"
        elif isinstance(exc, MethodNotAllowed):
            detail = f"{request.method} is not one of {headers.get('Allow', 'the methods')} here"
        return problem(exc.code or 500, detail, code=type(exc).__name__, headers=headers)


def _one_job_id(rule: str, what: str) -> None:
    variables = re.findall(r"<(?:[^:<>]+:)?([^<>]+)>", rule)
    if variables != ["job_id"]:
        # URLs are built from the job id alone, so no other variable can be filled.
        raise ConfigurationError(
            f"the {what} rule {rule!r} must have exactly one variable, <job_id> "
            f"(found {variables or 'none'})"
        )


def make_store(config: EndpointsConfig) -> JobStore:
    if config.redis_url:
        from ..stores._redis import RedisStore

        return RedisStore.from_url(config.redis_url, queue=config.queue,
                                   retention=config.retention, partitions=config.partitions,
                                   replicas_ack=config.replicas_ack,
                                   replicas_timeout=config.replicas_timeout)
    if config.partitions != 1:
        raise ConfigurationError(f"partitions={config.partitions} spreads a Redis queue over "
                                 "hash tags; the in-memory store has none (set redis_url)")
    refuse_replicas_without_redis(config)
    return MemoryStore(retention=config.retention, max_bytes=config.memory_budget)


def refuse_replicas_without_redis(config: EndpointsConfig) -> None:
    if config.replicas_ack > 0:
        raise ConfigurationError(
            f"replicas_ack={config.replicas_ack} needs the Redis store (redis_url): the "
            "in-memory store has no replicas to wait for; set redis_url, or replicas_ack=0")


def endpoints_of(app: Quart) -> AsyncEndpoints:
    """The ``AsyncEndpoints`` mounted on ``app`` (used by the CLI)."""
    found = getattr(app, "extensions", {}).get(EXTENSION_KEY)
    if not isinstance(found, AsyncEndpoints):
        raise ConfigurationError("this app has no AsyncEndpoints mounted")
    return found
