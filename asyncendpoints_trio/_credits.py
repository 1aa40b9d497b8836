"""Claim credits: how many more jobs this instance may hold right now.

Credits start at ``concurrency + prefetch``. The dispatcher takes one per claimed job and a
worker gives it back when its handler is done, so an instance never hoards claimed jobs whose
lease clocks run while nobody works on them.
"""

from __future__ import annotations

import trio


class Credits:
    def __init__(self, total: int) -> None:
        self.total = total
        self._free = total
        self._changed = trio.Event()

    @property
    def free(self) -> int:
        return self._free

    def take(self, n: int) -> None:
        if n > self._free:
            raise RuntimeError(f"taking {n} credits, {self._free} free")
        self._free -= n

    def give(self, n: int = 1) -> None:
        self._free += n
        self._changed.set()
        self._changed = trio.Event()

    async def wait_free(self) -> None:
        while self._free <= 0:
            await self._changed.wait()
