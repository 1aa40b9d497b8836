"""Turn an exception, with its whole cause chain, into the job's ``error`` object."""

from __future__ import annotations

import traceback
from typing import Any

# A cause chain can be cyclic or absurdly deep; the JSON must stay finite and small.
_MAX_CHAIN = 16
_MAX_TRACE_CHARS = 8_000


def _exception_obj(exc: BaseException, depth: int = 0) -> dict[str, Any]:
    inner: BaseException | None = exc.__cause__
    if inner is None and not exc.__suppress_context__:
        inner = exc.__context__
    trace = "".join(traceback.format_tb(exc.__traceback__))[-_MAX_TRACE_CHARS:]
    return {
        "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "message": str(exc),
        "stackTrace": trace or None,
        "innerException": (
            _exception_obj(inner, depth + 1) if inner is not None and depth < _MAX_CHAIN else None
        ),
    }


def error_from_exception(
    code: str, exc: BaseException, message: str | None = None
) -> dict[str, Any]:
    return {
        "code": code,
        "message": message if message is not None else (str(exc) or type(exc).__name__),
        "exception": _exception_obj(exc),
    }


def error_from_message(code: str, message: str) -> dict[str, Any]:
    return {"code": code, "message": message, "exception": None}
