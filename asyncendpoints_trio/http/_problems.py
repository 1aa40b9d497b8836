"""RFC 9457 problem details: every error answer of ours is ``application/problem+json``."""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import orjson
from quart import Response

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    """Raise from a pre-queue hook (or answer with it) to refuse a request with a problem.

    ``Problem(401, detail="missing token")`` answers 401 with a problem+json body.
    """

    def __init__(
        self,
        status: int,
        title: str | None = None,
        detail: str | None = None,
        *,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        self.status = status
        self.title = title or HTTPStatus(status).phrase
        self.detail = detail
        self.code = code
        self.headers = dict(headers or {})
        self.extensions = extensions
        super().__init__(f"{status} {self.title}: {detail}")

    def to_response(self) -> Response:
        body: dict[str, Any] = {"type": "about:blank", "title": self.title, "status": self.status}
        if self.detail is not None:
            body["detail"] = self.detail
        if self.code is not None:
            body["code"] = self.code
        body.update(self.extensions)
        return Response(orjson.dumps(body), status=self.status, headers=self.headers,
                         content_type=PROBLEM_JSON)


def problem(status: int, detail: str | None = None, **kwargs: Any) -> Response:
    return Problem(status, detail=detail, **kwargs).to_response()
