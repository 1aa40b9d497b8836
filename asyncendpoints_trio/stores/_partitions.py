"""A queue over P partitions: which partition a job lives in, and where claims look next.

Partition ``k`` of queue ``q`` has its own hash tag (``{q}`` for partition 0, today's layout,
and ``{q|k}`` or ``{q|k.n}`` for the others: see ``tags``), so its keys land on their own
Cluster slot and every script still touches one slot. A job lives in ``crc32(id) % P``:
reads, cancels and long-polls go straight to it. An id the library draws for a submit with
an idempotency key is drawn in ``crc32(key) % P``, so that every submit with that key meets
the same partition and dedupe holds; a client-chosen id keeps its own partition (over HTTP
the key and the chosen id come from the same header, so they never part).
"""

from __future__ import annotations

import binascii
import functools
import uuid
import zlib

MAX_PARTITIONS = 256
_SLOTS = 16384
# How long a claim skips a partition it found empty (seconds), unless told of work there.
EMPTY_FOR = 0.5


def _slot(tag: str) -> int:
    return binascii.crc_hqx(tag.encode(), 0) % _SLOTS


@functools.lru_cache(maxsize=64)
def tags(queue: str, partitions: int) -> tuple[str, ...]:
    """The hash tags of a queue's partitions, chosen to fall in P different equal slices
    of the slot space (in each slice's middle half): a cluster whose N primaries serve equal
    contiguous shares of the slots, as ``redis-cli --cluster create`` makes them, then holds
    P / N partitions on each primary when N divides P. Plain ``{q|k}`` tags would land by
    chance (with 6 over 3 primaries, a quarter of queue names leave one primary without
    any). Partition 0 keeps the queue's own tag, and its slice is the one it falls in; the
    others take the remaining slices in order, each the first of ``q|k``, ``q|k.1``,
    ``q|k.2``, ... that lands in the middle half of its slice (about 2P tries each)."""
    if partitions == 1:
        return (queue,)
    width = _SLOTS / partitions

    def lands(tag: str, part: int) -> bool:
        offset = _slot(tag) - part * width
        return width / 4 <= offset < width * 3 / 4

    first = int(_slot(queue) // width)
    found = [queue]
    for k, part in enumerate((s for s in range(partitions) if s != first), start=1):
        tag, n = f"{queue}|{k}", 0
        while not lands(tag, part):
            n += 1
            tag = f"{queue}|{k}.{n}"
        found.append(tag)
    return tuple(found)


def partition_of(text: str, partitions: int) -> int:
    if partitions == 1:
        return 0
    return zlib.crc32(text.encode()) % partitions


def id_in(partition: int, partitions: int) -> str:
    """A fresh random job id whose partition is ``partition`` (P draws on average)."""
    while True:
        job_id = str(uuid.uuid4())
        if partition_of(job_id, partitions) == partition:
            return job_id


class ClaimOrder:
    """Where an instance's claims look, and in which order.

    Each claim starts one partition further on and skips the partitions it found empty
    lately, until something says they may hold work again: a submit of ours into one, a
    wake-up from it, a retry of its falling due, or ``EMPTY_FOR`` passing. That last one is
    what keeps a busy instance from starving a partition: a wake-up token waits for an idle
    instance, and a busy one never blocks, so it looks again by itself (one script call per
    empty partition per ``EMPTY_FOR``).

    An idle instance blocks on every partition's wake-up list, so while it waits it hears of
    new work in any of them: the marks of the partitions no wake-up came from hold on
    through the wait (``waited``). An idle wait that ends with no wake-up at all looks at
    one partition, the next in turn, as the backstop against a missed wake-up (with one
    partition that is the claim after every idle wait): so an empty partition costs no
    claims while the queue is idle, and a missed wake-up is found within P idle waits.
    """

    __slots__ = ("_backstop", "_due", "_empty", "_next", "partitions")

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self._next = 0
        self._empty: dict[int, float] = {}  # partition -> trio time the mark lapses
        self._due: dict[int, float] = {}  # partition -> trio time its first retry is due
        self._backstop = 0  # the partition an idle wait without a wake-up looks at next

    def order(self, now: float) -> list[int]:
        start = self._next
        self._next = (self._next + 1) % self.partitions
        for k, due in list(self._due.items()):
            if due <= now:
                self._empty.pop(k, None)
                del self._due[k]
        for k, until in list(self._empty.items()):
            if until <= now:
                del self._empty[k]
        ring = [(start + i) % self.partitions for i in range(self.partitions)]
        return [k for k in ring if k not in self._empty]

    def claimed(self, partition: int, asked: int, got: int, due: float | None,
                now: float) -> None:
        """A claim of ``asked`` from ``partition`` took ``got`` at ``now``; ``due``: when
        its next retry falls due (trio time), if any."""
        if got < asked:
            self._empty[partition] = now + EMPTY_FOR
        else:
            self._empty.pop(partition, None)
        if due is None:
            self._due.pop(partition, None)
        else:
            self._due[partition] = due

    def due(self, partition: int, at: float) -> None:
        """A retry may fall due in ``partition`` at ``at`` (trio time)."""
        self._due[partition] = min(at, self._due.get(partition, at))

    def woken(self, partition: int) -> None:
        self._empty.pop(partition, None)

    def waited(self, woken: set[int], now: float) -> None:
        """An idle wait ended at ``now``, woken by the partitions in ``woken`` (none: its
        timeout). Every partition was watched meanwhile, so the others' marks hold on."""
        for k in self._empty:
            self._empty[k] = now + EMPTY_FOR
        if not woken:
            woken = {self._backstop}
            self._backstop = (self._backstop + 1) % self.partitions
        for k in woken:
            self._empty.pop(k, None)

    def next_due(self) -> float | None:
        return min(self._due.values(), default=None)
