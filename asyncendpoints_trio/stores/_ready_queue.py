"""The in-memory store's line of ``Queued`` jobs: priorities, first in first out, and released
jobs first, every operation O(log n).

The order is the Redis store's (``lua/_lib.lua``): a job joins with place ``seq -
PRIORITY_STEP * priority`` (``seq`` counting every job that joined at the back), a released
or reclaimed job goes before the lowest place in line, and the lowest place is claimed first.
Leaving the line early (a cancel) only forgets the job's place; its heap entry is skipped
when it comes up.
"""

from __future__ import annotations

import heapq

from .._job import MAX_PRIORITY, PRIORITY_STEP


class ReadyQueue:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, str]] = []  # (place, tiebreak, id)
        self._place: dict[str, float] = {}
        self._seq = 0
        self._tiebreak = 0

    def _push(self, job_id: str, place: float) -> None:
        self._tiebreak += 1
        self._place[job_id] = place
        heapq.heappush(self._heap, (place, self._tiebreak, job_id))

    def push_back(self, job_id: str, priority: int = 0) -> None:
        self._seq += 1
        self._push(job_id, self._seq - PRIORITY_STEP * priority)

    def push_front(self, job_id: str) -> None:
        # Before the lowest place taken, and before any place a job joining now could take.
        first = self._seq + 1 - PRIORITY_STEP * MAX_PRIORITY
        lowest = self._lowest()
        self._push(job_id, (first if lowest is None else min(lowest, first)) - 1)

    def _lowest(self) -> float | None:
        while self._heap and self._place.get(self._heap[0][2]) != self._heap[0][0]:
            heapq.heappop(self._heap)  # a stale entry: the job left the line
        return self._heap[0][0] if self._heap else None

    def pop(self) -> str | None:
        if self._lowest() is None:
            return None
        _, _, job_id = heapq.heappop(self._heap)
        del self._place[job_id]
        return job_id

    def remove(self, job_id: str) -> None:
        self._place.pop(job_id, None)

    def __len__(self) -> int:
        return len(self._place)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._place
