"""``Semantics``: the defaults a pipeline is built and run with, sage_nb's own or SAGE's.

sage_nb's own API keeps its defaults (a blocking ``submit()``, unpaced sources, a map's ``None``
passed on, a failing record failing the job); ``sage_nb.compat`` builds pipelines with
``SAGE_SEMANTICS``, the way SAGE runs them (``docs/sage-compat.md`` lists each difference and
why). An environment class names its semantics; ``DataStream`` and the runtime read them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["SAGE_NB_SEMANTICS", "SAGE_SEMANTICS", "Semantics"]


@dataclass(frozen=True)
class Semantics:
    """What a pipeline does where SAGE and sage_nb differ.

    Attributes
    ----------
    drop_none:
        A map whose result is ``None`` emits nothing (SAGE) instead of passing ``None`` on.
    on_error:
        The default ``on_error`` of operators: ``"fail"`` the job (sage_nb), or ``"log"`` the
        exception with its traceback and go on with the next record (SAGE).
    batch_delay, source_delay:
        Seconds a source waits between records: ``from_batch``/``from_collection`` and
        ``from_source``. 0 reads as fast as the pipeline takes records (sage_nb); SAGE paces
        them (0.1 s and 1 s). A ``delay=`` on the source overrides it.
    record_at_a_time:
        Each source record goes through the whole graph before the next is read (SAGE's local
        execution, which programs that write through a service and read it back rely on). Off,
        records move in batches.
    blocking_submit:
        The default of ``submit(autostop=...)``: wait for the job (sage_nb) or return at once
        (SAGE).
    print_first_only:
        ``.print()`` prints the first record and says that the rest goes to the log (SAGE),
        instead of printing every record.
    unique_names:
        Operators of one name in one environment get ``_1``, ``_2``, ... after it (SAGE), so
        ``self.name`` tells them apart; sage_nb labels them by function and keeps the names.
    """

    drop_none: bool = False
    on_error: Any = "fail"
    batch_delay: float = 0.0
    source_delay: float = 0.0
    record_at_a_time: bool = False
    blocking_submit: bool = True
    print_first_only: bool = False
    unique_names: bool = False

    def source_pacing(self, streaming: bool, delay: float | None) -> float:
        """The pause between records of a source given ``delay=`` (None: the default)."""
        if delay is None:
            return self.source_delay if streaming else self.batch_delay
        if isinstance(delay, bool) or not isinstance(delay, (int, float)) or delay < 0:
            raise ValueError(f"delay must be a number of seconds >= 0, got {delay!r}")
        return float(delay)


#: sage_nb's own defaults.
SAGE_NB_SEMANTICS = Semantics()

#: SAGE's (0.2.x and 0.3.x local execution; see SAGE_COMPAT rules 1-5).
SAGE_SEMANTICS = Semantics(
    drop_none=True,
    on_error="log",
    batch_delay=0.1,
    source_delay=1.0,
    record_at_a_time=True,
    blocking_submit=False,
    print_first_only=True,
    unique_names=True,
)
