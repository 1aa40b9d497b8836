"""The HTTP protocol around a submit: ``Prefer`` (RFC 7240) on submit and ``GET``, and
``Idempotency-Key`` as draft-ietf-httpapi-idempotency-key-header has it. Real Hypercorn,
real httpx, the memory store here (Redis: tests/redis/test_redis_protocol.py)."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest
import trio
from quart_trio import QuartTrio

from asyncendpoints_trio import (
    AsyncContext,
    AsyncEndpoints,
    EndpointsConfig,
    NonRetryableError,
    RetryPolicy,
    SubmitContext,
)
from asyncendpoints_trio.http._idempotency import KEY_PATTERN, parse_idempotency_key
from asyncendpoints_trio.http._prefer import Preferences, parse_prefer
from asyncendpoints_trio.http._problems import Problem

from .conftest import client_for
from .test_http import Order, assert_problem


class Gate:
    """Holds the pre-queue hook of ``/gated`` until released, so a first request is
    deterministically still being processed when its duplicate arrives."""

    def __init__(self) -> None:
        self.entered = trio.Event()
        self.release = trio.Event()


def make_app(config: EndpointsConfig | None = None) -> tuple[QuartTrio, AsyncEndpoints, Gate]:
    app = QuartTrio(__name__)
    endpoints = AsyncEndpoints(app, config=config or EndpointsConfig(shutdown_grace=1))
    gate = Gate()
    hold = trio.Event()  # Block jobs run until the test ends

    @endpoints.handler("Order", retry=RetryPolicy(max_retries=0))
    async def order(ctx: AsyncContext[Order]) -> int:
        return ctx.request.quantity * 3

    @endpoints.handler("Doomed", retry=RetryPolicy(max_retries=0))
    async def doomed(ctx: AsyncContext[Any]) -> None:
        raise NonRetryableError("never")

    @endpoints.handler("Block")
    async def block(ctx: AsyncContext[Any]) -> None:
        await hold.wait()

    async def gated(ctx: SubmitContext[Order]) -> None:
        gate.entered.set()
        await gate.release.wait()

    endpoints.map_async_post("Order", "/orders")
    endpoints.map_async_post("Order", "/gated", hook=gated)
    endpoints.map_async_post("Doomed", "/doomed")
    endpoints.map_async_post("Block", "/block")
    endpoints.map_job_details("/jobs/<uuid:job_id>")
    return app, endpoints, gate


ORDER = {"item": "tea", "quantity": 2}


# ---- Prefer: parsing ----------------------------------------------------------------------


@pytest.mark.parametrize(("fields", "expected"), [
    ([], Preferences()),
    (["wait=5"], Preferences(wait=5.0)),
    (["WAIT = 5"], Preferences(wait=5.0)),  # tokens are case-insensitive; BWS around "="
    (['wait="7"'], Preferences(wait=7.0)),  # a quoted-string word
    (["wait=0.25"], Preferences(wait=0.25)),
    (["respond-async, wait=10"], Preferences(respond_async=True, wait=10.0)),
    (["respond-async", "wait=10"], Preferences(respond_async=True, wait=10.0)),
    (["Respond-Async"], Preferences(respond_async=True)),
    (["handling=lenient, wait=3"], Preferences(wait=3.0)),  # handling is ignored
    (['foo; bar="a, b", wait=4'], Preferences(wait=4.0)),  # a quoted comma is not a split
    (["wait=2;x=1"], Preferences(wait=2.0)),  # parameters are read past
    ([", ,wait=6,"], Preferences(wait=6.0)),  # empty list elements
    (["wait=1, wait=9"], Preferences(wait=1.0)),  # the first one counts
    (["wait=1", "wait=9"], Preferences(wait=1.0)),  # across fields too
    (["wait=abc"], Preferences()),  # unreadable values are ignored, not refused
    (["wait=-1"], Preferences()),
    (["wait=1e3"], Preferences()),
    (["wait"], Preferences()),
    (["respond-async=yes"], Preferences()),
    (['wait=5, x="unterminated'], Preferences(wait=5.0)),
    (['x="unterminated, wait=5'], Preferences()),  # nothing after a malformed element
])
def test_prefer_is_read_as_rfc_7240_says(fields: list[str], expected: Preferences) -> None:
    assert parse_prefer(fields) == expected


def test_a_hostile_prefer_is_read_in_one_pass() -> None:
    # A regular expression with optional whitespace around a repeated group took 14 s on
    # this 65-byte value at n=16, tripling per step, with the event loop blocked. A linear
    # scan reads n=5,000 at once; the old parser would not have finished (pytest-timeout).
    for n in (16, 40, 5_000):
        assert parse_prefer(["a" + ";b  " * n + "\x01"]) == Preferences()
        assert parse_prefer(["wait=3" + ";b  " * n]) == Preferences(wait=3.0)
    assert parse_prefer(["wait=\u0663"]) == Preferences()  # an Arabic-Indic digit: not ASCII


# ---- Prefer: wait on a submit ---------------------------------------------------------------


async def test_prefer_wait_answers_200_with_the_final_job_when_it_is_fast() -> None:
    app, _, _ = make_app()
    async with client_for(app) as client:
        answer = await client.post("/orders", json=ORDER, headers={"Prefer": "wait=10"})
    assert answer.status_code == 200, answer.text
    job = answer.json()
    assert job["status"] == "Completed" and job["result"] == 6
    assert answer.headers["preference-applied"] == "wait=10"
    assert answer.headers["location"] == f"/jobs/{job['id']}"
    assert answer.headers["content-location"] == answer.headers["location"]
    assert answer.headers["vary"] == "Prefer"
    assert "retry-after" not in answer.headers


async def test_prefer_wait_a_failed_job_is_still_200_with_its_error() -> None:
    app, _, _ = make_app()
    async with client_for(app) as client:
        answer = await client.post("/doomed", headers={"Prefer": "wait=10"})
    assert answer.status_code == 200, answer.text
    job = answer.json()
    assert job["status"] == "Failed" and job["error"]["code"] == "HandlerError"
    assert answer.headers["preference-applied"] == "wait=10"


async def test_prefer_wait_answers_202_for_a_slow_job() -> None:
    app, _, _ = make_app()
    async with client_for(app) as client:
        answer = await client.post("/block", headers={"Prefer": "wait=0.2"})
        assert answer.status_code == 202, answer.text
        assert answer.json()["status"] in ("Queued", "InProgress")
        assert answer.headers["preference-applied"] == "wait=0.2"
        assert answer.headers["retry-after"] == "1"
        assert answer.headers["location"] == f"/jobs/{answer.json()['id']}"
        assert answer.headers["vary"] == "Prefer"
        both = await client.post("/block", headers={"Prefer": "respond-async, wait=0.1"})
        assert both.status_code == 202
        assert both.headers["preference-applied"] == "respond-async, wait=0.1"


async def test_prefer_wait_is_capped_by_max_wait_and_off_at_zero() -> None:
    app, _, _ = make_app(EndpointsConfig(shutdown_grace=1, max_wait=0.1))
    async with client_for(app) as client:
        capped = await client.post("/block", headers={"Prefer": "wait=3600"})
        assert capped.status_code == 202
        assert capped.headers["preference-applied"] == "wait=0.1"
    app, _, _ = make_app(EndpointsConfig(shutdown_grace=1, max_wait=0))
    async with client_for(app) as client:
        off = await client.post("/orders", json=ORDER, headers={"Prefer": "wait=10"})
        assert off.status_code == 202
        assert "preference-applied" not in off.headers


async def test_respond_async_is_acknowledged_and_unknown_preferences_ignored() -> None:
    app, _, _ = make_app()
    async with client_for(app) as client:
        answer = await client.post("/orders", json=ORDER, headers={"Prefer": "respond-async"})
        assert answer.status_code == 202
        assert answer.headers["preference-applied"] == "respond-async"
        for ignored in ("wait=soon", "return=minimal", "handling=strict", "wait"):
            plain = await client.post("/orders", json=ORDER, headers={"Prefer": ignored})
            assert plain.status_code == 202, ignored
            assert "preference-applied" not in plain.headers
            assert plain.headers["vary"] == "Prefer"
        # Two Prefer fields are one list.
        two = await client.post("/orders", json=ORDER,
                                headers=[("Prefer", "foo"), ("Prefer", "wait=10")])
        assert two.status_code == 200 and two.json()["status"] == "Completed"


# ---- Prefer: wait on GET ----------------------------------------------------------------


async def test_prefer_wait_on_get_long_polls_like_the_query() -> None:
    app, _, _ = make_app()
    async with client_for(app) as client:
        location = (await client.post("/orders", json=ORDER)).headers["location"]
        with trio.fail_after(10):
            done = await client.get(location, headers={"Prefer": "wait=10"})
        assert done.status_code == 200 and done.json()["status"] == "Completed"
        assert done.headers["preference-applied"] == "wait=10"
        assert done.headers["vary"] == "Prefer, Accept"
        missing = await client.get(f"/jobs/{uuid.uuid4()}", headers={"Prefer": "wait=1"})
        assert missing.status_code == 404 and missing.headers["vary"] == "Prefer, Accept"
        assert "preference-applied" not in missing.headers
        slow = (await client.post("/block")).headers["location"]
        waited = await client.get(slow, headers={"Prefer": "wait=0.1"})
        assert waited.status_code == 200 and waited.json()["status"] != "Completed"
        assert waited.headers["preference-applied"] == "wait=0.1"
        # Both given: the query wins, so the preference was not what was applied.
        query = await client.get(slow, params={"wait": "0"}, headers={"Prefer": "wait=60"})
        assert query.status_code == 200 and "preference-applied" not in query.headers
        assert_problem(await client.get(slow, params={"wait": "x"},
                                        headers={"Prefer": "wait=1"}), 400, "BadWait")
        plain = await client.get(slow, headers={"Prefer": "wait=nope"})
        assert plain.status_code == 200 and "preference-applied" not in plain.headers


# ---- Idempotency-Key: the syntax -------------------------------------------------------------


@pytest.mark.parametrize(("value", "key"), [
    ('"abc"', "abc"),
    ("abc", "abc"),
    ('  "abc"  ', "abc"),
    (r'"a\"b\\c"', 'a"b\\c'),
    ('"8e03978e-40d5-43e8-bc93-6894a57f9324";v=1', "8e03978e-40d5-43e8-bc93-6894a57f9324"),
    ('"x"; a; b=?1; c="d"; e=:aGk=:; f=1.5; g=tok', "x"),
    ('a"b', 'a"b'),  # bare: as sent
])
def test_idempotency_key_reads_a_structured_field_string(value: str, key: str) -> None:
    assert parse_idempotency_key(value) == key


@pytest.mark.parametrize("value", ['"unterminated', '"a"junk', '"a" "b"', '"tab\there"',
                                   '"bad \\escape"', '"', '"é"', '"a";B=1'])
def test_malformed_idempotency_key_is_refused(value: str) -> None:
    with pytest.raises(Problem) as raised:
        parse_idempotency_key(value)
    assert raised.value.status == 400 and raised.value.code == "BadIdempotencyKey"
    # The OpenAPI document's pattern refuses exactly these too.
    assert re.fullmatch(KEY_PATTERN, value) is None


def test_the_documented_pattern_takes_what_the_parser_takes() -> None:
    for value in ('"abc"', "abc", "", '"x";v=1', 'a"b', "k  "):
        assert re.fullmatch(KEY_PATTERN, value), value


async def test_quoted_and_bare_spellings_are_one_key() -> None:
    app, endpoints, _ = make_app(EndpointsConfig(shutdown_grace=1, run_workers=False))
    async with client_for(app) as client:
        quoted = await client.post("/orders", json=ORDER, headers={"Idempotency-Key": '"k1"'})
        bare = await client.post("/orders", json=ORDER, headers={"Idempotency-Key": "k1"})
        assert quoted.status_code == bare.status_code == 202
        assert quoted.json()["id"] == bare.json()["id"]
        assert "idempotent-replayed" not in quoted.headers
        assert bare.headers["idempotent-replayed"] == "true"
        bad = await client.post("/orders", json=ORDER,
                                headers={"Idempotency-Key": '"unterminated'})
        body = assert_problem(bad, 400, "BadIdempotencyKey")
        assert "structured-field String" in body["detail"]
    assert endpoints.store.statistics()["jobs"] == 1  # the refused one stored nothing


# ---- Idempotency-Key: the draft's three cases --------------------------------------------


async def test_a_key_reused_with_another_request_is_422() -> None:
    app, _, _ = make_app(EndpointsConfig(shutdown_grace=1, run_workers=False))
    async with client_for(app) as client:
        first = await client.post("/orders", json=ORDER, headers={"Idempotency-Key": '"k"'})
        other = await client.post("/orders", json={"item": "tea", "quantity": 3},
                                  headers={"Idempotency-Key": '"k"'})
    body = assert_problem(other, 422, "IdempotencyKeyReused")
    assert body["jobId"] == first.json()["id"]


async def test_a_duplicate_while_the_first_is_processed_is_409_then_a_replay() -> None:
    app, endpoints, gate = make_app(EndpointsConfig(shutdown_grace=1, run_workers=False))
    key = {"Idempotency-Key": '"order-1"'}
    answers: dict[str, httpx.Response] = {}
    async with client_for(app) as client:

        async def first() -> None:
            answers["first"] = await client.post("/gated", json=ORDER, headers=key)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(first)
            with trio.fail_after(10):
                await gate.entered.wait()  # the first is in its pre-queue hook now
            duplicate = await client.post("/gated", json=ORDER, headers=key)
            other = await client.post("/gated", json={"item": "tea", "quantity": 9},
                                      headers=key)
            gate.release.set()
        replay = await client.post("/gated", json=ORDER, headers=key)
    busy = assert_problem(duplicate, 409, "IdempotencyKeyInFlight")
    assert "still being processed" in busy["detail"] and duplicate.headers["retry-after"]
    assert_problem(other, 422, "IdempotencyKeyReused")
    stored = answers["first"]
    assert stored.status_code == 202
    # After the first was answered, a duplicate replays it: the same job, the same Location.
    assert replay.status_code == 202
    assert replay.json()["id"] == stored.json()["id"]
    assert replay.headers["location"] == stored.headers["location"]
    assert replay.headers["idempotent-replayed"] == "true"
    assert endpoints.store.statistics()["jobs"] == 1
    assert len(endpoints.in_flight) == 0  # nothing left held


async def test_a_replay_with_prefer_wait_answers_the_final_job() -> None:
    app, _, _ = make_app()
    key = {"Idempotency-Key": '"w"'}
    async with client_for(app) as client:
        first = await client.post("/orders", json=ORDER, headers={**key, "Prefer": "wait=10"})
        again = await client.post("/orders", json=ORDER, headers={**key, "Prefer": "wait=10"})
        plain = await client.post("/orders", json=ORDER, headers=key)
    assert first.status_code == again.status_code == 200
    assert again.json()["id"] == first.json()["id"] and again.json()["result"] == 6
    assert plain.status_code == 202 and plain.json()["status"] == "Completed"


async def test_the_key_retention_is_published() -> None:
    app, _, _ = make_app(EndpointsConfig(shutdown_grace=1, run_workers=False,
                                         retention=120.5))
    async with client_for(app) as client:
        keyed = await client.post("/orders", json=ORDER, headers={"Idempotency-Key": "r"})
        chosen = await client.post("/orders", json=ORDER,
                                   headers={"X-Async-Request-Id": str(uuid.uuid4())})
        unkeyed = await client.post("/orders", json=ORDER)
    assert keyed.headers["idempotency-key-retention"] == "121"
    assert chosen.headers["idempotency-key-retention"] == "121"
    assert "idempotency-key-retention" not in unkeyed.headers


async def test_the_openapi_document_states_the_protocol() -> None:
    app, _, _ = make_app()
    async with client_for(app) as client:
        doc = (await client.get("/openapi.json")).json()
    post = doc["paths"]["/orders"]["post"]
    headers = {p["name"]: p for p in post["parameters"] if p["in"] == "header"}
    assert headers["Idempotency-Key"]["schema"]["pattern"] == KEY_PATTERN
    assert "Prefer" in headers
    assert {"200", "202", "409", "422"} <= set(post["responses"])
    for status in ("200", "202"):
        assert {"Preference-Applied", "Vary", "Idempotency-Key-Retention",
                "Idempotent-Replayed", "Location"} <= set(post["responses"][status]["headers"])
    assert "Content-Location" in post["responses"]["200"]["headers"]
    get = doc["paths"]["/jobs/{job_id}"]["get"]
    assert any(p["name"] == "Prefer" and p["in"] == "header" for p in get["parameters"])
