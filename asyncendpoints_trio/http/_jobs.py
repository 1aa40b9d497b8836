"""The job details route: ``GET`` (``?wait=`` or ``Prefer: wait=`` long-polls), ``DELETE``
cancels.

A job is shown only to whom may see it: with ``owner_of``, to requests with the job's owner
claim; with an ``authorize`` hook, to requests it admits. Everyone else gets the ``404`` a
job id that does not exist gets, so ids cannot be probed.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from quart import Response, request

from .._context import Headers
from .._errors import StoreError
from .._job import Job, JobStatus
from .._job_json import job_to_obj
from ._access import Access, Action, AuthorizeHook, admit, not_found, owner_claim
from ._events import event_stream, wants_event_stream
from ._prefer import parse_prefer, seconds_text
from ._problems import Problem, problem
from ._submit import answer_of, store_down

if TYPE_CHECKING:
    from ._endpoints import AsyncEndpoints


def _job_response(endpoints: AsyncEndpoints, job: Job, status: int,
                  extra: dict[str, str] | None = None) -> Response:
    config = endpoints.config
    headers = {} if job.is_terminal else {"Retry-After": str(config.retry_after)}
    headers.update(extra or {})
    body = orjson.dumps(job_to_obj(job, stack_traces=config.expose_stack_traces))
    return Response(body, status=status, headers=headers, content_type="application/json")


def _wait_seconds(raw: str | None, cap: float) -> float:
    if raw is None:
        return 0.0
    try:
        seconds = float(raw)
    except ValueError:
        raise ValueError(f"wait must be a number of seconds, got {raw!r}") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"wait must be a non-negative number of seconds, got {raw!r}")
    return min(seconds, cap)


def job_key(job_id: Any) -> str | None:
    """The job id of a route value, canonical; ``None`` if it is none. (The uuid converter
    hands us a UUID; the fallback rule of our paths hands us any string.)"""
    try:
        return str(uuid.UUID(str(job_id)))
    except ValueError:
        return None


def request_access(action: Action) -> Access:
    """What an authorize hook and ``owner_of`` see of the current request."""
    return Access(action, Headers(tuple((k.lower(), v) for k, v in request.headers.items())),
                  {k: str(v) for k, v in (request.view_args or {}).items()},
                  {k: tuple(v) for k, v in request.args.lists()}, request.remote_addr)


def make_job_view(endpoints: AsyncEndpoints,
                  authorize: AuthorizeHook | None) -> Callable[..., Awaitable[Any]]:
    async def job_view(job_id: Any) -> Any:
        answer = await read_or_cancel(job_id)
        if request.method == "GET" and isinstance(answer, Response):
            # Every answer of a GET depends on Prefer (a wait) and Accept (JSON or a
            # stream), problems too, so caches must key on both.
            answer.headers["Vary"] = "Prefer, Accept"
        return answer

    async def read_or_cancel(job_id: Any) -> Any:
        config = endpoints.config
        key = job_key(job_id)
        if key is None:
            return problem(404, f"{str(job_id)[:64]!r} is not a job id", code="JobNotFound")
        action: Action = "cancel" if request.method == "DELETE" else "read"
        access = request_access(action)
        guarded = endpoints.owner_of is not None or authorize is not None
        # An event stream starts from a plain read, access checks and all.
        stream = action == "read" and wants_event_stream()
        try:
            wait = 0.0
            extra: dict[str, str] = {}
            if action == "read" and not stream:
                try:
                    given = request.args.getlist("wait")
                    if len(given) > 1:
                        raise ValueError("give wait once")
                    wait = _wait_seconds(given[0] if given else None, config.max_wait)
                except ValueError as exc:
                    return problem(400, str(exc), code="BadWait")
                preferred = parse_prefer(request.headers.getlist("prefer")).wait
                if not given and preferred is not None:
                    # Prefer: wait=N spells ?wait=N; the query, when given, wins.
                    wait = min(preferred, config.max_wait)
                    if wait > 0:
                        extra["Preference-Applied"] = f"wait={seconds_text(wait)}"
            job: Job | None = None
            if guarded or action == "cancel" or wait == 0:
                job = await endpoints.store.get(key)
                if guarded:
                    owner = await owner_claim(endpoints.owner_of, access)
                    refused = await refusal(endpoints, authorize, access, owner, key, job)
                    if refused is not None:
                        return await answer_of(refused)
                if job is None:
                    return not_found(key).to_response()
                if action == "cancel":
                    return await _cancel(endpoints, job)
                if stream:
                    return event_stream(endpoints, job)
            if wait > 0 and (job is None or not job.is_terminal):
                # Unguarded, the long-poll's own read is the only one (a round trip saved).
                job = await endpoints.store.wait_for_terminal(key, wait)
        except Problem as exc:
            return exc.to_response()
        except StoreError as exc:
            return store_down(config.retry_after, exc)
        if job is None:
            return not_found(key).to_response()
        return _job_response(endpoints, job, 200, extra)

    return job_view


async def refusal(endpoints: AsyncEndpoints, authorize: AuthorizeHook | None,
                   access: Access, owner: str | None, key: str, job: Job | None) -> Any:
    if job is None or (endpoints.owner_of is not None and job.principal != owner):
        return not_found(key)
    return await admit(authorize, Access(access.action, access.headers, access.route_params,
                                         access.query_params, access.client, job, owner))


async def _cancel(endpoints: AsyncEndpoints, before: Job) -> Response:
    key = before.id
    if before.is_terminal:
        return problem(409, f"job {key} is {before.status.value} already; it cannot be canceled",
                       code="JobFinished", jobStatus=before.status.value)
    job = await endpoints.cancel(key)
    if job is None:
        return not_found(key).to_response()
    if job.status is JobStatus.CANCELED:
        return _job_response(endpoints, job, 200)
    if job.is_terminal:
        return problem(409, f"job {key} finished ({job.status.value}) before it could be "
                       "canceled", code="JobFinished", jobStatus=job.status.value)
    # Running: the cancellation was requested and reaches the handler shortly.
    return _job_response(endpoints, job, 202)
