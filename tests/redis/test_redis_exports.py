"""The public face: names re-exported from private modules."""

from __future__ import annotations

import asyncendpoints_trio.redis as public


def test_public_names_come_from_private_modules() -> None:
    for name in public.__all__:
        assert hasattr(public, name), name
        value = getattr(public, name)
        module = getattr(value, "__module__", None)
        if module is not None and isinstance(value, type):
            assert module.startswith("asyncendpoints_trio.redis._"), (name, module)
