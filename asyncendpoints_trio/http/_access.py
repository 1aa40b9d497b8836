"""Who may submit, see and cancel a job: owner claims and authorize hooks.

Two mechanisms, usable together:

- ``owner_of``, given to ``AsyncEndpoints``: a function of the request that returns an owner
  claim (a tenant or user id derived from a verified credential, never the credential
  itself), or ``None`` for "no owner". A submit stores it with the job; ``GET`` and
  ``DELETE`` answer ``404`` unless the request's claim is the job's, so job ids cannot be
  probed. Idempotency keys and chosen job ids are scoped by it, so one owner's key never
  meets another's.
- ``authorize=hook`` on a submit route or on the job route: called with an ``Access`` (the
  action, every header including the ones never stored, the route and query values, and for
  job routes the job), it answers ``True`` to admit, ``False`` to refuse (``404`` on job
  routes, ``403`` on submits), or any response (a ``Problem``) to send instead.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from .._context import Headers
from .._job import Job
from ._problems import Problem

Action = Literal["submit", "read", "cancel"]


@dataclass(frozen=True, slots=True)
class Access:
    """What an authorize hook (and ``owner_of``) sees of a request."""

    action: Action
    headers: Headers  # every header, sensitive ones included
    route_params: dict[str, str]
    query_params: dict[str, tuple[str, ...]]
    client: str | None  # the client's address
    job: Job | None = None  # the job asked for (read, cancel); None for a submit
    owner: str | None = None  # the request's owner claim, from owner_of


OwnerOf = Callable[[Access], "str | Awaitable[str | None] | None"]
AuthorizeHook = Callable[[Access], Any]


async def call_hook(hook: Callable[[Any], Any], argument: Any) -> Any:
    """Call a sync or async hook of the app's."""
    answer = hook(argument)
    if inspect.isawaitable(answer):
        answer = await answer
    return answer


async def owner_claim(owner_of: OwnerOf | None, access: Access) -> str | None:
    if owner_of is None:
        return None
    claim = await call_hook(owner_of, access)
    if claim is not None and (not isinstance(claim, str) or "\0" in claim or not claim):
        raise TypeError(f"owner_of must return a non-empty str without NUL, or None; "
                        f"got {claim!r}")
    return claim


def not_found(job_id: str) -> Problem:
    return Problem(404, detail=f"no job {job_id}", code="JobNotFound")


async def admit(hook: AuthorizeHook | None, access: Access) -> Any:
    """``None`` to go on, or the answer to send instead."""
    if hook is None:
        return None
    answer = await call_hook(hook, access)
    if answer is True or answer is None:
        return None
    if answer is False:
        if access.job is not None:
            return not_found(access.job.id)  # a stranger cannot tell a job from none
        return Problem(403, detail="this request may not submit here", code="Forbidden")
    return answer
