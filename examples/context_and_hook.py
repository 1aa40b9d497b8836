"""Route and query parameters, headers, a pre-queue hook, a class-based handler.

Run it:   python examples/context_and_hook.py        (serves on http://127.0.0.1:8001)
    or:   python -m asyncendpoints_trio serve examples.context_and_hook:app --bind 127.0.0.1:8001

Then:
    # 202: queued. Repeated ?format= keys all reach the handler.
    curl -si -X POST 'localhost:8001/api/tenants/acme/reports?format=csv&format=pdf' \
         -H 'content-type: application/json' -H 'X-Tenant-Token: token-acme' \
         -H 'X-Requested-By: alice' -d '{"title": "Q3", "months": [7, 8, 9]}'
    # 401: no X-Tenant-Token header (the hook answers; nothing is queued)
    curl -si -X POST localhost:8001/api/tenants/acme/reports \
         -H 'content-type: application/json' -d '{"title": "Q3", "months": [7]}'
    # 422: a business rule (more than 6 months), refused by the hook
    curl -si -X POST localhost:8001/api/tenants/acme/reports \
         -H 'content-type: application/json' -H 'X-Tenant-Token: token-acme' \
         -d '{"title": "All", "months": [1, 2, 3, 4, 5, 6, 7]}'
    # The class-based handler; tenant "frozen" fails at once with a NonRetryableError.
    curl -si -X POST localhost:8001/api/tenants/frozen/archive \
         -H 'content-type: application/json' -H 'X-Tenant-Token: token-frozen' \
         -d '{"older_than_days": 90}'
    curl -s 'localhost:8001/jobs/<id from Location>?wait=10'

Note: X-Tenant-Token is a secret. Sensitive headers are never stored with a job, and the
defaults already cover it (its name matches the pattern *token*); the app names it all the
same, to say so where a reader looks. Handlers do not see it; the pre-queue hook does, since
it sees every header of the request.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import trio
from quart_trio import QuartTrio

from asyncendpoints_trio import (
    SENSITIVE_HEADERS,
    AsyncContext,
    AsyncEndpoints,
    EndpointsConfig,
    NonRetryableError,
    Problem,
    RetryPolicy,
    SubmitContext,
)

FORMATS = {"csv", "pdf", "xlsx"}
MAX_MONTHS = 6


@dataclass
class ReportRequest:
    title: str
    months: list[int]


@dataclass
class Report:
    tenant: str
    title: str
    months: list[int]
    formats: list[str]
    requested_by: str | None
    attempt: int


@dataclass
class ArchiveRequest:
    older_than_days: int


@dataclass
class ArchiveResult:
    tenant: str
    archived: int


app = QuartTrio(__name__)
# X-Tenant-Token is a credential: never store it with a job (the defaults stay in the set;
# the *token* pattern would catch it anyway).
endpoints = AsyncEndpoints(app, config=EndpointsConfig(
    sensitive_headers=SENSITIVE_HEADERS | {"x-tenant-token"},
))


@endpoints.handler("BuildReport", timeout=30)
async def build_report(ctx: AsyncContext[ReportRequest]) -> Report:
    await trio.sleep(1)  # the real work
    return Report(
        tenant=ctx.route_params["tenant"],  # from /api/tenants/<tenant>/reports
        title=ctx.request.title,
        months=sorted(ctx.request.months),
        formats=list(ctx.query_params.get("format", ("csv",))),  # every ?format= value
        requested_by=ctx.headers.get("X-Requested-By"),  # header names are case-insensitive
        attempt=ctx.attempt,
    )


@endpoints.handler("ArchiveReports", retry=RetryPolicy(max_retries=2, base_delay=0.5))
class ArchiveReports:
    """A class-based handler: built once, with no arguments; ``handle`` runs per job."""

    def __init__(self) -> None:
        self.frozen = {"frozen"}

    async def handle(self, ctx: AsyncContext[ArchiveRequest]) -> ArchiveResult:
        tenant = ctx.route_params["tenant"]
        if tenant in self.frozen:
            # Retrying cannot help: fail the job now, whatever the retry policy says.
            raise NonRetryableError(f"tenant {tenant!r} is frozen; nothing can be archived")
        await trio.sleep(0.5)
        return ArchiveResult(tenant=tenant, archived=ctx.request.older_than_days // 30)


async def check_tenant(sub: SubmitContext[ReportRequest | ArchiveRequest]) -> Problem | None:
    """Runs after the body validated, before the job is stored. None: queue the job."""
    tenant = sub.route_params["tenant"]
    token = sub.headers.get("X-Tenant-Token")  # hooks see every header, sensitive ones too
    if not token:
        return Problem(401, detail="the X-Tenant-Token header is required",
                       code="MissingTenantToken")
    if token != f"token-{tenant}":  # stands in for a real check
        return Problem(403, detail=f"the token is not valid for tenant {tenant!r}",
                       code="WrongTenant")
    if isinstance(sub.request, ReportRequest):
        errors = []
        if len(sub.request.months) > MAX_MONTHS:
            errors.append({"field": "months", "type": "too_long",
                           "message": f"at most {MAX_MONTHS} months per report"})
        if any(not 1 <= m <= 12 for m in sub.request.months):
            errors.append({"field": "months", "type": "out_of_range",
                           "message": "months are numbered 1 to 12"})
        unknown = set(sub.query_params.get("format", ())) - FORMATS
        if unknown:
            errors.append({"field": "format", "type": "unknown_format",
                           "message": f"unknown format(s): {', '.join(sorted(unknown))}"})
        if errors:
            # The same shape as the library's own 422 answers.
            return Problem(422, detail=f"the request breaks {len(errors)} rule(s)",
                           code="ValidationFailed", errors=errors)
    return None


endpoints.map_async_post("BuildReport", "/api/tenants/<tenant>/reports", hook=check_tenant)
endpoints.map_async_post("ArchiveReports", "/api/tenants/<tenant>/archive", hook=check_tenant)
endpoints.map_job_details("/jobs/<uuid:job_id>")


if __name__ == "__main__":
    # The options of `serve` (--redis-url, --log-level ...); 127.0.0.1:8001 unless --bind.
    bind = [] if "--bind" in sys.argv else ["--bind", "127.0.0.1:8001"]
    sys.exit(endpoints.run([*bind, *sys.argv[1:]]))
