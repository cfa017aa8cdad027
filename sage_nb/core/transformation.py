"""``Transformation``: one node of the logical pipeline that ``DataStream`` records.

Both layers need it: the API builds transformations, the runtime compiles them into an
``ExecutionGraph``.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .functions import FunctionFactory

__all__ = ["ERROR_POLICIES", "PARTITION_STRATEGIES", "Transformation"]

_ids = itertools.count(1)

#: What a record that makes an operator raise does: fail the job (the default), be skipped
#: (counted in the operator's ``errors``), be skipped and logged with its traceback (SAGE's
#: way), or go to ``job.dead_letters``.
ERROR_POLICIES = ("fail", "skip", "log", "dead_letter")

#: How ``keyby`` spreads records over the next operator's parallel instances: by the key's hash
#: (every record of a key meets one instance), to every instance, or in turn.
PARTITION_STRATEGIES = ("hash", "broadcast", "round_robin")


class Transformation:
    """One node of the logical pipeline: a source or an operator and where its input comes from.

    ``inputs`` holds the upstream transformations (one per port). ``key`` on a transformation
    is the key function its *output* is partitioned by (set by ``keyby``).
    """

    def __init__(
        self,
        kind: str,
        factory: FunctionFactory | None,
        inputs: list[Transformation],
        *,
        parallelism: int = 1,
        name: str | None = None,
        source: Any = None,
        key: FunctionFactory | None = None,
        input_keys: list[FunctionFactory | None] | None = None,
        on_error: Any = "fail",
        streaming: bool = False,
        drop_none: bool = False,
        delay: float = 0.0,
        strategy: str = "hash",
    ) -> None:
        if not isinstance(parallelism, int) or isinstance(parallelism, bool) or parallelism < 1:
            raise ValueError(f"parallelism must be an int >= 1, got {parallelism!r}")
        self.id = next(_ids)
        self.kind = kind
        self.factory = factory
        self.inputs = inputs
        self.parallelism = parallelism
        self.name = name or (factory.name if factory is not None else kind)
        self.source = source
        self.key = key
        #: For each input port, the key function that partitions it (None: not keyed).
        self.input_keys = input_keys or [None] * len(inputs)
        if on_error not in ERROR_POLICIES and not callable(on_error):
            raise ValueError(
                f"on_error must be one of {', '.join(map(repr, ERROR_POLICIES))} or a callable "
                f"that receives each DeadLetter, got {on_error!r}"
            )
        self.on_error = on_error
        #: Sources: True for ``from_source`` (None records are skipped), False for finite ones.
        self.streaming = streaming
        #: Maps: a ``None`` result emits nothing (SAGE's semantics) instead of passing on.
        self.drop_none = drop_none
        #: Sources: seconds to wait between records (SAGE paces its sources).
        self.delay = delay
        if strategy not in PARTITION_STRATEGIES:
            raise ValueError(
                f"strategy must be one of {', '.join(map(repr, PARTITION_STRATEGIES))}, "
                f"got {strategy!r}"
            )
        #: keyby: how keyed records reach the next operator's instances.
        self.strategy = strategy
        #: future (``env.from_future``): the transformation whose records are fed back here.
        self.filled_by: Transformation | None = None

    @property
    def label(self) -> str:
        """The name shown in errors and displays: ``map(Enrich)``, ``sink(print)``."""
        if self.kind == "source":
            return self.name
        return f"{self.kind}({self.name})" if self.name != self.kind else self.kind

    def __repr__(self) -> str:
        par = f" x{self.parallelism}" if self.parallelism > 1 else ""
        return f"<Transformation #{self.id} {self.label}{par}>"
