"""``PipelineBuilder``: the sources an environment starts streams with, and the pipeline of
``Transformation`` nodes its streams record (``BaseEnvironment`` is one).

Nothing runs here: ``env.submit()`` compiles ``pipeline`` into an ``ExecutionGraph``.
"""

from __future__ import annotations

import inspect
from typing import Any

from ..core.functions import FunctionFactory
from ..core.semantics import SAGE_NB_SEMANTICS, Semantics
from ..core.transformation import Transformation
from .datastream import DataStream

__all__ = ["PipelineBuilder"]


class PipelineBuilder:
    """Sources, and the transformations the streams built from them recorded."""

    #: The defaults pipelines are built with: sage_nb's own here, SAGE's in ``sage_nb.compat``
    #: (see ``core/semantics.py``).
    semantics: Semantics = SAGE_NB_SEMANTICS

    name: str
    pipeline: list[Transformation]

    @property
    def closed(self) -> bool:
        raise NotImplementedError

    def _add(self, transformation: Transformation) -> DataStream:
        if self.closed:
            raise RuntimeError(f"environment {self.name!r} is closed")
        if self.semantics.unique_names and transformation.kind != "keyby":
            taken = {t.name for t in self.pipeline if t.kind != "keyby"}
            base, n = transformation.name, 1
            while transformation.name in taken:  # SAGE's way: Parse, Parse_1, Parse_2, ...
                transformation.name = f"{base}_{n}"
                n += 1
        self.pipeline.append(transformation)
        return DataStream(self, transformation)

    def from_batch(
        self,
        source: Any,
        *args: Any,
        name: str | None = None,
        delay: float | None = None,
        progress_log_interval: int | None = None,
        **kwargs: Any,
    ) -> DataStream:
        """A finite source: a list or any iterable, or a ``BatchFunction`` (class or instance)
        whose ``execute()`` returns records until it returns None (or ``StopSignal``).

        Arguments after a class go to its constructor when the job is submitted:
        ``from_batch(FileSource, input_file="words.txt")``. ``delay`` waits that many seconds
        between records (default 0; SAGE's 0.1 s in ``sage_nb.compat``).
        ``progress_log_interval`` is accepted for SAGE's programs and ignored: progress shows
        in ``%sage_submit`` and ``job.statistics()``.
        """
        return self._source("from_batch", source, args, kwargs, name, delay, streaming=False)

    def from_collection(
        self,
        collection: Any,
        *args: Any,
        name: str | None = None,
        delay: float | None = None,
        **kwargs: Any,
    ) -> DataStream:
        """A finite source over a collection (or a ``BatchFunction`` class built with
        ``args``); the same as ``from_batch``."""
        return self._source(
            "from_collection", collection, args, kwargs, name, delay, streaming=False
        )

    def from_source(
        self,
        source: Any,
        *args: Any,
        name: str | None = None,
        delay: float | None = None,
        progress_log_interval: int | None = None,
        **kwargs: Any,
    ) -> DataStream:
        """A stream source: a ``SourceFunction`` (class or instance), a callable or an iterable.

        ``execute()`` (or the callable) is called for each record; a ``None`` is skipped, and
        returning ``StopSignal`` or raising ``StopIteration`` ends the stream. An endless source
        runs until the job is stopped. Arguments after a class go to its constructor;
        ``delay`` waits that many seconds between calls (default 0; SAGE's 1 s in
        ``sage_nb.compat``).
        """
        return self._source("from_source", source, args, kwargs, name, delay, streaming=True)

    def _source(
        self,
        where: str,
        source: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        name: str | None,
        delay: float | None,
        *,
        streaming: bool,
    ) -> DataStream:
        _check_source(source, where)
        factory = None
        if inspect.isclass(source) or callable(getattr(source, "execute", None)):
            # A source function: built at submit like any function, and given its context.
            factory = FunctionFactory("batch" if not streaming else "source", source, args, kwargs)
        elif args or kwargs:
            raise TypeError(
                f"{where}: arguments after the source are constructor arguments, so the source "
                f"must be a class; got {type(source).__name__}"
            )
        node = Transformation(
            "source",
            factory,
            [],
            source=source,
            name=name or where,
            streaming=streaming,
            delay=self.semantics.source_pacing(streaming, delay),
        )
        return self._add(node)

    def from_future(self, name: str) -> DataStream:
        """A stream whose records come from later in the pipeline: a feedback loop.

        Connect it like any stream, then close the loop with ``stream.fill_future(future)``::

            fut = env.from_future("feedback")
            merged = start.connect(fut).comap(Merge)
            merged.map(Step).fill_future(fut)

        A job with a loop ends once its sources are drained and nothing is left in the loop
        (SAGE 0.2 never ends such a job; use ``submit()`` and ``env.close()`` there).
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"a future stream needs a name, got {name!r}")
        return self._add(Transformation("future", None, [], name=name))

    def clear_pipeline(self) -> None:
        """Forget the pipeline built so far (services stay registered)."""
        self.pipeline = []


def _check_source(source: Any, where: str) -> None:
    if inspect.isclass(source) or callable(getattr(source, "execute", None)) or callable(source):
        return
    if isinstance(source, (str, bytes)):
        raise TypeError(f"{where} got a {type(source).__name__}; pass a list of records instead")
    try:
        iter(source)
    except TypeError:
        raise TypeError(
            f"{where} needs an iterable of records or a source function, "
            f"got {type(source).__name__}: {source!r}"
        ) from None
