from __future__ import annotations

import pytest
from trio.testing import MockClock

from asyncendpoints_trio import MemoryStore

from .store_contract import StoreContract
from .store_contract_admin import AdminContract
from .store_contract_progress import ProgressContract


@pytest.fixture
def clock() -> MockClock:
    return MockClock(autojump_threshold=0)


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore(retention=2.0)


class TestMemoryStore(StoreContract, ProgressContract, AdminContract):
    pass


def test_an_operators_retry_is_an_edge_of_the_table() -> None:
    from asyncendpoints_trio import TRANSITIONS, JobStatus
    from asyncendpoints_trio._job import RETRYABLE

    assert {JobStatus.FAILED, JobStatus.CANCELED} == RETRYABLE
    for status in JobStatus:
        assert (JobStatus.QUEUED in TRANSITIONS[status]) == (
            status in RETRYABLE | {JobStatus.SCHEDULED, JobStatus.IN_PROGRESS})
    assert TRANSITIONS[JobStatus.COMPLETED] == frozenset()
