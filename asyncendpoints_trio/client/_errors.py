"""What the client raises. Every answer it did not ask for becomes one of these:

```
ClientError
├── ProblemError               an application/problem+json answer (RFC 9457)
│   ├── ClientProblemError     its status is 4xx: the request is at fault
│   └── ServerProblemError     5xx: the service is (503s are retried before this)
├── UnexpectedResponse         any other answer the client cannot read (an HTML 502 page)
├── JobError                   the job ended without a result
│   ├── JobFailed              Failed: ``error`` is the job's error object
│   └── JobCanceled            Canceled
└── WaitTimeout                the job did not end within the wait (also a TimeoutError)
```

Transport failures that outlast the retries are httpx's own (``httpx.TransportError``):
timeouts and connections are the httpx client's business.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

_STANDARD = frozenset({"type", "title", "status", "detail", "instance", "code"})


class ClientError(Exception):
    """The base of every error the client raises."""


class ProblemError(ClientError):
    """A problem+json answer: ``status``, ``title``, ``type``, ``detail``, ``code``, and
    every other member in ``extensions`` (``errors`` of a 422, ``jobId`` of a 409...)."""

    def __init__(self, response: httpx.Response, body: Mapping[str, Any]) -> None:
        self.response = response
        self.status: int = _int_or(body.get("status"), response.status_code)
        self.title: str | None = _str_or_none(body.get("title"))
        self.type: str = _str_or_none(body.get("type")) or "about:blank"
        self.detail: str | None = _str_or_none(body.get("detail"))
        self.code: str | None = _str_or_none(body.get("code"))
        self.instance: str | None = _str_or_none(body.get("instance"))
        self.extensions: dict[str, Any] = {k: v for k, v in body.items() if k not in _STANDARD}
        label = self.code or self.title or ""
        super().__init__(f"{self.status} {label}: {self.detail or ''}".rstrip(": "))

    @property
    def retry_after(self) -> str | None:
        value = self.response.headers.get("retry-after")
        return None if value is None else str(value)


class ClientProblemError(ProblemError):
    """A 4xx problem: fix the request (or its credentials) before sending it again."""


class ServerProblemError(ProblemError):
    """A 5xx problem (a 503 is retried first, as its ``Retry-After`` says)."""


class UnexpectedResponse(ClientError):
    """An answer that is neither what was asked for nor a problem."""

    def __init__(self, response: httpx.Response, why: str) -> None:
        self.response = response
        self.status = response.status_code
        super().__init__(f"{response.request.method} {response.request.url}: "
                         f"HTTP {response.status_code}: {why}")


class JobError(ClientError):
    """The job ended, but not ``Completed``; ``job`` is its final JSON."""

    def __init__(self, job: Mapping[str, Any], message: str) -> None:
        self.job = dict(job)
        self.job_id: str = str(job.get("id"))
        super().__init__(message)


class JobFailed(JobError):
    """The job ``Failed``: ``error`` is its error object (``code``, ``message``,
    ``exception``); ``code`` and ``message`` are the error's."""

    def __init__(self, job: Mapping[str, Any]) -> None:
        error = job.get("error")
        self.error: dict[str, Any] = dict(error) if isinstance(error, Mapping) else {}
        self.code: str | None = _str_or_none(self.error.get("code"))
        self.message: str | None = _str_or_none(self.error.get("message"))
        super().__init__(job, f"job {job.get('id')} failed: {self.code}: {self.message}")


class JobCanceled(JobError):
    def __init__(self, job: Mapping[str, Any]) -> None:
        super().__init__(job, f"job {job.get('id')} was canceled")


class WaitTimeout(ClientError, TimeoutError):
    """The job was not final when the wait ended; ``job`` is how it stood then."""

    def __init__(self, job: Mapping[str, Any], timeout: float) -> None:
        self.job = dict(job)
        super().__init__(f"job {job.get('id')} is still {job.get('status')} after "
                         f"{timeout:g}s")


def problem_error(response: httpx.Response, body: Mapping[str, Any]) -> ProblemError:
    kind = ServerProblemError if response.status_code >= 500 else ClientProblemError
    return kind(response, body)


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int_or(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default
