"""Reading a submit request: content type, size limit, JSON body, HTTP context, idempotency."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from pydantic import TypeAdapter, ValidationError
from quart import Request
from werkzeug.exceptions import RequestEntityTooLarge

from .._config import EndpointsConfig
from .._job import HttpContext
from ._problems import Problem

IDEMPOTENCY_HEADERS = ("idempotency-key", "x-async-request-id")


def _is_json(content_type: str) -> bool:
    mime = content_type.split(";", 1)[0].strip().lower()
    return mime == "application/json" or (mime.startswith("application/") and
                                          mime.endswith("+json"))


async def read_body(request: Request, config: EndpointsConfig) -> bytes:
    """The raw body, within the size limit; an empty body without a type reads as ``null``."""
    length = request.content_length
    if length is not None and length > config.max_body_size:
        # We answer without reading the body, so the connection cannot carry another request.
        raise Problem(413, detail=f"the body is {length} bytes; the limit is "
                      f"{config.max_body_size}", code="BodyTooLarge",
                      headers={"Connection": "close"})
    try:
        body: bytes = await request.get_data(cache=False, as_text=False, parse_form_data=False)
    except RequestEntityTooLarge:
        body = b""
        length = config.max_body_size + 1
    # A chunked body has no Content-Length to check up front, so check what arrived.
    if len(body) > config.max_body_size or (length or 0) > config.max_body_size:
        raise Problem(413, detail=f"the body is over the limit of {config.max_body_size} bytes",
                      code="BodyTooLarge")
    content_type = request.headers.get("content-type")
    if not body and not content_type:
        return b"null"
    if not content_type or not _is_json(content_type):
        raise Problem(415, detail=f"expected application/json, got {content_type or 'none'}",
                      code="UnsupportedMediaType")
    return body


def validate(adapter: TypeAdapter[Any], body: bytes) -> Any:
    try:
        return adapter.validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        if any(e["type"] == "json_invalid" for e in errors):
            raise Problem(400, detail=f"the body is not valid JSON: {errors[0]['msg']}",
                          code="MalformedJson") from None
        fields = [
            {"field": ".".join(str(p) for p in e["loc"]) or "$", "message": e["msg"],
             "type": e["type"]}
            for e in errors
        ]
        raise Problem(422, detail=f"the request has {len(fields)} invalid field(s)",
                      code="ValidationFailed", errors=fields) from None


def http_context(request: Request, config: EndpointsConfig) -> HttpContext:
    drop = config.sensitive_headers - config.persist_sensitive_headers
    headers = tuple(
        (name.lower(), value)
        for name, value in request.headers.items()
        if name.lower() not in drop
    )
    route = {k: str(v) for k, v in (request.view_args or {}).items()}
    query = {k: tuple(v) for k, v in request.args.lists()}
    return HttpContext(headers=headers, route_params=route, query_params=query)


def idempotency_key(request: Request) -> str | None:
    for name in IDEMPOTENCY_HEADERS:
        value = request.headers.get(name)
        if value:
            if len(value) > 255:
                raise Problem(400, detail=f"{name} is longer than 255 characters",
                              code="BadIdempotencyKey")
            return value
    return None


def job_id_for(request: Request, key: str | None) -> str:
    """The original lets a client choose the job id with ``X-Async-Request-Id`` (a GUID).

    We honour that only when that header is also the idempotency key in use, so that a
    chosen id always maps to one job: a second submit with it finds the first job.
    """
    if key is not None and key == request.headers.get("x-async-request-id") and \
            not request.headers.get("idempotency-key"):
        try:
            return str(uuid.UUID(key))
        except ValueError:
            pass
    return str(uuid.uuid4())


def fingerprint(name: str, payload: bytes, context: HttpContext) -> str:
    """What makes two submits "the same request" for an idempotency key: the job name,
    the body, and the route and query values (``/tenants/a`` is not ``/tenants/b``)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(name.encode() + b"\0" + payload + b"\0")
    digest.update(repr(sorted(context.route_params.items())).encode())
    digest.update(repr(sorted(context.query_params.items())).encode())
    return digest.hexdigest()
