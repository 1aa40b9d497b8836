"""Loaded by each of Hypercorn's worker processes when ``serve --workers N`` (N > 1)."""

from __future__ import annotations

import json
import os
from typing import Any

from ._cli import configure_logging, load_endpoints
from ._cli_serve import SPEC_ENV


def load() -> Any:
    spec = json.loads(os.environ[SPEC_ENV])
    configure_logging(spec["log_level"])
    app, _ = load_endpoints(spec["app"], spec["overrides"])
    return app
