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

# token / quoted-string (RFC 9110 5.6.2, 5.6.4); the quoted string's escapes are undone below.
_WORD = r'(?:[!#$%&\'*+.^_`|~0-9A-Za-z-]+|"(?:[^"\\]|\\.)*")'
_PREFERENCE = re.compile(
    r'\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*(?:=\s*(' + _WORD + r'))?\s*'
    r'((?:;\s*[!#$%&\'*+.^_`|~0-9A-Za-z-]+\s*(?:=\s*' + _WORD + r')?\s*)*)\s*(?:,|$)')
_SECONDS = re.compile(r"\d{1,9}(?:\.\d{1,6})?")


@dataclass(frozen=True, slots=True)
class Preferences:
    respond_async: bool = False
    wait: float | None = None  # seconds, as asked (not yet capped)

    @property
    def stated(self) -> bool:
        return self.respond_async or self.wait is not None


NONE = Preferences()


def _unquote(word: str) -> str:
    if word.startswith('"'):
        return re.sub(r"\\(.)", r"\1", word[1:-1])
    return word


def _preferences(value: str) -> Iterable[tuple[str, str | None]]:
    """``(name, value)`` per preference of one field value; a malformed element and
    everything after it are skipped (its end cannot be told apart from a quoted comma)."""
    at = 0
    while at < len(value):
        # A list may hold empty elements (RFC 9110 5.6.1): ", , wait=5".
        while at < len(value) and value[at] in " \t,":
            at += 1
        if at == len(value):
            return
        match = _PREFERENCE.match(value, at)
        if match is None or match.end() == at:
            return
        at = match.end()
        word = match.group(2)
        yield match.group(1).lower(), None if word is None else _unquote(word)


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
