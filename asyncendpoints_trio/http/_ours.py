"""Which request paths are ours, for the answers routing gives before any view runs.

A path that matches no rule gets a ``404`` and a path without a rule for its method a
``405`` from routing, as Quart's HTML pages. Under our rules they are problem+json like
every other answer of ours; elsewhere they stay the host app's own, which may have pages
of its own for them. "Under our rules" means a path one of our rules matches whatever its
method, the same rule with its converters loosened (``/echo/x/not-an-int``), and for the
job and operation routes everything below their fixed part (``/jobs/<id>/anything``,
``/jobs/not-a-uuid/x``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule

_CONVERTER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


class OurPaths:
    def __init__(self) -> None:
        self._rules: list[str] = []
        self._map: Map | None = None

    def add(self, rule: str, *, subtree: bool = False) -> None:
        self._rules += [rule, _CONVERTER.sub(r"<\1>", rule)]
        fixed = rule.split("<", 1)[0]
        # A rule whose fixed part is "/" alone would claim the whole app: not its subtree.
        if subtree and fixed.endswith("/") and fixed != "/":
            self._rules += [fixed + "<path:_rest>", fixed, fixed.rstrip("/")]
        self._map = None

    def covers(self, path: str, converters: Mapping[str, Any]) -> bool:
        if not self._rules:
            return False
        if self._map is None:
            # No methods: a rule matches a path under any method, which is the question.
            rules = [Rule(r, endpoint=f"ours{i}") for i, r in enumerate(dict.fromkeys(
                self._rules))]
            self._map = Map(rules, converters=dict(converters))
        try:
            self._map.bind("localhost").match(path)
        except NotFound:
            return False
        except HTTPException:
            return True  # a redirect (a trailing slash): the path is one of ours
        return True
