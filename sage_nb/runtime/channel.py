"""``Channel``: the bounded queue of record batches between two tasks.

Bounded so a fast producer cannot exhaust memory (``put`` waits while it is full); closable so a
stopping job wakes every task blocked on it at once, without polling.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

__all__ = ["CLOSED", "Channel", "ChannelClosed"]


class ChannelClosed(Exception):
    """``put`` on a closed channel: the job is stopping."""


#: What ``get`` returns once the channel is closed.
CLOSED: Any = object()


class Channel:
    """A FIFO of at most ``capacity`` items for one consumer task and any number of producers."""

    def __init__(self, capacity: int = 32) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        # Invariants: _items and _closed change only under _lock; _not_empty and _not_full share
        # it; once _closed is set, get() returns CLOSED and put() raises, whatever is queued.
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._items: deque[Any] = deque()
        self._closed = False
        #: Records in the queued batches (``(port, records)`` items), for queue depths shown
        #: in records, not batches; changes with _items, under _lock.
        self.records = 0

    def put(self, item: Any) -> None:
        with self._not_full:
            while len(self._items) >= self.capacity and not self._closed:
                self._not_full.wait()
            if self._closed:
                raise ChannelClosed
            self._items.append(item)
            self.records += _size(item)
            self._not_empty.notify()

    def get(self) -> Any:
        with self._not_empty:
            while not self._items and not self._closed:
                self._not_empty.wait()
            if self._closed:
                return CLOSED
            item = self._items.popleft()
            self.records -= _size(item)
            self._not_full.notify()
            return item

    def nudge(self, item: Any) -> None:
        """Put a control message whatever the capacity (it never waits): a wake-up."""
        with self._lock:
            if not self._closed:
                self._items.append(item)
                self._not_empty.notify()

    def close(self) -> None:
        """Wake everyone: pending and future ``get`` return ``CLOSED``, ``put`` raises."""
        with self._lock:
            self._closed = True
            self._items.clear()
            self.records = 0
            self._not_empty.notify_all()
            self._not_full.notify_all()

    def __len__(self) -> int:
        return len(self._items)


def _size(item: Any) -> int:
    """Records in a queued item: a ``(port, records)`` batch; 0 for control messages."""
    if type(item) is tuple and len(item) == 2 and type(item[1]) is list:
        return len(item[1])
    return 0
