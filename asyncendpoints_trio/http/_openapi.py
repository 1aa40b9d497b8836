"""An OpenAPI 3.1 document of the mapped routes, built from the handlers' types."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .._handlers import HandlerSpec
from ._admin_openapi import SCHEMAS as ADMIN_SCHEMAS
from ._admin_openapi import admin_paths
from ._idempotency import KEY_PATTERN
from ._request import NOT_BEFORE_PATTERN

_CONVERTER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")

_JOB_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "name", "status", "retryCount", "maxRetries", "createdAt",
                 "lastUpdatedAt"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "name": {"type": "string"},
        "status": {"enum": ["Queued", "Scheduled", "InProgress", "Completed", "Failed",
                            "Canceled"]},
        "retryCount": {"type": "integer"},
        "maxRetries": {"type": "integer"},
        "createdAt": {"type": "string", "format": "date-time"},
        "startedAt": {"type": ["string", "null"], "format": "date-time"},
        "completedAt": {"type": ["string", "null"], "format": "date-time"},
        "lastUpdatedAt": {"type": "string", "format": "date-time"},
        "result": {},
        "error": {"anyOf": [{"$ref": "#/components/schemas/JobError"}, {"type": "null"}]},
        "cancelRequested": {"type": "boolean"},
        "priority": {"type": "integer", "minimum": 0, "maximum": 9},
        "nextAttemptAt": {"type": ["string", "null"], "format": "date-time",
                          "description": "while Scheduled: when the next attempt may start"},
        "attempts": {"type": "array", "description": "the latest ten runs, oldest first",
                     "items": {"$ref": "#/components/schemas/Attempt"}},
    },
}

_EXCEPTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "an exception and, in innerException, its cause (the whole chain)",
    "properties": {
        "type": {"type": "string", "description": "its type, by the name users import it by"},
        "message": {"type": "string"},
        "stackTrace": {"type": ["string", "null"],
                       "description": "null unless the app sets expose_stack_traces"},
        "innerException": {"anyOf": [{"$ref": "#/components/schemas/JobException"},
                                     {"type": "null"}]},
    },
}

_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["code", "message"],
    "properties": {
        "code": {"type": "string", "description": "HandlerError, Timeout, InvalidPayload, "
                 "ResultSerializationError, ResultTooLarge, OutcomeUnwritable, HandlerCrashed, "
                 "UnknownHandler, LeaseExpired"},
        "message": {"type": "string"},
        "exception": {"anyOf": [{"$ref": "#/components/schemas/JobException"},
                                {"type": "null"}]},
    },
}

_ATTEMPT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "attempt": {"type": "integer"},
        "startedAt": {"type": ["string", "null"], "format": "date-time"},
        "endedAt": {"type": "string", "format": "date-time"},
        "outcome": {"enum": ["Completed", "Failed", "Retrying", "Canceled", "Released",
                             "LeaseExpired"]},
        "error": {"type": ["object", "null"], "properties": {
            "code": {"type": ["string", "null"]}, "message": {"type": ["string", "null"]}}},
    },
}

_OPERATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "a job as Azure's operation status monitor shows it",
    "required": ["id", "status"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "status": {"enum": ["NotStarted", "Running", "Succeeded", "Failed", "Canceled"]},
        "error": {"type": "object", "required": ["code", "message"],
                  "description": "when Failed or Canceled",
                  "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                                 "innererror": {}}},
        "result": {"description": "the handler's result, when Succeeded"},
        "resourceLocation": {"type": "string", "description": "when Succeeded: the job's "
                             "URL (or, without a job route, this monitor's)"},
    },
}

_SUBMIT_HEADERS: list[dict[str, Any]] = [
    {"name": "Idempotency-Key", "in": "header", "required": False,
     "description": "a structured-field String (\"k1\"; bare k1 is read as the same key): "
     "the same key with the same request returns the same job",
     "schema": {"type": "string", "maxLength": 255, "pattern": KEY_PATTERN}},
    {"name": "X-Async-Request-Id", "in": "header", "required": False,
     "description": "a GUID: the job's id, and its idempotency key",
     "schema": {"type": "string", "maxLength": 255}},
    {"name": "X-Not-Before", "in": "header", "required": False,
     "description": "start no earlier than this: delay-seconds or an HTTP-date",
     "schema": {"type": "string", "pattern": NOT_BEFORE_PATTERN}},
]

# Any value is taken: preferences the server does not know, or cannot read, are ignored.
_PREFER_HEADER: dict[str, Any] = {
    "name": "Prefer", "in": "header", "required": False,
    "description": "RFC 7240: wait=N (answer with the final job if it ends within N "
    "seconds, capped by max_wait), respond-async",
    "schema": {"type": "string"}}

_SUBMIT_ANSWER_HEADERS: dict[str, Any] = {
    "Location": {"schema": {"type": "string"}},
    "Vary": {"schema": {"type": "string"}},
    "Preference-Applied": {"schema": {"type": "string"}},
    "Idempotency-Key-Retention": {
        "description": "with a key: seconds the key is kept after its job ends",
        "schema": {"type": "integer"}},
    "Idempotent-Replayed": {"description": "the key matched a job stored before",
                            "schema": {"const": "true"}},
}

_PRIORITY_HEADER: dict[str, Any] = {
    "name": "X-Priority", "in": "header", "required": False,
    "description": "0 (the lowest) to 9; higher is claimed first",
    "schema": {"type": "integer", "minimum": 0, "maximum": 9}}

_PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"}, "code": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
}


@dataclass(frozen=True, slots=True)
class RouteInfo:
    method: str
    rule: str
    spec: HandlerSpec
    has_hook: bool = False
    has_authorize: bool = False
    client_priority: bool = True


def _body_required(spec: HandlerSpec) -> bool:
    """A missing body reads as ``null``: required unless the request type takes null."""
    try:
        spec.request_adapter.validate_json(b"null")
    except Exception:
        return True
    return False


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/problem+json": {
        "schema": {"$ref": "#/components/schemas/Problem"}}}}


def _path(rule: str) -> tuple[str, list[dict[str, Any]]]:
    names = _CONVERTER.findall(rule)
    params = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
              for n in names]
    return _CONVERTER.sub(lambda m: "{" + m.group(1) + "}", rule), params


def _job_of(name: str, result: dict[str, Any]) -> dict[str, Any]:
    """The job JSON of one route: ``result`` has the handler's result type."""
    return {"allOf": [{"$ref": "#/components/schemas/Job"}, {"type": "object", "properties": {
        "name": {"const": name},
        "result": {"anyOf": [result, {"type": "null"}],
                   "description": "the handler's result, once Completed"}}}]}


