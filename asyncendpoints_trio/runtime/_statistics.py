"""Snapshots of the actors' counters: frozen, typed, safe to keep and compare.

Each actor keeps its counters in a small mutable dataclass (``IntakeStats`` ...), updated in
place on its hot path. ``snapshot`` copies one into its frozen twin, a dataclass made once
per counter class with the same fields, so the public type of ``statistics()`` is declared
once and cannot drift from what is counted.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@functools.cache
def _twin(cls: type[Any]) -> type[Any]:
    fields = [(f.name, f.type, dataclasses.field(default=f.default))
              for f in dataclasses.fields(cls)]
    name = cls.__name__.removesuffix("Stats") + "Statistics"
    return dataclasses.make_dataclass(name, fields, frozen=True, slots=True,
                                      namespace={"__module__": cls.__module__,
                                                 "__doc__": f"A snapshot of {cls.__name__}."})


def snapshot(stats: T) -> T:
    """A frozen copy of ``stats`` (same fields; a class of its own)."""
    values = {f.name: getattr(stats, f.name) for f in dataclasses.fields(stats)}  # type: ignore[arg-type]
    frozen: T = _twin(type(stats))(**values)  # type: ignore[arg-type]
    return frozen


@dataclass(frozen=True, slots=True)
class RuntimeStatistics:
    """``Runtime.statistics()``. The worker-side actors are ``None`` on an API-only instance
    (``run_workers=False``)."""

    intake: Any
    recovery: Any
    store_events: Any
    dispatcher: Any | None
    workers: Any | None
    outcomes: Any | None
    lease_keeper: Any | None
    held_jobs: int
    store: Mapping[str, Any]
