"""Capped exponential backoff with jitter: the one formula behind every retry in the library.

Actor restarts, job retries, the outcome writer and the Redis client's reconnects all wait
``min(cap, base * multiplier ** (n - 1))`` seconds before try ``n + 1``, scaled by a random
factor so that a fleet that failed together does not retry together.

The power is never computed past the cap: ``2.0 ** 1025`` raises ``OverflowError``, and a
job on its 1025th retry (or an actor in a week-long outage) must still get a number.
"""

from __future__ import annotations

import math
import random


def capped_exponential(n: int, *, base: float, cap: float, multiplier: float = 2.0) -> float:
    """The delay before retry ``n`` (1-based), without jitter; finite for any ``n``."""
    if base <= 0 or cap <= 0:
        return max(0.0, min(base, cap))
    steps = max(0, n - 1)
    if multiplier <= 1.0 or steps == 0:
        return min(cap, base)
    # base * multiplier ** steps >= cap  <=>  steps >= log(cap / base) / log(multiplier)
    if cap <= base or steps >= math.log(cap / base) / math.log(multiplier):
        return cap
    return min(cap, base * multiplier**steps)


def jittered(delay: float, jitter: float, rng: random.Random | None = None) -> float:
    """``delay`` scaled by a random factor in ``[1 - jitter, 1]``."""
    return delay * (1.0 - (rng or random).random() * jitter)


def backoff_delay(failures: int, cap: float, base: float = 0.1,
                  rng: random.Random | None = None) -> float:
    """For loops that retry an operation of ours: jitter of one half."""
    return jittered(capped_exponential(failures, base=base, cap=cap), 0.5, rng)
