"""Reading a submit request: content type, size limit, JSON body, HTTP context, idempotency,
start time and priority."""

from __future__ import annotations

import calendar
import fnmatch
import functools
import hashlib
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError
from quart import Request
from werkzeug.exceptions import RequestEntityTooLarge

from .._config import EndpointsConfig
from .._job import MAX_PRIORITY, MIN_PRIORITY, HttpContext
from ._idempotency import parse_idempotency_key
from ._problems import Problem

IDEMPOTENCY_HEADERS = ("idempotency-key", "x-async-request-id")
NOT_BEFORE_HEADER = "x-not-before"
PRIORITY_HEADER = "x-priority"
# Quart adds the client's address as a header the client never sent; it is kept apart.
_NOT_SENT = frozenset({"remote-addr"})
# Chosen job ids of different owners live in different namespaces (see _job_id).
_OWNER_IDS = uuid.UUID("6f1d2c1e-5d44-4f3c-9b1e-3b8f0a3e2c71")


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


def validate(adapter: TypeAdapter[Any], body: bytes, *, strict: bool = False) -> Any:
    try:
        return adapter.validate_json(body, strict=strict)
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


def is_sensitive(name: str, config: EndpointsConfig) -> bool:
    """Never stored with a job: named in ``sensitive_headers`` or matching one of
    ``sensitive_header_patterns``, unless the app names it in ``persist_sensitive_headers``;
    and, with an allow-list (``captured_headers``), anything not on it."""
    return _sensitive(name, config.persist_sensitive_headers, config.captured_headers,
                      config.sensitive_headers, config.sensitive_header_patterns)


# Every submit asks this of every header, and pattern matching was a tenth of the submit
# path's cost; header names repeat, so the answer is remembered. Frozensets keep their
# hash, so a lookup costs little more than hashing the name.
@functools.lru_cache(maxsize=4096)
def _sensitive(name: str, persist: frozenset[str], captured: frozenset[str] | None,
               sensitive: frozenset[str], patterns: tuple[str, ...]) -> bool:
    if name in persist:
        return False
    if captured is not None:
        return name not in captured
    return name in sensitive or any(fnmatch.fnmatchcase(name, p) for p in patterns)


@dataclass(frozen=True, slots=True)
class RequestMeta:
    """What a submit needs from the request besides its body, read in one pass."""

    context: HttpContext  # sensitive headers removed: this is what gets stored
    every_header: tuple[tuple[str, str], ...]  # for hooks
    raw_key: str | None  # the idempotency key as sent (normalised for X-Async-Request-Id)
    chosen_id: str | None  # a job id chosen with X-Async-Request-Id
    delay: float | None  # seconds until the job may start (X-Not-Before)
    raw_priority: str | None  # X-Priority, as sent: parsed only where the route takes it
    prefer: tuple[str, ...] = ()  # every Prefer field, as sent


def read_meta(request: Request, config: EndpointsConfig) -> RequestMeta:
    every: list[tuple[str, str]] = []
    kept: list[tuple[str, str]] = []
    found: dict[str, str] = {}
    prefer: list[str] = []
    for name, value in request.headers.items():
        name = name.lower()
        if name in _NOT_SENT:
            continue
        every.append((name, value))
        # An empty idempotency header counts as none (the original's rule); an empty start
        # time or priority is a malformed one.
        if name in _META_HEADERS and name not in found and \
                (value or name not in IDEMPOTENCY_HEADERS):
            found[name] = value
        elif name == "prefer":
            prefer.append(value)
        if not is_sensitive(name, config):
            kept.append((name, value))
    for header in ("Idempotency-Key", "X-Async-Request-Id"):
        if len(found.get(header.lower(), "")) > 255:
            raise Problem(400, detail=f"{header} is longer than 255 characters",
                          code="BadIdempotencyKey")
    key = found.get("idempotency-key")
    if key is not None:
        # "k" and k are one key; an empty String ("") is no key, as an empty header is.
        key = parse_idempotency_key(key) or None
    elif "x-async-request-id" in found:
        # The original's header names the job by a GUID, which becomes the job id in its
        # canonical form; the key must be that same form, or the same GUID in capitals
        # would be another key for the same job id (409 for the identical request).
        key = _canonical_guid(found["x-async-request-id"])
    view_args = request.view_args
    context = HttpContext(
        headers=tuple(kept),
        route_params={k: str(v) for k, v in view_args.items()} if view_args else {},
        # request.args parses the query string; most submits have none.
        query_params=({k: tuple(v) for k, v in request.args.lists()}
                      if request.query_string else {}),
        client=request.remote_addr,
    )
    chosen = found.get("x-async-request-id")
    if chosen is not None and "idempotency-key" not in found:
        chosen = _guid_or_none(chosen)
    else:
        chosen = None
    return RequestMeta(context, tuple(every), key, chosen,
                       _not_before(found.get(NOT_BEFORE_HEADER)),
                       found.get(PRIORITY_HEADER), tuple(prefer))


