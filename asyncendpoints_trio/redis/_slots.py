"""Hash slots: which of the 16384 slots a key is in, which command keys route by, and the
slot map a cluster node reports (``CLUSTER SHARDS``, or ``CLUSTER SLOTS`` before Redis 7).
"""

from __future__ import annotations

import binascii
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

from .._errors import StoreError
from ._connection import Arg

SLOTS: Final = 16384
Address: TypeAlias = tuple[str, int]


# Cached: a store's calls name the same few keys again and again.
@functools.lru_cache(maxsize=4096, typed=True)
def key_slot(key: Arg) -> int:
    """The key's hash slot: CRC16 (XMODEM, which is ``crc_hqx`` from 0) of the key, or of
    its hash tag: the text between the first ``{`` and the first ``}`` after it, if not
    empty."""
    data = key if isinstance(key, bytes) else str(key).encode()
    start = data.find(b"{")
    if start >= 0:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1:end]
    return binascii.crc_hqx(data, 0) % SLOTS


# Commands without keys: they go to any primary.
_KEYLESS: Final = frozenset({
    "PING", "ECHO", "INFO", "TIME", "CONFIG", "DBSIZE", "KEYS", "SCAN", "RANDOMKEY",
    "SCRIPT", "FUNCTION", "FLUSHALL", "FLUSHDB", "WAIT", "PUBLISH", "PUBSUB", "CLUSTER",
    "CLIENT", "COMMAND", "MEMORY", "SLOWLOG", "LASTSAVE", "ROLE", "ACL", "READONLY",
    "READWRITE", "ASKING", "MULTI", "EXEC", "DISCARD", "UNWATCH", "SWAPDB", "DEBUG",
})
# Where the key count stands, for commands whose first key follows it.
_NUMKEYS_AT: Final = {
    "EVAL": 2, "EVALSHA": 2, "EVAL_RO": 2, "EVALSHA_RO": 2, "FCALL": 2, "FCALL_RO": 2,
    "LMPOP": 1, "ZMPOP": 1, "SINTERCARD": 1, "ZINTERCARD": 1, "ZUNION": 1, "ZINTER": 1,
    "ZDIFF": 1, "BLMPOP": 2, "BZMPOP": 2,
}


@functools.lru_cache(maxsize=256)
def _name(arg: Arg) -> str:
    return (arg.decode() if isinstance(arg, bytes) else str(arg)).upper()


def command_slot(command: Sequence[Arg]) -> int | None:
    """The slot of the command's first key; None for a command without keys."""
    if len(command) < 2:
        return None
    name = _name(command[0])
    if name in _KEYLESS:
        return None
    at = _NUMKEYS_AT.get(name)
    if at is not None:
        if len(command) <= at + 1 or int(command[at]) <= 0:
            return None
        return key_slot(command[at + 1])
    if name in ("XREAD", "XREADGROUP"):
        names = [_name(arg) for arg in command]
        if "STREAMS" not in names or names.index("STREAMS") + 1 >= len(command):
            return None
        return key_slot(command[names.index("STREAMS") + 1])
    return key_slot(command[1])


@dataclass(slots=True)
class SlotMap:
    """Slot → primary address, and every node the cluster reported (replicas too)."""

    owners: list[Address | None] = field(default_factory=lambda: [None] * SLOTS)
    nodes: set[Address] = field(default_factory=set)

    def primaries(self) -> list[Address]:
        return sorted({owner for owner in self.owners if owner is not None})

    def covered(self) -> int:
        return sum(owner is not None for owner in self.owners)


def _fields(flat: Sequence[Any]) -> dict[str, Any]:
    return {_text(flat[i]): flat[i + 1] for i in range(0, len(flat) - 1, 2)}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _host(reported: Any, asked: Address) -> str:
    # "" or "?" means: the address you reached me at (cluster-preferred-endpoint-type).
    host = _text(reported) if reported is not None else ""
    return asked[0] if host in ("", "?") else host


def parse_shards(reply: Sequence[Any], asked: Address, *, tls: bool) -> SlotMap:
    """A ``CLUSTER SHARDS`` reply (RESP2: flat key/value lists) as a slot map. A shard's
    primary is its node with role ``master``; of several (a failed one not yet demoted), the
    one whose health is ``online``."""
    slot_map = SlotMap()
    try:
        for shard in reply:
            info = _fields(shard)
            primary: Address | None = None
            primary_online = False
            for node in info.get("nodes", ()):
                fields = _fields(node)
                port = fields.get("tls-port") if tls else fields.get("port")
                if port is None:
                    continue
                address = (_host(fields.get("endpoint") or fields.get("ip"), asked), int(port))
                slot_map.nodes.add(address)
                online = _text(fields.get("health", b"online")) == "online"
                if _text(fields.get("role")) == "master" and (primary is None or
                                                                (online and not primary_online)):
                    primary, primary_online = address, online
            ranges = info.get("slots", ())
            if primary is None:
                continue
            for i in range(0, len(ranges) - 1, 2):
                for slot in range(int(ranges[i]), int(ranges[i + 1]) + 1):
                    slot_map.owners[slot] = primary
    except (TypeError, ValueError, IndexError, AttributeError) as exc:
        raise StoreError(f"unreadable CLUSTER SHARDS reply: {exc!r}") from exc
    return slot_map


def parse_slots(reply: Sequence[Any], asked: Address) -> SlotMap:
    """A ``CLUSTER SLOTS`` reply: ``[start, end, [host, port, id], replicas...]`` per range."""
    slot_map = SlotMap()
    try:
        for start, end, *nodes in reply:
            addresses = [(_host(node[0], asked), int(node[1])) for node in nodes]
            slot_map.nodes.update(addresses)
            for slot in range(int(start), int(end) + 1):
                slot_map.owners[slot] = addresses[0]
    except (TypeError, ValueError, IndexError, AttributeError) as exc:
        raise StoreError(f"unreadable CLUSTER SLOTS reply: {exc!r}") from exc
    return slot_map
