"""``AsyncContext``: what a handler sees of its job and of the request that made it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import trio

from ._job import HttpContext
from ._progress import ProgressSink, encode_progress

T = TypeVar("T")


class Headers(Mapping[str, str]):
    """Case-insensitive, read-only headers; ``getall`` gives every value of a repeated one."""

    __slots__ = ("_items",)

    def __init__(self, items: tuple[tuple[str, str], ...]) -> None:
        self._items = items

    def __getitem__(self, key: str) -> str:
        wanted = key.lower()
        for name, value in self._items:
            if name == wanted:
                return value
        raise KeyError(key)

    def __iter__(self):  # type: ignore[no-untyped-def]
        seen: set[str] = set()
        for name, _ in self._items:
            if name not in seen:
                seen.add(name)
                yield name

    def __len__(self) -> int:
        return len({name for name, _ in self._items})

    def getall(self, key: str) -> list[str]:
        wanted = key.lower()
        return [value for name, value in self._items if name == wanted]

    def __repr__(self) -> str:
        return f"Headers({list(self._items)!r})"


@dataclass(frozen=True, slots=True)
class AsyncContext(Generic[T]):
    """Passed to every handler. ``request`` is the validated request body."""

    request: T
    job_id: str
    job_name: str
    attempt: int  # 1 on the first run, 2 on the first retry, ...
    http: HttpContext
    owner: str | None = None  # the submitting request's owner claim (AsyncEndpoints.owner_of)
    # Where report_progress() sends reports, and their size cap. Without a sink (a context
    # built by hand, in a unit test) reports are checked and then dropped.
    progress_sink: ProgressSink | None = field(default=None, repr=False, compare=False)
    max_progress_bytes: int = field(default=4096, repr=False, compare=False)

    async def report_progress(self, value: float | Mapping[str, Any]) -> None:
        """Tell clients how far the job is: a number in [0, 1] or a small JSON object.

        Reports are cheap: the latest one is written with the lease's next renewal (one
        store write per heartbeat interval, however many reports), and the last one made
        before the handler returns is written with its outcome. It shows as ``progress``
        in the job JSON and on the event stream, and stays until the next report, across
        retries too. A bad value raises ``TypeError`` or ``ValueError`` here.
        """
        encoded = encode_progress(value, self.max_progress_bytes)
        if self.progress_sink is not None:
            self.progress_sink(encoded)
        await trio.lowlevel.checkpoint()

    @property
    def headers(self) -> Headers:
        return Headers(self.http.headers)

    @property
    def route_params(self) -> Mapping[str, str]:
        return self.http.route_params

    @property
    def client_address(self) -> str | None:
        """The submitting client's address, as the server saw it (not a header)."""
        return self.http.client

    @property
    def query_params(self) -> Mapping[str, tuple[str, ...]]:
        """Every value of each query key, in order: ``?tag=a&tag=b`` gives ``("a", "b")``."""
        return self.http.query_params