_META_HEADERS = frozenset({*IDEMPOTENCY_HEADERS, NOT_BEFORE_HEADER, PRIORITY_HEADER})


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# What X-Not-Before takes, as the OpenAPI document states it: delay-seconds (Retry-After's
# form) or an IMF-fixdate (RFC 9110), in UTC.
NOT_BEFORE_PATTERN = (
    r"^(\d{1,9}(\.\d{1,3})?|(Mon|Tue|Wed|Thu|Fri|Sat|Sun), (0[1-9]|[12]\d|3[01]) "
    r"(" + "|".join(_MONTHS) + r") (19|20)\d{2} ([01]\d|2[0-3]):[0-5]\d:[0-5]\d GMT)$")
_NOT_BEFORE = re.compile(NOT_BEFORE_PATTERN)


def _not_before(raw: str | None) -> float | None:
    """``X-Not-Before``: seconds from now until the job may start, ``None`` for now."""
    if raw is None:
        return None
    raw = raw.strip()
    if not _NOT_BEFORE.match(raw):
        raise Problem(400, detail=f"X-Not-Before must be a number of seconds or an HTTP-date "
                      f"(Wed, 21 Oct 2026 07:28:00 GMT), not {raw[:64]!r}",
                      code="BadNotBefore")
    if raw[0].isdigit():
        delay = float(raw)
    else:
        _, day, month, year, clock, _ = raw.split(" ")
        hour, minute, second = (int(part) for part in clock.split(":"))
        # timegm rolls a 31 Feb over into March rather than refuse it, as the pattern does.
        at = calendar.timegm((int(year), _MONTHS.index(month) + 1, int(day), hour, minute,
                              second))
        delay = at - time.time()
    return delay if delay > 0 else None


def parse_priority(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not raw.strip().isdigit() or not MIN_PRIORITY <= int(raw) <= MAX_PRIORITY:
        raise Problem(400, detail=f"X-Priority must be an integer from {MIN_PRIORITY} to "
                      f"{MAX_PRIORITY}, not {raw[:32]!r}", code="BadPriority")
    return int(raw)


def _canonical_guid(value: str) -> str:
    return _guid_or_none(value) or value


def _guid_or_none(value: str) -> str | None:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def scoped_key(raw: str, endpoint: str, owner: str | None) -> str:
    """Idempotency keys are the route's and the owner's: one tenant's key never meets
    another's, nor the same key on another route."""
    digest = hashlib.blake2b(f"{endpoint}\0{owner or ''}\0{raw}".encode(), digest_size=16)
    return digest.hexdigest()


def job_id_for(chosen: str | None, owner: str | None) -> str:
    """The original lets a client choose the job id with ``X-Async-Request-Id`` (a GUID).

    We honour that only when that header is also the idempotency key in use (no
    ``Idempotency-Key`` beside it), so a chosen id always maps to one job. With owners, the
    id is derived from the owner and the chosen GUID, so no client can take (squat) the id
    another tenant's client will choose.
    """
    if chosen is None:
        return str(uuid.uuid4())
    if owner is None:
        return chosen
    return str(uuid.uuid5(_OWNER_IDS, f"{owner}\0{chosen}"))


def fingerprint(name: str, payload: bytes, context: HttpContext) -> str:
    """What makes two submits "the same request" for an idempotency key: the job name,
    the body, and the route and query values (``/tenants/a`` is not ``/tenants/b``)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(name.encode() + b"\0" + payload + b"\0")
    digest.update(repr(sorted(context.route_params.items())).encode())
    digest.update(repr(sorted(context.query_params.items())).encode())
    return digest.hexdigest()
