"""The admin API: ``endpoints.map_admin("/admin", authorize=hook)``.

Every route runs the app's ``authorize(request)`` hook first; there is no admin route
without one. ``True`` admits; ``False`` answers 403; a response (a ``Problem``, or any Quart
response such as a 401 with ``WWW-Authenticate``) is sent instead.

Routes (JSON; errors are problem+json):

- ``GET  <prefix>/jobs?status=&name=&limit=&cursor=``: newest first, cursor paging
- ``GET  <prefix>/jobs/<id>``: the job plus ``admin`` (with ``Accept: text/event-stream``,
  the job's event stream)
- ``POST <prefix>/jobs/<id>/retry``: a Failed or Canceled job back in the queue
- ``DELETE <prefix>/jobs/<id>``: cancel, as the public DELETE, audited
- ``GET  <prefix>/instances``, ``GET <prefix>/stats``
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from quart import Request, Response, request
from quart.wrappers.response import Response as QuartResponse

from .._errors import StoreError
from .._job import Job, JobStatus
from .._job_json import job_to_obj
from ..stores._admin import MAX_PAGE, AdminStore, JobQuery, admin_of
from ._access import call_hook, not_found
from ._admin_json import (
    BadCursor,
    decode_cursor,
    detail_obj,
    encode_cursor,
    instances_obj,
    list_obj,
    stats_obj,
)
from ._events import event_stream, wants_event_stream
from ._jobs import job_key
from ._problems import Problem, problem
from ._submit import store_down

if TYPE_CHECKING:
    from ._endpoints import AsyncEndpoints

AdminHook = Callable[[Request], Any]
ActorOf = Callable[[Request], Any]
_STATUS_BY_NAME = {s.value.lower(): s for s in JobStatus}
DEFAULT_LIMIT = 50


@dataclass(frozen=True, slots=True)
class AdminOptions:
    prefix: str
    authorize: AdminHook
    actor: ActorOf | None = None
    show_payloads: bool = False


async def admitted(options: AdminOptions) -> Response | None:
    """Run the authorize hook on the current request: ``None`` to go on, or the answer
    to send instead. (The dashboard's pages go through it too.)"""
    try:
        answer = await call_hook(options.authorize, request._get_current_object())  # type: ignore[attr-defined]
    except Problem as exc:
        return exc.to_response()
    if answer is True:
        return None
    if answer is False:
        return problem(403, "the authorize hook refused this request", code="Forbidden")
    if isinstance(answer, Problem):
        return answer.to_response()
    if isinstance(answer, QuartResponse):
        return answer
    raise TypeError(f"the admin authorize hook must return True, False or a response, "
                    f"not {answer!r}")


async def _actor(options: AdminOptions) -> str | None:
    if options.actor is None:
        return None
    who = await call_hook(options.actor, request._get_current_object())  # type: ignore[attr-defined]
    if who is not None and not isinstance(who, str):
        raise TypeError(f"the admin actor hook must return a str or None, not {who!r}")
    return who


def admin_store(endpoints: AsyncEndpoints) -> AdminStore:
    return admin_of(endpoints.store)


def parse_query() -> JobQuery:
    """The list's filter from the query string; ``Problem`` (400) for a bad value."""
    statuses: set[JobStatus] = set()
    for raw in request.args.getlist("status"):
        for part in raw.split(","):
            if not part.strip():
                continue
            status = _STATUS_BY_NAME.get(part.strip().lower())
            if status is None:
                raise Problem(400, detail=f"status {part.strip()[:40]!r} is not one of "
                              f"{', '.join(s.value for s in JobStatus)}", code="BadQuery")
            statuses.add(status)
    names = request.args.getlist("name")
    if len(names) > 1:
        raise Problem(400, detail="give name once", code="BadQuery")
    name = names[0] if names and names[0] != "" else None
    if name is not None and (len(name) > 200 or "\0" in name):
        raise Problem(400, detail="name must be a job name (at most 200 characters)",
                      code="BadQuery")
    limits = request.args.getlist("limit")
    limit = DEFAULT_LIMIT
    if len(limits) > 1:
        raise Problem(400, detail="give limit once", code="BadQuery")
    if limits:
        text = limits[0].strip()
        limit = int(text) if text.isdecimal() and len(text) < 6 else 0
        if not 1 <= limit <= MAX_PAGE:
            raise Problem(400, detail=f"limit must be an integer from 1 to {MAX_PAGE}, got "
                          f"{limits[0][:20]!r}", code="BadQuery")
    query = JobQuery(frozenset(statuses), name, limit)
    cursors = request.args.getlist("cursor")
    if len(cursors) > 1:
        raise Problem(400, detail="give cursor once", code="BadQuery")
    if cursors and cursors[0]:
        try:
            after = decode_cursor(cursors[0][:512], query)
        except BadCursor as exc:
            raise Problem(400, detail=str(exc), code="BadCursor") from None
        query = JobQuery(query.statuses, name, limit, after)
    return query


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status=status, headers=headers or {},
                    content_type="application/json")


