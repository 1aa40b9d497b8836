"""Turn an exception, with its whole cause chain, into the job's ``error`` object.

This runs on exceptions that user code made, so nothing here may raise: an exception whose
``__str__`` raises, or whose traceback cannot be formatted, still gives an error object
(the reviewer's case: one such exception used to crash the whole worker pool).
"""

from __future__ import annotations

import sys
import traceback
from typing import Any

# A cause chain can be cyclic or absurdly deep; the JSON must stay finite and small.
_MAX_CHAIN = 16
_MAX_TRACE_CHARS = 8_000
_MAX_MESSAGE_CHARS = 4_000
_PACKAGE = "asyncendpoints_trio"


def safe_str(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception as failure:
        return f"<str() of {type(exc).__name__} raised {type(failure).__name__}>"
    if not isinstance(text, str):  # a __str__ that returns something else
        return f"<unprintable {type(exc).__name__}>"
    return text[:_MAX_MESSAGE_CHARS]


def type_name(tp: type[BaseException]) -> str:
    """``module.Qualname``, with our own types under the name users import them by."""
    module = getattr(tp, "__module__", "?")
    qualname = getattr(tp, "__qualname__", tp.__name__)
    if module == _PACKAGE or module.startswith(_PACKAGE + "."):
        package = sys.modules.get(_PACKAGE)
        if package is not None and getattr(package, qualname, None) is tp:
            return f"{_PACKAGE}.{qualname}"
    return f"{module}.{qualname}"


def _trace(exc: BaseException) -> str | None:
    try:
        text = "".join(traceback.format_tb(exc.__traceback__))
    except Exception:
        return None
    return text[-_MAX_TRACE_CHARS:] or None


def _exception_obj(exc: BaseException, seen: set[int], depth: int = 0) -> dict[str, Any]:
    seen.add(id(exc))
    inner: BaseException | None = exc.__cause__
    if inner is None and not exc.__suppress_context__:
        inner = exc.__context__
    if inner is not None and (depth >= _MAX_CHAIN or id(inner) in seen):
        inner = None
    return {
        "type": type_name(type(exc)),
        "message": safe_str(exc),
        "stackTrace": _trace(exc),
        "innerException": None if inner is None else _exception_obj(inner, seen, depth + 1),
    }


def error_from_exception(
    code: str, exc: BaseException, message: str | None = None
) -> dict[str, Any]:
    return {
        "code": code,
        "message": message if message is not None else (safe_str(exc) or type(exc).__name__),
        "exception": _exception_obj(exc, set()),
    }


def error_from_message(code: str, message: str) -> dict[str, Any]:
    return {"code": code, "message": message, "exception": None}
