"""Progress reports: what a handler may report, checked where it reports it."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import orjson

# Where a report goes: the held job's pending slot, which the lease keeper writes with
# its next renewal (or the outcome writer with the outcome).
ProgressSink = Callable[[bytes], None]


def encode_progress(value: Any, limit: int) -> bytes:
    """``value`` as the JSON text stored with the job, or a ``TypeError``/``ValueError``
    that says what is wrong with it. Numbers are fractions done, in [0, 1]; objects are
    whatever the app wants its clients to see (``{"done": 40, "total": 100}``), up to
    ``limit`` bytes of JSON."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Mapping)):
        raise TypeError("progress must be a number in [0, 1] or a JSON object (a dict), "
                        f"not {type(value).__name__}")
    if not isinstance(value, Mapping):
        # Ints are compared as ints: math.isfinite(10**400) overflows, and the repr of a
        # long enough int is itself an error.
        if isinstance(value, int):
            if not 0 <= value <= 1:
                shown = repr(value) if abs(value) < 10**30 else "an int out of range"
                raise ValueError(f"progress must be a number in [0, 1], not {shown}")
        elif not math.isfinite(value) or not 0 <= value <= 1:
            raise ValueError(f"progress must be a number in [0, 1], not {value!r}")
        return orjson.dumps(float(value))
    try:
        text = orjson.dumps(value)
    except TypeError as exc:
        raise TypeError(f"progress must be JSON-serializable: {exc}") from None
    if len(text) > limit:
        raise ValueError(f"progress is {len(text)} bytes of JSON; the limit "
                         f"(max_progress_bytes) is {limit}")
    return text
