"""The job details route: ``GET`` (``?wait=`` long-polls), ``DELETE`` cancels."""

from __future__ import annotations

import math
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from quart import Response, request

from .._errors import StoreError
from .._job import Job, JobStatus
from .._job_json import job_to_obj
from ._problems import problem
from ._submit import unavailable

if TYPE_CHECKING:
    from ._endpoints import AsyncEndpoints


def _job_response(job: Job, status: int, retry_after: int) -> Response:
    headers = {} if job.is_terminal else {"Retry-After": str(retry_after)}
    return Response(orjson.dumps(job_to_obj(job)), status=status, headers=headers,
                    content_type="application/json")


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


def make_job_view(endpoints: AsyncEndpoints) -> Callable[..., Awaitable[Response]]:
    async def job_view(job_id: Any) -> Response:
        config = endpoints.config
        try:
            # The uuid converter hands us a UUID; the fallback rule hands us any string.
            key = str(uuid.UUID(str(job_id)))
        except ValueError:
            return problem(404, f"{str(job_id)[:64]!r} is not a job id", code="JobNotFound")
        try:
            if request.method == "DELETE":
                return await _cancel(endpoints, key)
            try:
                given = request.args.getlist("wait")
                if len(given) > 1:
                    raise ValueError("give wait once")
                wait = _wait_seconds(given[0] if given else None, config.max_wait)
            except ValueError as exc:
                return problem(400, str(exc), code="BadWait")
            if wait > 0:
                job = await endpoints.store.wait_for_terminal(key, wait)
            else:
                job = await endpoints.store.get(key)
        except StoreError as exc:
            return unavailable(f"the job store is unavailable: {exc}", config.retry_after,
                               "StoreUnavailable")
        if job is None:
            return problem(404, f"no job {key}", code="JobNotFound")
        return _job_response(job, 200, config.retry_after)

    return job_view


async def _cancel(endpoints: AsyncEndpoints, key: str) -> Response:
    before = await endpoints.store.get(key)
    if before is None:
        return problem(404, f"no job {key}", code="JobNotFound")
    if before.is_terminal:
        return problem(409, f"job {key} is {before.status.value} already; it cannot be canceled",
                       code="JobFinished", jobStatus=before.status.value)
    job = await endpoints.cancel(key)
    if job is None:
        return problem(404, f"no job {key}", code="JobNotFound")
    if job.status is JobStatus.CANCELED:
        return _job_response(job, 200, endpoints.config.retry_after)
    if job.is_terminal:
        return problem(409, f"job {key} finished ({job.status.value}) before it could be "
                       "canceled", code="JobFinished", jobStatus=job.status.value)
    # Running: the cancellation was requested and reaches the handler shortly.
    return _job_response(job, 202, endpoints.config.retry_after)