def build_openapi(title: str, routes: list[RouteInfo], job_rule: str | None, *,
                  guarded: bool = False, operation_rule: str | None = None,
                  admin_prefix: str | None = None) -> dict[str, Any]:
    schemas: dict[str, Any] = {"Job": _JOB_SCHEMA, "Problem": _PROBLEM_SCHEMA,
                               "JobError": _ERROR_SCHEMA, "JobException": _EXCEPTION_SCHEMA,
                               "Attempt": _ATTEMPT_SCHEMA}
    hidden = "No such job" + (", or not one this request may see" if guarded else "")
    refusals: dict[str, Any] = {}
    if guarded:
        refusals = {"401": _problem("Refused by the authorize hook: not authenticated"),
                    "403": _problem("Refused by the authorize hook: not allowed")}
    accepted_headers: dict[str, Any] = {**_SUBMIT_ANSWER_HEADERS,
                                        "Retry-After": {"schema": {"type": "integer"}}}
    if operation_rule is not None:
        accepted_headers["Operation-Location"] = {
            "description": "the absolute URL of the job's operation status",
            "schema": {"type": "string", "format": "uri"}}
    paths: dict[str, Any] = {}

    def schema_of(spec: HandlerSpec, which: str) -> dict[str, Any]:
        adapter = spec.request_adapter if which == "request" else spec.result_adapter
        schema = adapter.json_schema(ref_template="#/components/schemas/{model}",
                                     mode="validation" if which == "request" else "serialization")
        schemas.update(schema.pop("$defs", {}))
        return schema

    for route in routes:
        path, params = _path(route.rule)
        result = schema_of(route.spec, "result")
        job_name = f"Job_{route.spec.name}"
        schemas.setdefault(job_name, _job_of(route.spec.name, result))
        responses: dict[str, Any] = {
            "200": {"description": "With Prefer: wait=N, the job ended within N seconds: "
                    "the final job (Completed, Failed or Canceled)",
                    "headers": {**{k: v for k, v in accepted_headers.items()
                                   if k != "Retry-After"},
                                "Content-Location": {"schema": {"type": "string"}}},
                    "content": {"application/json": {"schema": {
                        "$ref": f"#/components/schemas/{job_name}"}}}},
            "202": {"description": "Queued (Scheduled with X-Not-Before)",
                    "headers": accepted_headers,
                    "content": {"application/json": {"schema": {
                        "$ref": f"#/components/schemas/{job_name}"}}}},
            "400": _problem("Malformed JSON, or a malformed header"),
            "409": _problem("A request with this idempotency key is still being processed"),
            "413": _problem("Body too large"),
            "415": _problem("Not application/json"),
            "422": _problem("The body fails validation (`errors` lists the fields), or the "
                            "idempotency key was used for another request"),
            "503": _problem("Queue full or store unavailable; see Retry-After"),
        }
        if route.has_hook or route.has_authorize:
            # A hook may answer instead; these are the answers hooks are for.
            responses["401"] = _problem("Refused by the route's hook: not authenticated")
            responses["403"] = _problem("Refused by the route's hook: not allowed")
        headers = [*_SUBMIT_HEADERS, *([_PRIORITY_HEADER] if route.client_priority else []),
                   _PREFER_HEADER]
        paths.setdefault(path, {})[route.method.lower()] = {
            "operationId": f"{route.method.lower()}_{route.spec.name}",
            "summary": f"Queue a {route.spec.name} job",
            "parameters": [*params, *headers],
            "requestBody": {"required": _body_required(route.spec), "content": {
                "application/json": {"schema": schema_of(route.spec, "request")}}},
            "responses": responses,
        }
    if job_rule is not None:
        path, params = _path(job_rule)
        job_ok = {"content": {"application/json": {"schema": {
            "$ref": "#/components/schemas/Job"}}}}
        paths[path] = {
            "get": {"operationId": "get_job", "summary": "Read a job",
                    "parameters": [*params, {"name": "wait", "in": "query", "required": False,
                                             "description": "long-poll up to this many "
                                             "seconds (capped by max_wait); given once",
                                             "schema": {"type": "number", "minimum": 0}},
                                            {**_PREFER_HEADER, "description": "RFC 7240: "
                                             "wait=N, as ?wait=N (the query wins)"}],
                    "responses": {"200": {"description": "The job", **job_ok},
                                  "400": _problem("Bad wait value"),
                                  "404": _problem(hidden), **refusals,
                                  "503": _problem("Store unavailable")}},
            "delete": {"operationId": "cancel_job", "summary": "Cancel a job",
                       "parameters": params,
                       "responses": {"200": {"description": "Canceled", **job_ok},
                                     "202": {"description": "Cancellation requested", **job_ok},
                                     "404": _problem(hidden), **refusals,
                                     "409": _problem("The job has finished already"),
                                     "503": _problem("Store unavailable")}},
        }
    if operation_rule is not None:
        schemas["Operation"] = _OPERATION_SCHEMA
        path, params = _path(operation_rule)
        paths[path] = {"get": {
            "operationId": "get_operation", "summary": "A job's operation status (Azure's)",
            "parameters": params,
            "responses": {"200": {"description": "The operation status; Retry-After until "
                                  "it is final", "headers": {
                                      "Retry-After": {"schema": {"type": "integer"}}},
                                  "content": {"application/json": {"schema": {
                                      "$ref": "#/components/schemas/Operation"}}}},
                          "404": _problem(hidden), **refusals,
                          "503": _problem("Store unavailable")}}}
    if admin_prefix is not None:
        schemas.update(ADMIN_SCHEMAS)
        paths.update(admin_paths(admin_prefix, _problem))
    return {"openapi": "3.1.0", "info": {"title": title, "version": "1"}, "paths": paths,
            "components": {"schemas": schemas}}
