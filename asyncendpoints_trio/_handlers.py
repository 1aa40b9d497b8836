"""Handler registry: a job name, its coroutine, and the types read off its annotations."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter

from ._context import AsyncContext
from ._errors import ConfigurationError
from ._result import MethodResult
from ._retry import RetryPolicy

HandlerFunc = Callable[[AsyncContext[Any]], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    name: str
    func: HandlerFunc
    request_type: Any
    result_type: Any
    request_adapter: TypeAdapter[Any]
    result_adapter: TypeAdapter[Any]
    retry: RetryPolicy | None  # None: the runtime's default policy
    timeout: float | None  # None: the runtime's default timeout
    strict: bool | None = None  # strict validation of requests; None: the config's choice


def _callable_of(handler: Any) -> HandlerFunc:
    if inspect.isclass(handler):
        handler = handler()  # class-based handlers with a no-argument constructor
    if inspect.iscoroutinefunction(handler):
        return typing.cast(HandlerFunc, handler)
    handle = getattr(handler, "handle", None)
    if handle is not None and inspect.iscoroutinefunction(handle):
        return typing.cast(HandlerFunc, handle)
    raise ConfigurationError(
        f"{handler!r} is neither an async function nor an object with 'async def handle(ctx)'"
    )


def _unwrap(tp: Any, origin: Any) -> Any:
    if typing.get_origin(tp) is origin:
        args = typing.get_args(tp)
        return args[0] if args else Any
    return tp


def _types_of(name: str, func: HandlerFunc) -> tuple[Any, Any]:
    try:
        hints = typing.get_type_hints(func)
    except Exception as exc:  # NameError for a type defined where we cannot see it
        raise ConfigurationError(
            f"handler {name!r}: cannot resolve its type hints ({exc}); "
            "pass request_type= and result_type= to handler()"
        ) from exc
    params = [p for p in inspect.signature(func).parameters.values()]
    request_type: Any = Any
    if params:
        hint = hints.get(params[0].name, Any)
        if hint is AsyncContext:
            hint = Any
        request_type = _unwrap(hint, AsyncContext)
    result_type = _unwrap(hints.get("return", Any), MethodResult)
    return request_type, result_type


def make_spec(
    name: str,
    handler: Any,
    *,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
    request_type: Any = None,
    result_type: Any = None,
    strict: bool | None = None,
) -> HandlerSpec:
    if not name:
        raise ConfigurationError("a handler needs a non-empty job name")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or not 0 < timeout < float("inf")):
        raise ConfigurationError(f"handler {name!r}: timeout must be a finite number of "
                                 f"seconds > 0, not {timeout!r}")
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise ConfigurationError(f"handler {name!r}: retry must be a RetryPolicy")
    func = _callable_of(handler)
    both_given = request_type is not None and result_type is not None
    found_request, found_result = (Any, Any) if both_given else _types_of(name, func)
    req = request_type if request_type is not None else found_request
    res = result_type if result_type is not None else found_result
    try:
        request_adapter: TypeAdapter[Any] = TypeAdapter(req)
        result_adapter: TypeAdapter[Any] = TypeAdapter(res)
    except Exception as exc:  # pydantic cannot build a schema for the type
        raise ConfigurationError(f"handler {name!r}: unsupported type ({exc})") from exc
    return HandlerSpec(name, func, req, res, request_adapter, result_adapter, retry, timeout,
                       strict)


class HandlerRegistry:
    def __init__(self) -> None:
        self._specs: dict[str, HandlerSpec] = {}

    def add(self, spec: HandlerSpec) -> None:
        if spec.name in self._specs:
            raise ConfigurationError(f"a handler named {spec.name!r} is registered already")
        self._specs[spec.name] = spec

    def get(self, name: str) -> HandlerSpec | None:
        return self._specs.get(name)

    def require(self, name: str) -> HandlerSpec:
        spec = self._specs.get(name)
        if spec is None:
            known = ", ".join(sorted(self._specs)) or "none"
            raise ConfigurationError(
                f"no handler is registered for job name {name!r} (registered: {known})"
            )
        return spec

    def names(self) -> list[str]:
        return sorted(self._specs)
