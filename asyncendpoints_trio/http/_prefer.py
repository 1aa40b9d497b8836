"""``Prefer`` (RFC 7240): the preferences a request states, read leniently.

A preference the server does not know, or one whose value it cannot read, is ignored, as
RFC 7240 section 2 asks: ``Prefer`` never makes a request fail. Of a preference given more
than once only the first counts (section 2 again), across several ``Prefer`` fields too.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

# tchar (RFC 9110 5.6.2). The grammar is scanned by hand, one pass, rather than by a
# regular expression: one with optional whitespace on both sides of a repeated group
# backtracks exponentially on a short hostile header, and blocks the event loop meanwhile.
_TCHAR = frozenset("!#$%&'*+.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
                   "ABCDEFGHIJKLMNOPQRSTUVWXYZ-")
_SECONDS = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,6})?")


@dataclass(frozen=True, slots=True)
class Preferences:
    respond_async: bool = False
    wait: float | None = None  # seconds, as asked (not yet capped)

    @property
    def stated(self) -> bool:
        return self.respond_async or self.wait is not None


NONE = Preferences()


def _skip_space(value: str, at: int) -> int:
    while at < len(value) and value[at] in " \t":
        at += 1
    return at


def _token_end(value: str, at: int) -> int:
    while at < len(value) and value[at] in _TCHAR:
        at += 1
    return at


def _word(value: str, at: int) -> tuple[str, int] | None:
    """A token or a quoted-string (RFC 9110 5.6.4, escapes undone) at ``at``, and where it
    ends; ``None`` if there is neither."""
    if at < len(value) and value[at] == '"':
        out: list[str] = []
        i = at + 1
        while i < len(value):
            char = value[i]
            if char == "\\":
                if i + 1 == len(value):
                    return None
                out.append(value[i + 1])
                i += 2
            elif char == '"':
                return "".join(out), i + 1
            else:
                out.append(char)
                i += 1
        return None  # unterminated
    end = _token_end(value, at)
    return None if end == at else (value[at:end], end)


def _value_after_equals(value: str, at: int) -> tuple[str | None, int] | None:
    """``BWS "=" BWS word`` if it starts at ``at``: (the word, where it ends); (None, at)
    when there is no ``=``; ``None`` when there is one but no word after it."""
    at = _skip_space(value, at)
    if at >= len(value) or value[at] != "=":
        return None, at
    word = _word(value, _skip_space(value, at + 1))
    if word is None:
        return None
    return word[0], _skip_space(value, word[1])


def _preferences(value: str) -> Iterable[tuple[str, str | None]]:
    """``(name, value)`` per preference of one field value; a malformed element and
    everything after it are skipped (its end cannot be told apart from a quoted comma)."""
    at = 0
    while True:
        # A list may hold empty elements (RFC 9110 5.6.1): ", , wait=5".
        while at < len(value) and value[at] in " \t,":
            at += 1
        if at >= len(value):
            return
        end = _token_end(value, at)
        if end == at:
            return
        name = value[at:end].lower()
        got = _value_after_equals(value, end)
        if got is None:
            return
        word, at = got
        while at < len(value) and value[at] == ";":  # parameters: read, and ignored
            at = _skip_space(value, at + 1)
            end = _token_end(value, at)
            if end == at:
                continue  # "wait=5;" ends with an empty parameter, which is allowed
            param = _value_after_equals(value, end)
            if param is None:
                return
            at = param[1]
        if at < len(value) and value[at] != ",":
            return
        yield name, word


def parse_prefer(fields: Iterable[str]) -> Preferences:
    """The preferences of every ``Prefer`` field of a request, in order."""
    seen: dict[str, str | None] = {}
    for field in fields:
        for name, value in _preferences(field):
            seen.setdefault(name, value)
    if not seen:
        return NONE
    wait: float | None = None
    raw = seen.get("wait")
    # RFC 7240's wait is delta-seconds; a fraction is read too (as ?wait= reads it).
    if raw is not None and _SECONDS.fullmatch(raw.strip()):
        seconds = float(raw)
        wait = seconds if math.isfinite(seconds) else None
    # respond-async takes no value; one with a value is not the preference we know.
    respond_async = "respond-async" in seen and seen["respond-async"] is None
    return Preferences(respond_async=respond_async, wait=wait)


def seconds_text(seconds: float) -> str:
    """``wait=`` as ``Preference-Applied`` states it: ``5``, or ``0.5``."""
    return str(int(seconds)) if seconds == int(seconds) else f"{seconds:g}"


def applied(*, respond_async: bool = False, wait: float | None = None) -> str | None:
    parts = (["respond-async"] if respond_async else []) + (
        [] if wait is None else [f"wait={seconds_text(wait)}"])
    return ", ".join(parts) or None
