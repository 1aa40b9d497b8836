"""What every actor has: a ``run()`` loop for the supervisor and a ``statistics()`` snapshot."""

from __future__ import annotations

import dataclasses
from typing import Any


class Actor:
    """Mixin for the actor dataclasses; each keeps its counters in a ``stats`` dataclass."""

    __slots__ = ()
    stats: Any

    def statistics(self) -> dict[str, Any]:
        """A copy of the actor's counters, safe to keep and compare later."""
        return dataclasses.asdict(self.stats)

    async def run(self) -> None:
        raise NotImplementedError
