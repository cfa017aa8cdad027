"""``DeadLetter``: a record an operator failed on, kept instead of failing the job."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["DeadLetter"]


@dataclass(frozen=True)
class DeadLetter:
    """A record that made ``operator`` raise ``error``.

    Operators created with ``on_error="dead_letter"`` append these to ``job.dead_letters``;
    ``on_error=callable`` passes each one to the callable instead.
    """

    operator: str
    record: Any
    error: BaseException

    def __repr__(self) -> str:
        text = repr(self.record)
        if len(text) > 80:
            text = text[:77] + "..."
        return f"DeadLetter({self.operator}: {type(self.error).__name__}: {self.error} on {text})"
