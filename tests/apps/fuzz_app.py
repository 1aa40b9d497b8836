"""An app for the OpenAPI fuzz run: typed routes of every method, a hook, the job route, the
operation status route."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import pydantic
from quart_trio import QuartTrio

from asyncendpoints_trio import (
    AsyncContext,
    AsyncEndpoints,
    EndpointsConfig,
    Problem,
    SubmitContext,
)


def _json_schema_integer(value: Any) -> Any:
    # JSON Schema's `integer`: 578.0 is one, `true` and "5" are not. Pydantic's lax mode takes
    # all three and its strict mode none of the floats, so neither matches the document the
    # fuzzer checks against; this field does (handlers.md, Strict validation, says why).
    if isinstance(value, bool | str):
        raise ValueError("Input should be a valid integer")
    return value


class Order(pydantic.BaseModel):
    item: str = pydantic.Field(min_length=1, max_length=50)
    quantity: Annotated[int, pydantic.BeforeValidator(_json_schema_integer)] = pydantic.Field(
        ge=1, le=1000)
    note: str | None = None


@dataclass
class Receipt:
    item: str
    total: int


@dataclass
class Rename:
    name: str


app = QuartTrio(__name__)
# Long-polls capped well below the fuzzer's 10 s request timeout: fuzzed jobs may wait
# (X-Not-Before), and a fuzzed ?wait= is often huge.
endpoints = AsyncEndpoints(app, config=EndpointsConfig(max_wait=2.0))


@endpoints.handler("Order")
async def order(ctx: AsyncContext[Order]) -> Receipt:
    return Receipt(ctx.request.item, ctx.request.quantity * 3)


@endpoints.handler("Rename")
async def rename(ctx: AsyncContext[Rename]) -> str:
    return ctx.request.name.upper()


@endpoints.handler("Purge")
async def purge(ctx: AsyncContext[Any]) -> None:
    return None


def only_known_tenants(ctx: SubmitContext[Rename]) -> Any:
    if ctx.route_params.get("tenant") == "blocked":
        raise Problem(403, detail="this tenant may not rename", code="Forbidden")
    return None


endpoints.map_async_post("Order", "/orders")
endpoints.map_async_put("Rename", "/tenants/<tenant>/name", hook=only_known_tenants)
endpoints.map_async_delete("Purge", "/tenants/<tenant>/cache")
endpoints.map_job_details("/jobs/<uuid:job_id>")
endpoints.map_operation_status("/operations/<uuid:job_id>")
