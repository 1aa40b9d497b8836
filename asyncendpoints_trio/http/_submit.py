"""The submit route: validate, store (group commit), answer ``202 Accepted``."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import orjson
from quart import Response, make_response, request

from .._context import Headers
from .._errors import (
    IdempotencyConflict,
    NotAccepting,
    QueueFull,
    StoreError,
)
from .._job import HttpContext
from .._job_json import job_to_obj
from ..stores._protocol import NewJob
from ._problems import Problem, problem
from ._request import fingerprint, read_body, read_meta, validate

if TYPE_CHECKING:
    from ._endpoints import AsyncEndpoints

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SubmitContext(Generic[T]):
    """What a pre-queue hook sees: the validated request and the HTTP context.

    Unlike the stored job, ``headers`` here include the sensitive ones (``Authorization``
    ...): authorising the request is what a hook is for.
    """

    job_name: str
    request: T
    http: HttpContext

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


def unavailable(detail: str, retry_after: int, code: str) -> Response:
    return problem(503, detail, code=code, headers={"Retry-After": str(retry_after)})


def make_submit_view(
    endpoints: AsyncEndpoints, name: str, hook: PreQueueHook | None
) -> Callable[..., Awaitable[Any]]:
    spec = endpoints.handlers.require(name)
    policy = spec.retry

    async def submit_view(**_route_params: Any) -> Any:
        config = endpoints.config
        try:
            meta = read_meta(request, config)
            body = await read_body(request, config)
            value = validate(spec.request_adapter, body)
            context = meta.context
            if hook is not None:
                seen = replace(context, headers=meta.every_header)
                answer = hook(SubmitContext(name, value, seen))
                if inspect.isawaitable(answer):
                    answer = await answer
                if answer is not None:
                    if isinstance(answer, Problem):
                        return answer.to_response()
                    return await make_response(answer)
            # The body as sent: it validated, so the worker's validation of the same bytes
            # gives the same value. Only an idempotency key needs the canonical form, to
            # tell "the same request" from another regardless of whitespace or key order.
            key = meta.idempotency_key
            new = NewJob(
                id=meta.job_id,
                name=name,
                payload=body,
                max_retries=(policy or config.default_retry).max_retries,
                context=context,
                idempotency_key=key,
                fingerprint="" if key is None else fingerprint(
                    name, spec.request_adapter.dump_json(value), context),
            )
            submitted = await endpoints.submit(new)
        except Problem as exc:
            return exc.to_response()
        except IdempotencyConflict as exc:
            return problem(409, str(exc), code="IdempotencyConflict", jobId=exc.job_id)
        except QueueFull as exc:
            return unavailable(str(exc), config.retry_after, "QueueFull")
        except NotAccepting as exc:
            return unavailable(str(exc), config.retry_after, "NotAccepting")
        except StoreError as exc:
            return unavailable(f"the job store is unavailable: {exc}", config.retry_after,
                               "StoreUnavailable")
        job = submitted.job
        headers = {"Retry-After": str(config.retry_after)}
        location = endpoints.location_of(job.id)
        if location is not None:
            headers["Location"] = location
        return Response(orjson.dumps(job_to_obj(job)), status=202, headers=headers,
                        content_type="application/json")

    return submit_view
