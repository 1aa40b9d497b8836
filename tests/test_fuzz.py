"""Schemathesis against our own OpenAPI document, with every check, on both stores.

A bounded run (a fixed seed, a few dozen examples per operation): no 5xx, and no answer the
document does not describe (status codes, content types, headers, bodies), for valid and
invalid input alike.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from ._processes import ROOT, cli_process
from ._redis_server import RedisServer, redis_server_binary

pytestmark = pytest.mark.slow

ST = Path(sys.executable).parent / "st"


@pytest.fixture(params=["memory", "redis"])
def store_args(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    if request.param == "memory":
        yield []
        return
    if redis_server_binary() is None:
        pytest.skip("redis-server is not installed")
    with RedisServer() as server:
        yield ["--redis-url", server.url]


async def test_openapi_document_holds_under_fuzzing(store_args: list[str],
                                                    tmp_path: Path) -> None:
    args = ["serve", "tests.apps.fuzz_app:app", "--bind", "127.0.0.1:0", *store_args]
    async with cli_process(args) as service:
        command = [str(ST), "--config-file", str(ROOT / "tests" / "schemathesis.toml"), "run",
                   f"{service.url}/openapi.json", "--checks", "all",
                   # DELETE cancels a job, which stays readable (Canceled) until its
                   # retention ends: that is the API, not a "use after free".
                   "--exclude-checks", "use_after_free",
                   "--max-examples", "40", "--workers", "1", "--seed", "20261202",
                   "--no-color"]
        env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.apps.fuzz_hooks",
               "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
        result = await trio.run_process(command, cwd=ROOT, capture_stdout=True,
                                        capture_stderr=True, check=False, env=env)
        log = service.text
    report = result.stdout.decode(errors="replace")
    assert result.returncode == 0, report[-6000:]
    assert "Traceback" not in log, log[-4000:]
    assert "generated" in report
