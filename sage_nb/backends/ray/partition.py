"""``partition_hash``: the hash keyed edges partition by when instances run in several processes.

Python salts ``hash()`` of ``str`` and ``bytes`` per process, so two Ray actors (and the driver)
would send one key to different instances. This hash gives equal keys the same value in every
process: strings and bytes by CRC-32, numbers by ``hash()`` (never salted, and equal numbers of
different types hash alike), tuples and frozensets from their items, anything else from its
``repr()`` (the value of dataclasses, enums and the like).
"""

from __future__ import annotations

import numbers
import zlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ...runtime.chain import ChainProgram

__all__ = ["install_partition_hash", "partition_hash"]

_MASK = (1 << 61) - 1


def partition_hash(key: Any) -> int:
    """A hash of ``key`` that is the same in every Python process."""
    if isinstance(key, str):
        return zlib.crc32(key.encode("utf-8", "surrogatepass"))
    if isinstance(key, numbers.Number) or key is None:
        return hash(key)
    if isinstance(key, (bytes, bytearray)):
        return zlib.crc32(key)
    if isinstance(key, tuple):
        h = 0x345678
        for item in key:
            h = ((h * 1000003) ^ partition_hash(item)) & _MASK
        return h ^ len(key)
    if isinstance(key, frozenset):
        return sum(partition_hash(item) for item in key) & _MASK
    return zlib.crc32(repr(key).encode("utf-8", "surrogatepass"))


def install_partition_hash(program: ChainProgram) -> None:
    """Make ``program`` route keyed records by ``partition_hash``.

    The compiled chain looks ``hash`` up in its globals before the builtins, so adding it there
    changes only this program. Those globals are the ``__globals__`` of its port functions
    (``program.ports``), which share one namespace.
    """
    for port in program.ports:
        port.__globals__["hash"] = partition_hash
