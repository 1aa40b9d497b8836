"""A job's attempt history: what each run of its handler came to, shared by both stores."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._job import MAX_ATTEMPTS_KEPT, Attempt
from ._protocol import AckCancel, Complete, Fail, Outcome, Release

_MESSAGE_CHARS = 300


def outcome_label(outcome: Outcome, cancel_requested: bool) -> str | None:
    """How a run ended, for its history entry; ``None``: it was no run (a job released
    before its handler started)."""
    if isinstance(outcome, Complete):
        return "Completed"
    if isinstance(outcome, Release) and not outcome.ran:
        return None
    if isinstance(outcome, AckCancel) or cancel_requested:
        return "Canceled"
    if isinstance(outcome, Fail):
        return "Failed" if outcome.retry_delay is None else "Retrying"
    return "Released"


def error_summary(error: Mapping[str, Any] | None) -> tuple[str | None, str | None]:
    if not error:
        return None, None
    code = error.get("code")
    message = error.get("message")
    return (None if code is None else str(code),
            None if message is None else str(message)[:_MESSAGE_CHARS])


def appended(history: tuple[Attempt, ...], entry: Attempt) -> tuple[Attempt, ...]:
    return (*history, entry)[-MAX_ATTEMPTS_KEPT:]


def synthesized(history: tuple[Attempt, ...], *, status: str, retry_count: int,
                started_at: float | None, completed_at: float | None) -> tuple[Attempt, ...]:
    """Stores skip writing the history of the common case, a first run that completed;
    this is it, read back."""
    if history or status != "Completed" or retry_count or completed_at is None:
        return history
    return (Attempt(1, started_at, completed_at, "Completed"),)
