"""Loaded by each of Hypercorn's worker processes when ``serve --workers N`` (N > 1)."""

from __future__ import annotations

import json
import os
from typing import Any

from ._cli import load_endpoints
from ._cli_serve import SPEC_ENV
from ._logging import configure_logging


def load() -> Any:
    spec = json.loads(os.environ[SPEC_ENV])
    configure_logging(spec["log_level"], spec.get("log_format", "text"))
    app, endpoints = load_endpoints(spec["app"], spec["overrides"])
    if spec.get("metrics"):
        endpoints.map_metrics_once()
    return app
