"""Batches over a cluster (``pipeline``, ``evalsha_many``): calls grouped by node, the
groups run at once, redirected calls sent again, replies in call order."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import trio

from .._errors import RedisConnectionError, RedisReplyError, ReplicationTimeout, StoreError
from ._api import ReplicaWait
from ._client import RedisClient, ScriptCall, check_replicas
from ._connection import Command

if TYPE_CHECKING:
    from ._cluster import ClusterClient

# run(node, indices, asking): the replies of those calls on that node, in their order.
GroupRunner: TypeAlias = Callable[[RedisClient, list[int], bool], Awaitable[list[Any]]]
RETRY_KINDS = frozenset({"TRYAGAIN", "CLUSTERDOWN"})


def unavailable(reply: RedisReplyError) -> RedisConnectionError:
    """A ``TRYAGAIN``/``CLUSTERDOWN`` that outlasted the retries, as what it means to the
    caller: the store cannot be used right now (HTTP 503), not a bad request. The call was
    refused, so it did not run."""
    error = RedisConnectionError(f"the cluster still answers {reply} after retries")
    error.sent = False
    error.__cause__ = reply
    return error


async def scatter(router: ClusterClient, slots: list[int | None], run: GroupRunner,
                  *, redirects: int, unavailable_tries: int) -> list[Any]:
    """Run the calls whose slots are ``slots``; see ``ClusterClient`` for what is retried.

    A call whose node failed after the write makes the whole batch raise (after every
    group finished: it is unknown which of them ran). ``ReplicationTimeout`` from any node
    is raised at the end, carrying every reply and the positions of the calls that were
    on the nodes that fell short (``unconfirmed``).
    """
    replies: list[Any] = [None] * len(slots)
    if not slots:
        await trio.lowlevel.checkpoint()
        return replies
    todo = list(range(len(slots)))
    redirected: dict[int, tuple[RedisClient, bool]] = {}
    failures = redirect_rounds = 0
    shortfall: ReplicationTimeout | None = None
    unconfirmed: set[int] = set()
    unsent: RedisConnectionError | None = None
    while True:  # each round that leaves calls to do was redirected or failed: bounded
        groups: dict[tuple[int, bool], tuple[RedisClient, bool, list[int]]] = {}
        unsent, retry = None, []
        try:
            await router._ensure_map()
        except RedisConnectionError as exc:
            unsent, retry = exc, todo
        by_slot: dict[int | None, list[int]] = {}
        for i in [] if unsent is not None else todo:
            if i in redirected:
                node, asking = redirected.pop(i)
                groups.setdefault((id(node), asking), (node, asking, []))[2].append(i)
            else:
                by_slot.setdefault(slots[i], []).append(i)
        for slot, indices in by_slot.items():  # one map lookup per slot, not per call
            try:
                node = router._lookup(slot)
            except RedisConnectionError as exc:  # a slot nobody serves (cluster down)
                unsent = exc
                retry += indices
                continue
            groups.setdefault((id(node), False), (node, False, []))[2].extend(indices)
        for _, _, indices in groups.values():
            indices.sort()  # each node's calls in call order (cheap: mostly sorted runs)
        outcomes = await run_groups(list(groups.values()), run) if groups else []
        todo, again, redirect = retry, unsent is not None, False
        fatal: StoreError | None = None
        for node, asking, indices, result in outcomes:
            if isinstance(result, ReplicationTimeout):
                if shortfall is None or result.acknowledged < shortfall.acknowledged:
                    shortfall = result
                unconfirmed.update(indices)
                result = result.reply
            if isinstance(result, RedisConnectionError) and not result.sent:
                unsent, again = result, True
                todo += indices
                continue
            if isinstance(result, StoreError):
                fatal = fatal or result
                continue
            for i, reply in zip(indices, result, strict=True):
                replies[i] = reply
                if not isinstance(reply, RedisReplyError):
                    continue
                follow = router._follow(reply, node, slots[i], asking)
                if follow is not None:
                    redirected[i] = follow
                    todo.append(i)
                    redirect = True
                elif reply.kind in RETRY_KINDS:
                    todo.append(i)
                    again = True
        if fatal is not None:
            router._mark_stale()
            raise fatal
        if unsent is not None:
            router._mark_stale()
        if not todo:
            break
        if redirect:
            redirect_rounds += 1
            if redirect_rounds > redirects:
                break  # the redirect replies stay in place
        if again:
            if failures + 1 >= unavailable_tries:
                break
            failures += 1
            await router._backoff(failures)
    if unsent is not None and todo:
        raise unsent
    for i in todo:
        reply = replies[i]
        if isinstance(reply, RedisReplyError) and reply.kind in RETRY_KINDS:
            replies[i] = unavailable(reply)
    if shortfall is not None:
        raise ReplicationTimeout(str(shortfall), acknowledged=shortfall.acknowledged,
                                 reply=replies, unconfirmed=frozenset(unconfirmed))
    return replies


async def run_groups(groups: list[tuple[RedisClient, bool, list[int]]], run: GroupRunner,
                     ) -> list[tuple[RedisClient, bool, list[int], list[Any] | StoreError]]:
    """Every group, at once; a group's failure is its result, so the others finish."""
    results: list[list[Any] | StoreError] = [[] for _ in groups]

    async def one(index: int) -> None:
        node, asking, indices = groups[index]
        try:
            results[index] = await run(node, indices, asking)
        except StoreError as exc:
            results[index] = exc

    if len(groups) == 1:
        await one(0)  # the common case (one queue, one slot): no nursery
    else:
        async with trio.open_nursery() as nursery:
            for index in range(len(groups)):
                nursery.start_soon(one, index)
    return [(*group, result) for group, result in zip(groups, results, strict=True)]


def _raise_if_error(reply: Any) -> Any:
    if isinstance(reply, RedisReplyError):
        raise reply
    return reply


async def asking_scripts(node: RedisClient, calls: Sequence[ScriptCall],
                         wait: ReplicaWait | None) -> list[Any]:
    """Scripts each after ``ASKING`` (it holds for one command), on one connection, then
    the ``WAIT``; NOSCRIPT loads the scripts and replays those calls, as ``evalsha_many``."""
    tail: list[Command] = [] if wait is None or wait.replicas <= 0 else [
        ("WAIT", wait.replicas, max(1, round(wait.timeout * 1000)))]
    timeout = node.settings.read_timeout + (0.0 if wait is None else wait.timeout)
    commands: list[Command] = []
    for script, keys, args in calls:
        commands += [("ASKING",), script.command(keys, args)]
    raw = await node._run([*commands, *tail], timeout)
    replies, acks = raw[1:len(commands):2], raw[len(commands):]
    missing = [i for i, reply in enumerate(replies)
               if isinstance(reply, RedisReplyError) and reply.kind == "NOSCRIPT"]
    if missing:
        scripts = list(dict.fromkeys(calls[i][0] for i in missing))
        again: list[Command] = [("SCRIPT", "LOAD", s.source) for s in scripts]
        for i in missing:
            script, keys, args = calls[i]
            again += [("ASKING",), script.command(keys, args)]
        raw = await node._run([*again, *tail], timeout)
        for loaded in raw[:len(scripts)]:
            _raise_if_error(loaded)
        for i, reply in zip(missing, raw[len(scripts):len(again)][1::2], strict=True):
            replies[i] = reply
        acks = raw[len(again):]
    check_replicas(wait, acks, replies)
    return replies
