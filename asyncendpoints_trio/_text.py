"""Words for log lines and messages."""

from __future__ import annotations


def plural(count: int, noun: str, plural_form: str | None = None) -> str:
    """``1 job``, ``2 jobs``, ``0 jobs``."""
    return f"{count} {noun if count == 1 else plural_form or noun + 's'}"
