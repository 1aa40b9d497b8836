from __future__ import annotations

import pytest
from trio.testing import MockClock

from asyncendpoints_trio import MemoryStore

from .store_contract import StoreContract
from .store_contract_progress import ProgressContract


@pytest.fixture
def clock() -> MockClock:
    return MockClock(autojump_threshold=0)


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore(retention=2.0)


class TestMemoryStore(StoreContract, ProgressContract):
    pass
