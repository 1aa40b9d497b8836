"""The admin routes in the OpenAPI document (see ``_admin.py``)."""

from __future__ import annotations

from typing import Any

_STATUSES = ["Queued", "Scheduled", "InProgress", "Completed", "Failed", "Canceled"]
_TIME = {"type": "string", "format": "date-time"}
_TIME_OR_NULL = {"type": ["string", "null"], "format": "date-time"}
_COUNTS = {"type": "object", "properties": {s: {"type": "integer"} for s in _STATUSES}}

SCHEMAS: dict[str, Any] = {
    "AdminJobPage": {"type": "object", "required": ["jobs", "nextCursor"], "properties": {
        "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}},
        "nextCursor": {"type": ["string", "null"],
                       "description": "pass as cursor= for the next page; null: last page"}}},
    "AdminJob": {"allOf": [{"$ref": "#/components/schemas/Job"}, {
        "type": "object", "required": ["admin"], "properties": {"admin": {
            "type": "object", "properties": {
                "attempts": {"type": "array", "items": {"type": "object", "properties": {
                    "number": {"type": "integer"}, "startedAt": _TIME_OR_NULL,
                    "endedAt": _TIME, "outcome": {"type": "string"},
                    "errorCode": {"type": ["string", "null"]},
                    "errorMessage": {"type": ["string", "null"]}}}},
                "owner": {"type": ["string", "null"],
                          "description": "the instance holding its lease"},
                "leaseExpiresAt": _TIME_OR_NULL,
                "fencingToken": {"type": "integer"},
                "cancelRequested": {"type": "boolean"},
                "priority": {"type": "integer"},
                "dueAt": _TIME_OR_NULL,
                "audit": {"type": "array", "items": {"type": "object", "properties": {
                    "action": {"enum": ["retry", "cancel"]},
                    "by": {"type": ["string", "null"]}, "at": _TIME}}},
                "payload": {"description": "the request, only when the app sets "
                            "show_payloads"}}}}}]},
    "AdminInstances": {"type": "object", "properties": {"instances": {
        "type": "array", "items": {"type": "object", "properties": {
            "id": {"type": "string"}, "host": {"type": "string"}, "pid": {"type": "integer"},
            "startedAt": _TIME, "concurrency": {"type": "integer"},
            "jobsHeld": {"type": "integer"}, "lastHeartbeat": _TIME,
            "expiresAt": _TIME}}}}},
    "AdminStats": {"type": "object", "properties": {
        "byStatus": _COUNTS,
        "byName": {"type": "object", "additionalProperties": _COUNTS},
        "rates": {"type": "object", "properties": {
            "bucketSeconds": {"type": "integer"},
            "buckets": {"type": "array", "items": {"type": "object", "properties": {
                "at": _TIME, "submitted": {"type": "integer"},
                "completed": {"type": "integer"}, "failed": {"type": "integer"}}}}}}}},
}


def _json(ref: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{ref}"}}}}


def admin_paths(prefix: str, problem: Any) -> dict[str, Any]:
    """``problem(description)``: a problem+json response object."""
    guard = {"401": problem("Refused by the authorize hook: not authenticated"),
             "403": problem("Refused by the authorize hook: not allowed"),
             "503": problem("Store unavailable")}
    job_id = [{"name": "job_id", "in": "path", "required": True,
               "schema": {"type": "string", "format": "uuid"}}]
    tag = ["admin"]
    return {
        f"{prefix}/jobs": {"get": {
            "operationId": "admin_list_jobs", "tags": tag,
            "summary": "Jobs, newest first, by status and name",
            "parameters": [
                {"name": "status", "in": "query", "required": False, "explode": True,
                 "description": "repeat, or comma-separate", "schema": {
                     "type": "array", "items": {"enum": _STATUSES}}},
                {"name": "name", "in": "query", "required": False,
                 "schema": {"type": "string"}},
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}},
                {"name": "cursor", "in": "query", "required": False,
                 "schema": {"type": "string"}}],
            "responses": {"200": _json("AdminJobPage", "A page of jobs"),
                          "400": problem("A bad filter, limit or cursor"), **guard}}},
        f"{prefix}/jobs/{{job_id}}": {
            "get": {"operationId": "admin_get_job", "tags": tag, "parameters": job_id,
                    "summary": "A job with what an operator needs (Accept: "
                    "text/event-stream: its event stream)",
                    "responses": {"200": _json("AdminJob", "The job"),
                                  "404": problem("No such job"), **guard}},
            "delete": {"operationId": "admin_cancel_job", "tags": tag, "parameters": job_id,
                       "summary": "Cancel a job (audited)",
                       "responses": {"200": _json("Job", "Canceled"),
                                     "202": _json("Job", "Cancellation requested"),
                                     "404": problem("No such job"),
                                     "409": problem("The job has finished already"),
                                     **guard}}},
        f"{prefix}/jobs/{{job_id}}/retry": {"post": {
            "operationId": "admin_retry_job", "tags": tag, "parameters": job_id,
            "summary": "Put a Failed or Canceled job back in the queue (audited)",
            "responses": {"200": _json("AdminJob", "Queued again"),
                          "404": problem("No such job"),
                          "409": problem("The job is not Failed or Canceled"), **guard}}},
        f"{prefix}/instances": {"get": {
            "operationId": "admin_instances", "tags": tag,
            "summary": "The live instances on the store",
            "responses": {"200": _json("AdminInstances", "Live instances, by id"),
                          **guard}}},
        f"{prefix}/stats": {"get": {
            "operationId": "admin_stats", "tags": tag,
            "summary": "Queue depths per status and name, and per-minute rates",
            "responses": {"200": _json("AdminStats", "Statistics"), **guard}}},
    }
