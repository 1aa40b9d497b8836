"""The submit route: authorize, validate, store (group commit), answer ``202 Accepted`` (or,
with ``Prefer: wait``, the final job)."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import orjson
from quart import Response, make_response, request

from .._context import Headers
from .._errors import (
    IdempotencyConflict,
    NotAccepting,
    QueueFull,
    ReplicationTimeout,
    StoreError,
)
from .._job import HttpContext
from .._job_json import job_to_obj
from ..stores._protocol import NewJob, Submitted
from ..telemetry._tracing import current_context, send_span
from ._access import Access, AuthorizeHook, admit, call_hook, owner_claim
from ._prefer import Preferences, applied, parse_prefer, seconds_text
from ._problems import Problem, problem
from ._request import (
    fingerprint,
    job_id_for,
    parse_priority,
    read_body,
    read_meta,
    scoped_key,
    validate,
)

if TYPE_CHECKING:
    from ._endpoints import AsyncEndpoints

T = TypeVar("T")

log = logging.getLogger("asyncendpoints_trio.http")

# How long a key is kept after its job ends (a key lives as long as its job does).
RETENTION_HEADER = "Idempotency-Key-Retention"
# On the answer to a submit whose key matched a job stored before (Stripe's name for it).
REPLAYED_HEADER = "Idempotent-Replayed"


@dataclass(frozen=True, slots=True)
class SubmitContext(Generic[T]):
    """What a pre-queue hook sees: the validated request and the HTTP context.

    Unlike the stored job, ``headers`` here include the sensitive ones (``Authorization``
    ...): authorising the request is what a hook is for.
    """

    job_name: str
    request: T
    http: HttpContext
    owner: str | None = None  # the request's owner claim, when the app defines owners

    @property
    def headers(self) -> Headers:
        return Headers(self.http.headers)

    @property
    def route_params(self) -> dict[str, str]:
        return dict(self.http.route_params)

    @property
    def query_params(self) -> dict[str, tuple[str, ...]]:
        return dict(self.http.query_params)


# A hook returns None to let the job be queued, or any Quart response value to answer instead.
PreQueueHook = Callable[[SubmitContext[Any]], Awaitable[Any] | Any]


def unavailable(retry_after: int, code: str, detail: str) -> Response:
    return problem(503, detail, code=code, headers={"Retry-After": str(retry_after)})


def store_down(retry_after: int, exc: Exception) -> Response:
    """503 for a store failure. The client hears that the store is unavailable and when to
    retry, nothing about it (``redis://host:port``, ``WRONGPASS ...``): that is for the log."""
    log.debug("answering 503: %s: %s", type(exc).__name__, exc)
    return unavailable(retry_after, "StoreUnavailable",
                       f"the job store is unavailable; retry in {retry_after}s")


def not_replicated(retry_after: int, exc: ReplicationTimeout, keyed: bool) -> Response:
    """503 for a job the primary stored but too few replicas confirmed (``replicas_ack``):
    it may not survive a failover, so no 202. It is not undone either: it will run, and a
    retry with the same idempotency key answers as this job once the replicas have it."""
    log.warning("answering 503: the submit was not confirmed by the replicas: %s", exc)
    retry = ("retry with the same idempotency key to get this job's answer" if keyed else
             "without an idempotency key, a retry submits a second job")
    return unavailable(retry_after, "ReplicationTimeout",
                       "the job was stored on the primary, but the replicas did not confirm "
                       f"it in time, so it might not survive a failover; {retry}")


async def answer_of(value: Any) -> Any:
    if isinstance(value, Problem):
        return value.to_response()
    return await make_response(value)


@dataclass(frozen=True, slots=True)
class RouteOptions:
    hook: PreQueueHook | None = None
    authorize: AuthorizeHook | None = None
    priority: int = 0  # the route's default
    client_priority: bool = True  # may X-Priority override it?


def key_reused(exc: IdempotencyConflict) -> Response:
    # Keys and chosen ids are the owner's own, so the job named is one of theirs.
    return problem(422, "this idempotency key was used for another request",
                   code="IdempotencyKeyReused", jobId=exc.job_id)


async def accepted(endpoints: AsyncEndpoints, submitted: Submitted, prefer: Preferences, *,
                   keyed: bool) -> Response:
    """The answer to a stored submit: ``202``, or with ``Prefer: wait=N`` the final job
    (``200``) if it ends within N seconds (capped by ``max_wait``)."""
    config = endpoints.config
    job = submitted.job
    wait = None if prefer.wait is None else min(prefer.wait, config.max_wait)
    if wait is not None and wait <= 0:
        wait = None  # nothing was waited for, so the preference was not applied
    if wait is not None and not job.is_terminal:
        try:
            job = await endpoints.store.wait_for_terminal(job.id, wait) or job
        except StoreError as exc:
            # The job is stored: its 202 is still the true answer, the wait is a bonus.
            log.debug("Prefer: wait ended early: %s: %s", type(exc).__name__, exc)
    headers = {"Vary": "Prefer"}
    location = endpoints.location_of(job.id)
    if location is not None:
        headers["Location"] = location
    operation = endpoints.operation_location_of(job.id)
    if operation is not None:
        headers["Operation-Location"] = operation
    if keyed:
        headers[RETENTION_HEADER] = str(math.ceil(endpoints.key_retention))
        if not submitted.created:
            headers[REPLAYED_HEADER] = "true"
    final = wait is not None and job.is_terminal
    if final:
        status = 200
        if location is not None:
            headers["Content-Location"] = location  # the body is the job's representation
        headers["Preference-Applied"] = f"wait={seconds_text(wait or 0)}"
    else:
        status = 202
        headers["Retry-After"] = str(config.retry_after)
        said = applied(respond_async=prefer.respond_async, wait=wait)
        if said is not None:
            headers["Preference-Applied"] = said
    body_out = orjson.dumps(job_to_obj(job, stack_traces=config.expose_stack_traces))
    return Response(body_out, status=status, headers=headers, content_type="application/json")


def make_submit_view(
    endpoints: AsyncEndpoints, name: str, endpoint: str, options: RouteOptions
) -> Callable[..., Awaitable[Any]]:
    spec = endpoints.handlers.require(name)
    policy = spec.retry

    async def submit_view(**_route_params: Any) -> Any:
        config = endpoints.config
        try:
            meta = read_meta(request, config)
            context = meta.context
            access = Access("submit", Headers(meta.every_header), dict(context.route_params),
                            dict(context.query_params), context.client)
            owner = await owner_claim(endpoints.owner_of, access)
            refused = await admit(options.authorize, replace(access, owner=owner))
            if refused is not None:
                return await answer_of(refused)
            body = await read_body(request, config)
            strict = spec.strict if spec.strict is not None else config.strict_validation
            value = validate(spec.request_adapter, body, strict=strict)
            # The body as sent is stored: it validated, so the worker's validation of the
            # same bytes gives the same value. Only an idempotency key needs the canonical
            # form, to tell "the same request" from another regardless of whitespace or
            # key order.
            raw_key = meta.raw_key
            key = None if raw_key is None else scoped_key(raw_key, endpoint, owner)
            digest = "" if raw_key is None else fingerprint(
                name, spec.request_adapter.dump_json(value), context)
            # From here until the store has the job, a duplicate is "in flight" (409).
            with nullcontext() if key is None else endpoints.in_flight.hold(key, digest):
                if options.hook is not None:
                    seen = replace(context, headers=meta.every_header)
                    answer = await call_hook(options.hook, SubmitContext(name, value, seen,
                                                                         owner))
                    if answer is not None:
                        return await answer_of(answer)
                priority = options.priority
                if options.client_priority:
                    asked = parse_priority(meta.raw_priority)
                    priority = priority if asked is None else asked
                with send_span(name, config.queue) as span:
                    new = NewJob(
                        id=job_id_for(meta.chosen_id, owner),
                        id_chosen=meta.chosen_id is not None,
                        name=name,
                        payload=body,
                        max_retries=(policy or config.default_retry).max_retries,
                        context=context,
                        idempotency_key=key,
                        fingerprint=digest,
                        priority=priority,
                        delay=meta.delay,
                        principal=owner,
                        trace=current_context(),  # this span's: each attempt's parent
                    )
                    if span.is_recording():
                        span.set_attribute("messaging.message.id", new.id)
                    submitted = await endpoints.enqueue(new)
                    if span.is_recording():
                        span.set_attribute("messaging.message.id", submitted.job.id)
        except Problem as exc:
            return exc.to_response()
        except IdempotencyConflict as exc:
            return key_reused(exc)
        except QueueFull as exc:
            return unavailable(config.retry_after, "QueueFull", str(exc))
        except NotAccepting as exc:
            return unavailable(config.retry_after, "NotAccepting", str(exc))
        except ReplicationTimeout as exc:
            return not_replicated(config.retry_after, exc, meta.raw_key is not None)
        except StoreError as exc:
            return store_down(config.retry_after, exc)
        return await accepted(endpoints, submitted, parse_prefer(meta.prefer),
                              keyed=raw_key is not None)

    return submit_view
