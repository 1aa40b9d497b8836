"""What every actor has: ``run()`` for the supervisor, ``statistics()``, and a way back after
a crash."""

from __future__ import annotations

from typing import Any

from ._statistics import snapshot


class Actor:
    """Mixin for the actor dataclasses; each keeps its counters in a ``stats`` dataclass."""

    __slots__ = ()
    stats: Any

    def statistics(self) -> Any:
        """A frozen snapshot of the actor's counters, safe to keep and compare later."""
        return snapshot(self.stats)

    async def run(self) -> None:
        raise NotImplementedError

    async def after_crash(self, exc: Exception) -> None:
        """Called by the supervisor once ``run`` raised, before the restart.

        An actor that owns shared state (held jobs, credits, an unwritten batch) settles
        what its dead run left here, so the restart begins from a consistent state: a
        restarted actor is never a silently smaller one.
        """
