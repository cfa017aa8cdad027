"""Figures: a sage_nb measurement, its floor from the same run, their ratio and a goal."""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Figure", "Goal", "micro"]


def micro() -> str:
    """The micro-second unit: "µs" unless stdout cannot encode it."""
    try:
        "µ".encode(sys.stdout.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return "us"
    return "µs"


@dataclass(frozen=True)
class Goal:
    """``ratio <op> bound``, e.g. ``Goal("<=", 1.0)``."""

    op: str
    bound: float

    def met(self, ratio: float) -> bool:
        return ratio <= self.bound if self.op == "<=" else ratio >= self.bound

    def __str__(self) -> str:
        return f"goal {self.op} {self.bound:g}x"


@dataclass
class Figure:
    """One line of the report.

    ``value`` is sage_nb's figure and ``floor`` the baseline's, both in ``unit``; ``ratio`` is
    how the goal reads it (a time ratio for latencies, a throughput ratio for rates), computed
    per round and reduced as ``detail`` says.
    """

    key: str
    label: str
    value: float
    floor: float
    unit: str
    ratio: float
    floor_label: str
    goal: Goal | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    #: Printed after the verdict, e.g. a second, more noise-robust reduction of the ratio.
    note: str = ""

    @property
    def ok(self) -> bool | None:
        return None if self.goal is None else self.goal.met(self.ratio)

    def line(self) -> str:
        head = f"{self.label:<21}{_num(self.value):>6} {self.unit:<9}"
        body = f"= {self.ratio:4.2f}x floor ({self.floor_label} {_num(self.floor)} {self.unit})"
        text = f"{head} {body:<61}"
        verdict = "(no goal)"
        if self.goal is not None:
            verdict = f"{self.goal}  {'OK' if self.ok else 'MISS'}"
        return f"{text}  {verdict}{'  ' + self.note if self.note else ''}"

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["goal"] = None if self.goal is None else f"{self.goal.op} {self.goal.bound:g}"
        data["ok"] = self.ok
        return data


def _num(x: float) -> str:
    if x >= 100:
        return f"{x:.0f}"
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}"
