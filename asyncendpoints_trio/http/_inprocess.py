"""Submitting from Python, beside the app: the job an ``AsyncEndpoints.submit`` call stores.

The value is validated against the handler's request type as pydantic's ``validate_python``
does (lax: code hands over typed values, not wire text), and stored as that type serializes
it, so the worker reads back what an HTTP submit of the same value would have stored.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

from .._config import EndpointsConfig
from .._handlers import HandlerSpec
from .._job import EMPTY_CONTEXT, MAX_PRIORITY, MIN_PRIORITY
from ..stores._protocol import NewJob
from ..telemetry._tracing import current_context
from ._request import fingerprint, scoped_key

# In-process keys live apart from every route's: the same key sent over HTTP is another key.
_SCOPE = "inprocess"


def new_job(config: EndpointsConfig, spec: HandlerSpec, value: Any, *,
            idempotency_key: str | None, priority: int, delay: float | None,
            job_id: str | None) -> NewJob:
    """Raises ``pydantic.ValidationError`` (a ``ValueError``) for a value the request type
    refuses, and ``ValueError`` for a bad option."""
    if isinstance(priority, bool) or not isinstance(priority, int) or \
            not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise ValueError(f"priority must be an integer from {MIN_PRIORITY} to {MAX_PRIORITY}, "
                         f"not {priority!r}")
    if delay is not None and (isinstance(delay, bool) or not isinstance(delay, int | float)
                              or not math.isfinite(delay) or delay < 0):
        raise ValueError(f"delay must be a finite number of seconds >= 0, not {delay!r}")
    if idempotency_key is not None and (not isinstance(idempotency_key, str) or
                                        not idempotency_key or len(idempotency_key) > 255):
        raise ValueError("idempotency_key must be a non-empty str of at most 255 characters")
    chosen = None
    if job_id is not None:
        try:
            chosen = str(uuid.UUID(str(job_id)))
        except ValueError:
            raise ValueError(f"job_id must be a UUID, not {job_id!r}") from None
    adapter = spec.request_adapter
    payload = adapter.dump_json(adapter.validate_python(value))
    return NewJob(
        id=chosen or str(uuid.uuid4()),
        id_chosen=chosen is not None,
        name=spec.name,
        payload=payload,
        max_retries=(spec.retry or config.default_retry).max_retries,
        idempotency_key=None if idempotency_key is None else scoped_key(
            idempotency_key, f"{_SCOPE}.{spec.name}", None),
        fingerprint="" if idempotency_key is None else fingerprint(
            spec.name, payload, EMPTY_CONTEXT),
        priority=priority,
        delay=delay if delay else None,
        trace=current_context(),  # called inside the send span: its context
    )
