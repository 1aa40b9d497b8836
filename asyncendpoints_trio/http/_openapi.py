"""An OpenAPI 3.1 document of the mapped routes, built from the handlers' types."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .._handlers import HandlerSpec

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
        "error": {"type": ["object", "null"]},
        "cancelRequested": {"type": "boolean"},
    },
}

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


def build_openapi(title: str, routes: list[RouteInfo], job_rule: str | None) -> dict[str, Any]:
    schemas: dict[str, Any] = {"Job": _JOB_SCHEMA, "Problem": _PROBLEM_SCHEMA}
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
        responses: dict[str, Any] = {
            "202": {"description": f"Queued. The job's result, once Completed: "
                    f"{result.get('title', route.spec.name)}",
                    "headers": {"Location": {"schema": {"type": "string"}},
                                "Retry-After": {"schema": {"type": "integer"}}},
                    "content": {"application/json": {"schema": {
                        "$ref": "#/components/schemas/Job"}}}},
            "400": _problem("Malformed JSON, or a malformed header"),
            "409": _problem("Idempotency key reused with another request"),
            "413": _problem("Body too large"),
            "415": _problem("Not application/json"),
            "422": _problem("The body fails validation; `errors` lists the fields"),
            "503": _problem("Queue full or store unavailable; see Retry-After"),
        }
        if route.has_hook:
            # A pre-queue hook may answer instead; these are the answers hooks are for.
            responses["401"] = _problem("Refused by the route's hook: not authenticated")
            responses["403"] = _problem("Refused by the route's hook: not allowed")
        paths.setdefault(path, {})[route.method.lower()] = {
            "operationId": f"{route.method.lower()}_{route.spec.name}",
            "summary": f"Queue a {route.spec.name} job",
            "parameters": params,
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
                                             "schema": {"type": "number", "minimum": 0}}],
                    "responses": {"200": {"description": "The job", **job_ok},
                                  "400": _problem("Bad wait value"),
                                  "404": _problem("No such job"),
                                  "503": _problem("Store unavailable")}},
            "delete": {"operationId": "cancel_job", "summary": "Cancel a job",
                       "parameters": params,
                       "responses": {"200": {"description": "Canceled", **job_ok},
                                     "202": {"description": "Cancellation requested", **job_ok},
                                     "404": _problem("No such job"),
                                     "409": _problem("The job has finished already"),
                                     "503": _problem("Store unavailable")}},
        }
    return {"openapi": "3.1.0", "info": {"title": title, "version": "1"}, "paths": paths,
            "components": {"schemas": schemas}}
