"""``MethodResult``: the original's explicit success/failure return, for parity."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


class HandlerFailure(Exception):
    """Raised for a ``MethodResult.failure`` whose error was a message, not an exception."""


@dataclass(frozen=True, slots=True)
class MethodResult(Generic[T]):
    """Return ``MethodResult.success(value)`` or ``MethodResult.failure(error)``.

    A failure is treated exactly as if the handler had raised ``error``: it is retried per
    policy unless it is a ``NonRetryableError``. Plain ``return`` and ``raise`` are the idiom;
    this exists for code ported from the .NET original.
    """

    value: T | None = None
    error: BaseException | None = None

    @classmethod
    def success(cls, value: T) -> MethodResult[T]:
        return cls(value=value)

    @classmethod
    def failure(cls, error: BaseException | str) -> MethodResult[T]:
        return cls(error=HandlerFailure(error) if isinstance(error, str) else error)

    @property
    def is_success(self) -> bool:
        return self.error is None
