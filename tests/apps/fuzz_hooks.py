"""Schemathesis hooks for tests/test_fuzz.py: fuzzed requests are independent of each other.

The fuzzer draws the same small idempotency keys ("0") again and again with different
bodies; the API rightly answers a reused key ``422 IdempotencyKeyReused`` (the IETF draft's
status), which the check that valid requests are accepted would count as a valid request
refused. So each well-formed key is made unique, in the form it was drawn in (quoted or
bare); malformed ones are sent as drawn, so their ``400`` is still fuzzed.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import schemathesis

from asyncendpoints_trio.http._idempotency import KEY_PATTERN


def _fresh(name: str, value: Any) -> Any:
    if not isinstance(value, str) or not value.strip(" \t") or len(value) > 255:
        return value
    if name == "idempotency-key":
        if re.fullmatch(KEY_PATTERN, value) is None:
            return value
        return f'"{uuid.uuid4()}"' if value.strip(" \t").startswith('"') else str(uuid.uuid4())
    return str(uuid.uuid4())  # X-Async-Request-Id: any value is a key


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    headers = case.headers
    if not headers:
        return
    for name in list(headers):
        if name.lower() in ("idempotency-key", "x-async-request-id"):
            headers[name] = _fresh(name.lower(), headers[name])
