"""Retry policy: capped exponential backoff with jitter."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from ._backoff import capped_exponential, jittered
from ._errors import ConfigurationError, NonRetryableError


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a handler's failures are retried.

    Retry ``n`` (1-based) waits ``min(max_delay, base_delay * multiplier ** (n - 1))`` seconds,
    scaled by a random factor in ``[1 - jitter, 1]`` so that jobs failing together do not
    retry together. ``NonRetryableError`` and the types in ``non_retryable`` fail at once.
    """

    max_retries: int = 3
    base_delay: float = 1.0
    multiplier: float = 2.0
    max_delay: float = 300.0
    jitter: float = 0.2
    non_retryable: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int):
            raise ConfigurationError(f"max_retries must be an integer, not {self.max_retries!r}")
        if self.max_retries < 0:
            raise ConfigurationError(f"max_retries must be >= 0, not {self.max_retries}")
        for name in ("base_delay", "multiplier", "max_delay", "jitter"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigurationError(f"{name} must be a number, not {value!r}")
            if not math.isfinite(value):
                raise ConfigurationError(f"{name} must be a finite number, not {value}")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ConfigurationError("retry delays (base_delay, max_delay) must be >= 0")
        if self.multiplier < 1:
            raise ConfigurationError(f"multiplier must be >= 1, not {self.multiplier}")
        if not 0 <= self.jitter <= 1:
            raise ConfigurationError(f"jitter must be within [0, 1], not {self.jitter}")
        if not all(isinstance(t, type) and issubclass(t, BaseException)
                   for t in self.non_retryable):
            raise ConfigurationError("non_retryable must be a tuple of exception types")

    def delay(self, retry_number: int, rng: random.Random | None = None) -> float:
        raw = capped_exponential(retry_number, base=self.base_delay, cap=self.max_delay,
                                 multiplier=self.multiplier)
        return jittered(raw, self.jitter, rng)

    def is_retryable(self, exc: BaseException) -> bool:
        return not isinstance(exc, (NonRetryableError, *self.non_retryable))
