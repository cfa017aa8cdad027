"""``DeadLetter``: a record an operator failed on, kept instead of failing the job;
``DeadLetters``: a job's bounded list of them (the newest kept, the dropped ones counted)."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

__all__ = ["DEFAULT_KEEP_DEAD_LETTERS", "DeadLetter", "DeadLetters", "check_limit"]

log = logging.getLogger(__name__)

#: How many dead letters a job keeps by default (``keep_dead_letters=`` of an environment).
DEFAULT_KEEP_DEAD_LETTERS = 10_000


@dataclass(frozen=True)
class DeadLetter:
    """A record that made ``operator`` raise ``error``.

    Operators created with ``on_error="dead_letter"`` append these to ``job.dead_letters``;
    ``on_error=callable`` passes each one to the callable instead. A job keeps the newest
    ``keep_dead_letters`` of them (an environment's setting, 10,000 by default); older ones
    are dropped and counted in ``job.dead_letters_dropped``.
    """

    operator: str
    record: Any
    error: BaseException

    def __repr__(self) -> str:
        text = repr(self.record)
        if len(text) > 80:
            text = text[:77] + "..."
        return f"DeadLetter({self.operator}: {type(self.error).__name__}: {self.error} on {text})"


def check_limit(name: str, value: int | None) -> int | None:
    """``value`` if it is a retention limit (an int >= 0, or None: no limit); else raise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} is an int >= 0 or None (keep all), got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0 or None (keep all), got {value!r}")
    return value


class DeadLetters(Sequence[DeadLetter]):
    """A job's dead letters, oldest first: the newest ``limit`` (None: all) are kept.

    Reads like a list (``len``, indexing, slices, iteration, ``== []``); operators ``append``
    and ``extend`` it from several task threads. Each letter pushed out by a newer one is
    counted in ``dropped``, and the first drop logs one warning saying how to keep more.
    """

    __hash__ = None  # type: ignore[assignment]  # mutable, like a list

    def __init__(self, limit: int | None = DEFAULT_KEEP_DEAD_LETTERS, job: str = "") -> None:
        self.limit = check_limit("keep_dead_letters", limit)
        self.job = job
        #: How many letters were dropped to keep at most ``limit``.
        self.dropped = 0
        # Invariants: _items and dropped change together under _lock (a leaf lock).
        self._items: deque[DeadLetter] = deque(maxlen=self.limit)
        self._lock = threading.Lock()

    def append(self, letter: DeadLetter) -> None:
        """Keep ``letter``; drop (and count) the oldest one if the list is full."""
        with self._lock:
            full = self.limit is not None and len(self._items) >= self.limit
            self._items.append(letter)
            if full:
                self.dropped += 1
                first = self.dropped == 1
            else:
                first = False
        if first:
            self._warn()

    def extend(self, letters: Iterable[DeadLetter]) -> None:
        for letter in letters:
            self.append(letter)

    def clear(self) -> None:
        """Forget the kept letters (``dropped`` stays: it counts what was never kept)."""
        with self._lock:
            self._items.clear()

    def _warn(self) -> None:
        log.warning(
            "job %r keeps its last %s dead letters; older ones are dropped and counted in "
            "job.dead_letters_dropped. To keep more, create the environment with "
            "keep_dead_letters=N (None keeps all)",
            self.job,
            f"{self.limit:,}",
        )

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, index: int) -> DeadLetter: ...

    @overload
    def __getitem__(self, index: slice) -> list[DeadLetter]: ...

    def __getitem__(self, index: int | slice) -> DeadLetter | list[DeadLetter]:
        with self._lock:
            if isinstance(index, slice):
                return list(self._items)[index]
            return self._items[index]

    def __iter__(self) -> Iterator[DeadLetter]:
        with self._lock:
            items = list(self._items)
        return iter(items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (DeadLetters, list, tuple, deque)):
            return list(self) == list(other)
        return NotImplemented

    def __repr__(self) -> str:
        dropped = f" (+{self.dropped:,} dropped)" if self.dropped else ""
        return f"{list(self)!r}{dropped}"
