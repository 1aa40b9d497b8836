"""``Idempotency-Key`` as draft-ietf-httpapi-idempotency-key-header has it: the value is a
structured-field String (RFC 8941 3.3.3, ``"8e03978e-..."``); a bare value is still taken,
as sent, for the clients written before the draft. ``"abc"`` and ``abc`` are one key.

And the draft's concurrent case: a duplicate that arrives while the first request with its
key is still being processed answers ``409``. "Being processed" is this process's own
knowledge (``InFlight``); across instances the store's atomic check-and-insert makes the
later of two concurrent submits a replay of the earlier, which is as good an answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from ._problems import Problem

_STRING = r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\\"])*"'
_BARE_ITEM = (r'(?:-?\d{1,12}\.\d{1,3}|-?\d{1,15}|' + _STRING +
              r"|[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*|:[A-Za-z0-9+/=]*:|\?[01])")
# An Item may carry parameters (RFC 8941 3.1.2); we read past them and use none.
_PARAMETERS = r"(?:; *[a-z*][a-z0-9_\-.*]*(?:=" + _BARE_ITEM + r")?)*"
_ITEM = re.compile(r"(" + _STRING + r")" + _PARAMETERS)
# What the OpenAPI document states the header takes: empty (no key), a bare value, or a
# structured-field String with optional parameters. (Spaces around a field value are not
# part of it in HTTP, so the pattern leaves them out; the parser strips them.)
KEY_PATTERN = r'^(|[^ \t"].*|' + _STRING + _PARAMETERS + r")$"


def parse_idempotency_key(value: str) -> str:
    """The key an ``Idempotency-Key`` value names; ``400 BadIdempotencyKey`` when it starts
    as a structured-field String but is not one."""
    value = value.strip(" \t")
    if not value.startswith('"'):
        return value
    match = _ITEM.fullmatch(value)
    if match is None:
        raise Problem(400, detail="Idempotency-Key must be a structured-field String "
                      f"(RFC 8941), like \"8e03978e-40d5-43e8\", not {value[:64]!r}",
                      code="BadIdempotencyKey")
    return re.sub(r"\\(.)", r"\1", match.group(1)[1:-1])


class InFlight:
    """Scoped keys of the submits this process is still processing, with their requests'
    fingerprints: a duplicate is ``409 IdempotencyKeyInFlight``; another request under the
    same key, ``422 IdempotencyKeyReused`` (what it gets once the first is stored)."""

    def __init__(self) -> None:
        self._keys: dict[str, str] = {}

    @contextmanager
    def hold(self, key: str, fingerprint: str) -> Iterator[None]:
        known = self._keys.get(key)
        if known is not None:
            if known != fingerprint:
                raise Problem(422, detail="this idempotency key was used for another request",
                              code="IdempotencyKeyReused")
            raise Problem(409, detail="a request with this idempotency key is still being "
                          "processed; retry it later", code="IdempotencyKeyInFlight",
                          headers={"Retry-After": "1"})
        self._keys[key] = fingerprint
        try:
            yield
        finally:
            del self._keys[key]

    def __len__(self) -> int:
        return len(self._keys)
