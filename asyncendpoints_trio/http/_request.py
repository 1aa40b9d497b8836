"""Reading a submit request: content type, size limit, JSON body, HTTP context, idempotency."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class RequestMeta:
    """What a submit needs from the request besides its body, read in one pass."""

    context: HttpContext  # sensitive headers removed: this is what gets stored
    every_header: tuple[tuple[str, str], ...]  # for the pre-queue hook
    idempotency_key: str | None
    job_id: str


def read_meta(request: Request, config: EndpointsConfig) -> RequestMeta:
    drop = config.sensitive_headers - config.persist_sensitive_headers
    every = tuple([(name.lower(), value) for name, value in request.headers.items()])
    found: dict[str, str] = {}
    for name, value in every:
        if value and name in IDEMPOTENCY_HEADERS and name not in found:
            found[name] = value
    key = found.get("idempotency-key")
    if key is None and "x-async-request-id" in found:
        # The original's header names the job by a GUID, which becomes the job id in its
        # canonical form; the key must be that same form, or the same GUID in capitals
        # would be another key for the same job id (409 for the identical request).
        key = _canonical_guid(found["x-async-request-id"])
    if key is not None and len(key) > 255:
        header = "Idempotency-Key" if "idempotency-key" in found else "X-Async-Request-Id"
        raise Problem(400, detail=f"{header} is longer than 255 characters",
                      code="BadIdempotencyKey")
    view_args = request.view_args
    context = HttpContext(
        headers=tuple([pair for pair in every if pair[0] not in drop]),
        route_params={k: str(v) for k, v in view_args.items()} if view_args else {},
        # request.args parses the query string; most submits have none.
        query_params=({k: tuple(v) for k, v in request.args.lists()}
                      if request.query_string else {}),
    )
    return RequestMeta(context, every, key, _job_id(found))


def _canonical_guid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return value


def _job_id(found: dict[str, str]) -> str:
    """The original lets a client choose the job id with ``X-Async-Request-Id`` (a GUID).

    We honour that only when that header is also the idempotency key in use (no
    ``Idempotency-Key`` beside it), so a chosen id always maps to one job: a second submit
    with it finds the first job.
    """
    chosen = found.get("x-async-request-id")
    if chosen is not None and "idempotency-key" not in found:
        try:
            return str(uuid.UUID(chosen))
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