def make_admin_views(endpoints: AsyncEndpoints, options: AdminOptions
                     ) -> dict[str, Callable[..., Awaitable[Any]]]:
    """The view of each admin route, by name."""

    def guarded(view: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def run(**kwargs: Any) -> Any:
            refused = await admitted(options)
            if refused is not None:
                return refused
            try:
                return await view(**kwargs)
            except Problem as exc:
                return exc.to_response()
            except StoreError as exc:
                return store_down(endpoints.config.retry_after, exc)
        run.__name__ = view.__name__
        return run

    async def list_jobs() -> Any:
        query = parse_query()
        page = await admin_store(endpoints).list_jobs(query)
        cursor = None if page.next is None else encode_cursor(page.next, query)
        return _json(list_obj(list(page.jobs), cursor,
                              stack_traces=endpoints.config.expose_stack_traces))

    def key_of(job_id: Any) -> str:
        key = job_key(job_id)
        if key is None:
            raise Problem(404, detail=f"{str(job_id)[:64]!r} is not a job id",
                          code="JobNotFound")
        return key

    async def job_detail(job_id: Any) -> Any:
        key = key_of(job_id)
        store = admin_store(endpoints)
        if request.method == "DELETE":
            return await _cancel(endpoints, key, await _actor(options))
        inspected = await store.inspect(key)
        if inspected is None:
            raise not_found(key)
        if wants_event_stream():
            return event_stream(endpoints, inspected.job)
        answer = _json(detail_obj(inspected, show_payload=options.show_payloads))
        answer.headers["Vary"] = "Accept"
        return answer

    async def retry(job_id: Any) -> Any:
        key = key_of(job_id)
        store = admin_store(endpoints)
        retried = await store.retry(key, by=await _actor(options))
        if retried.job is None:
            raise not_found(key)
        if not retried.applied:
            status = retried.job.status.value
            raise Problem(409, detail=f"job {key} is {status}: only a Failed or Canceled "
                          "job can be retried", code="JobNotRetryable", jobStatus=status)
        inspected = await store.inspect(key)
        if inspected is None:  # purged at once: retention 0
            raise not_found(key)
        return _json(detail_obj(inspected, show_payload=options.show_payloads))

    async def instances() -> Any:
        return _json(instances_obj(await admin_store(endpoints).instances()))

    async def stats() -> Any:
        return _json(stats_obj(await admin_store(endpoints).stats()))

    return {name: guarded(view) for name, view in (
        ("jobs", list_jobs), ("job", job_detail), ("retry", retry),
        ("instances", instances), ("stats", stats))}


def _public(endpoints: AsyncEndpoints, job: Job, status: int) -> Response:
    headers = {} if job.is_terminal else {"Retry-After": str(endpoints.config.retry_after)}
    return _json(job_to_obj(job, stack_traces=endpoints.config.expose_stack_traces), status,
                 headers)


async def _cancel(endpoints: AsyncEndpoints, key: str, by: str | None) -> Response:
    """The public DELETE's answers (see ``_jobs._cancel``), with an audit entry."""
    before = await endpoints.store.get(key)
    if before is None:
        raise not_found(key)
    if before.is_terminal:
        raise Problem(409, detail=f"job {key} is {before.status.value} already; it cannot "
                      "be canceled", code="JobFinished", jobStatus=before.status.value)
    job = await endpoints.cancel(key, audited=True, by=by)
    if job is None:
        raise not_found(key)
    if job.status is JobStatus.CANCELED:
        return _public(endpoints, job, 200)
    if job.is_terminal:
        raise Problem(409, detail=f"job {key} finished ({job.status.value}) before it could "
                      "be canceled", code="JobFinished", jobStatus=job.status.value)
    return _public(endpoints, job, 202)
