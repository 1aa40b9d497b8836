"""Retry policy: capped exponential backoff with jitter."""

from __future__ import annotations

import random
from dataclasses import dataclass

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
        if self.max_retries < 0:
            raise ConfigurationError("max_retries must be >= 0")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ConfigurationError("retry delays must be >= 0")
        if self.multiplier < 1:
            raise ConfigurationError("multiplier must be >= 1")
        if not 0 <= self.jitter <= 1:
            raise ConfigurationError("jitter must be within [0, 1]")

    def delay(self, retry_number: int, rng: random.Random | None = None) -> float:
        raw = min(self.max_delay, self.base_delay * self.multiplier ** max(0, retry_number - 1))
        factor = 1.0 - (rng or random).random() * self.jitter
        return raw * factor

    def is_retryable(self, exc: BaseException) -> bool:
        return not isinstance(exc, (NonRetryableError, *self.non_retryable))
