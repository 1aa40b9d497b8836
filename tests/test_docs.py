"""Every Python snippet in README.md and docs/pages/ runs as written.

A ```python block is a complete program: its imports, its types, its app. It is executed
as a module of its own (``__name__`` is not ``"__main__"``, so a snippet's
``if __name__ == "__main__":`` serving part is left out). A block whose first line is
``# (continues the example above)`` runs in the previous block's namespace, as a reader
pasting the page in order would. Output and signatures are ```text or ```pycon, not python.
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

from ._processes import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs" / "pages").glob("*.md"))]
FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```", re.M | re.S)
CONTINUES = "# (continues the example above)"


def snippets() -> list[tuple[str, int, str]]:
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 2
            found.append((page.relative_to(ROOT).as_posix(), line, match.group(1)))
    return found


SNIPPETS = snippets()


def test_the_docs_have_snippets() -> None:
    assert len(SNIPPETS) >= 15


@pytest.mark.parametrize("page", sorted({page for page, _, _ in SNIPPETS}))
def test_every_snippet_runs(page: str) -> None:
    module: types.ModuleType | None = None
    for name, line, code in SNIPPETS:
        if name != page:
            continue
        if module is None or not code.startswith(CONTINUES):
            # A real module: dataclasses and type hints look their module up by name.
            module = types.ModuleType(f"docs_snippet_{Path(page).stem}_{line}")
            sys.modules[module.__name__] = module
        try:
            exec(compile(code, f"{page}:{line}", "exec"), module.__dict__)
        except Exception as exc:
            raise AssertionError(f"{page}, the snippet at line {line}: "
                                 f"{type(exc).__name__}: {exc}") from exc
