"""The operation status route: a job as Azure's status monitor shows it.

Azure's async request-reply convention (and ``azure-core``'s ``LROPoller`` with its default
``LROBasePolling``) follows an absolute ``Operation-Location`` from the ``202`` to a monitor
that answers ``{"id", "status", "error", "result"}`` with a ``status`` of its own vocabulary,
and ``Retry-After`` while the operation runs. The poller stops at ``Succeeded``, ``Failed`` or
``Canceled``, raises for the last two, and for a success GETs ``resourceLocation`` when the
monitor names one: ours names the job (``map_job_details``) or, without a job route, the
monitor itself, so the final body always carries the job's ``result``.

Access is the job route's: with ``owner_of`` or an ``authorize`` hook a stranger gets the
``404`` an unknown id gets.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson
from quart import Response

from .._errors import StoreError
from .._job import Job, JobStatus
from .._job_json import public_error
from ._access import AuthorizeHook, not_found, owner_claim
from ._jobs import job_key, refusal, request_access
from ._problems import Problem, problem
from ._submit import answer_of, store_down

if TYPE_CHECKING:
    from ._endpoints import AsyncEndpoints

# Our statuses in Azure's words. Scheduled (a delayed start, a retry waiting out its
# delay) has not started in the sense the poller cares about: no result is near.
AZURE_STATUS: Mapping[JobStatus, str] = {
    JobStatus.QUEUED: "NotStarted",
    JobStatus.SCHEDULED: "NotStarted",
    JobStatus.IN_PROGRESS: "Running",
    JobStatus.COMPLETED: "Succeeded",
    JobStatus.FAILED: "Failed",
    JobStatus.CANCELED: "Canceled",
}


def operation_obj(job: Job, *, stack_traces: bool, resource_location: str | None
                  ) -> dict[str, Any]:
    body: dict[str, Any] = {"id": job.id, "status": AZURE_STATUS[job.status]}
    if job.status is JobStatus.FAILED:
        error = public_error(job.error, stack_traces=stack_traces) or {}
        # Azure's error object: code and message, details in innererror.
        body["error"] = {"code": error.get("code") or "Failed",
                         "message": error.get("message") or "the job failed",
                         "innererror": error.get("exception")}
    elif job.status is JobStatus.CANCELED:
        body["error"] = {"code": "Canceled", "message": f"job {job.id} was canceled"}
    elif job.status is JobStatus.COMPLETED:
        body["result"] = None if job.result is None else orjson.Fragment(job.result)
        if resource_location is not None:
            body["resourceLocation"] = resource_location
    return body


def make_operation_view(endpoints: AsyncEndpoints,
                        authorize: AuthorizeHook | None) -> Callable[..., Awaitable[Any]]:
    async def operation_view(job_id: Any) -> Any:
        config = endpoints.config
        key = job_key(job_id)
        if key is None:
            return problem(404, f"{str(job_id)[:64]!r} is not a job id", code="JobNotFound")
        access = request_access("read")
        try:
            job = await endpoints.store.get(key)
            if endpoints.owner_of is not None or authorize is not None:
                owner = await owner_claim(endpoints.owner_of, access)
                refused = await refusal(endpoints, authorize, access, owner, key, job)
                if refused is not None:
                    return await answer_of(refused)
        except Problem as exc:
            return exc.to_response()
        except StoreError as exc:
            return store_down(config.retry_after, exc)
        if job is None:
            return not_found(key).to_response()
        resource = endpoints.absolute_url(endpoints.location_of(job.id)
                                          or endpoints.operation_path_of(job.id))
        body = operation_obj(job, stack_traces=config.expose_stack_traces,
                             resource_location=resource)
        headers = {} if job.is_terminal else {"Retry-After": str(config.retry_after)}
        return Response(orjson.dumps(body), status=200, headers=headers,
                        content_type="application/json")

    return operation_view
