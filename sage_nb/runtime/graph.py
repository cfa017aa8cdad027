"""``ExecutionGraph``: a pipeline compiled for one job.

Compilation turns the environment's ``Transformation`` nodes into:

- ``OperatorNode``: one per source or operator (``keyby`` is not a node: it marks the edge after
  it as partitioned by key);
- ``DataEdge``: upstream node → downstream node input port, forward or keyed;
- ``Region``: operators *chained* into one task, the way Flink chains operators: a downstream
  node joins its upstream's region when both have the same parallelism, it has one input, and the
  edge does not repartition. Each region runs as ``parallelism`` task threads and records move
  inside it by plain function calls, a batch at a time; only edges between regions cross a
  queue.

It also lists the environment's services (one ``ServiceContext`` each, see
``runtime/service/context.py``) so displays can show who calls whom.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .service.context import ServiceContext

if TYPE_CHECKING:
    from ..core.functions import FunctionFactory
    from ..core.transformation import Transformation

__all__ = [
    "DataEdge",
    "ExecutionGraph",
    "NodeCounters",
    "NodeStatistics",
    "OperatorNode",
    "Region",
    "ServiceContext",
]


class NodeCounters:
    """Records in and out of one parallel instance of a node, and records that failed in it
    (skipped or sent to the dead letters); written only by its task.

    A failing record is noted in ``errors_pending`` at once and moves to ``errors`` with the
    batch's ``records_in`` (``ChainProgram.account``), so that every snapshot agrees: no node
    ever shows more records out or failed than in.
    """

    __slots__ = ("errors", "errors_pending", "records_in", "records_out")

    def __init__(self) -> None:
        self.records_in = 0
        self.records_out = 0
        self.errors = 0
        self.errors_pending = 0


@dataclass(frozen=True)
class NodeStatistics:
    """A snapshot of one operator node over all its parallel instances."""

    id: int
    label: str
    kind: str
    parallelism: int
    records_in: int
    records_out: int
    errors: int
    total: int | None  # sources: how many records they will produce, when known
    calls: tuple[str, ...]  # services this node has called so far


class OperatorNode:
    """A source or an operator of a job, with one ``NodeCounters`` per parallel instance."""

    def __init__(self, transformation: Transformation) -> None:
        t = transformation
        self.id = t.id
        self.kind = t.kind
        self.label = t.label
        self.parallelism = t.parallelism
        self.factory: FunctionFactory | None = t.factory
        self.transformation = t
        #: What a failing record does: "fail" the job, "skip" it, send it to the job's
        #: "dead_letter" list, or a callable that receives the DeadLetter.
        self.on_error = t.on_error
        #: What the compiled chain needs of the transformation, kept here because the Ray
        #: backend ships nodes to actors without it: a map's None dropped, the operator's name.
        self.drop_none = t.drop_none
        self.name = t.name
        self.inputs: list[DataEdge] = []
        self.outputs: list[DataEdge] = []
        self.counters = [NodeCounters() for _ in range(t.parallelism)]
        self.region: Region | None = None
        self.total: int | None = None
        #: Services called by any instance, found at run time by the instances' proxies.
        self.calls: set[str] = set()

    def statistics(self) -> NodeStatistics:
        # Read in the reverse of the order a task writes them (in, out, then errors, per
        # batch): a snapshot taken while batches are accounted never shows more records out
        # or failed than in.
        errors = sum(c.errors for c in self.counters)
        records_out = sum(c.records_out for c in self.counters)
        records_in = sum(c.records_in for c in self.counters)
        return NodeStatistics(
            id=self.id,
            label=self.label,
            kind=self.kind,
            parallelism=self.parallelism,
            records_in=records_in,
            records_out=records_out,
            errors=errors,
            total=self.total,
            calls=tuple(sorted(self.calls)),
        )

    def __repr__(self) -> str:
        par = f" x{self.parallelism}" if self.parallelism > 1 else ""
        return f"<OperatorNode {self.label}{par}>"


@dataclass(eq=False)
class DataEdge:
    """Records from ``upstream`` to input ``port`` of ``downstream``.

    ``key`` partitions the records by key (after ``keyby``); ``chained`` edges stay inside one
    region and are function calls, the others cross a bounded queue in batches.
    """

    upstream: OperatorNode
    downstream: OperatorNode
    port: int
    key: FunctionFactory | None
    chained: bool = False
    #: Records sent across this edge (remote edges only), updated per batch by the sender.
    records: list[int] = field(default_factory=lambda: [0])

    #: How keyed records spread over the downstream instances: "hash", "broadcast" or
    #: "round_robin" (``keyby(..., strategy=)``).
    strategy: str = "hash"
    #: A feedback edge closes a loop (``from_future`` / ``fill_future``): its upstream comes
    #: later in the graph, and it ends when the loop has died out, not with an end of stream.
    feedback: bool = False

    @property
    def partitioning(self) -> str:
        """ "chained" (function calls in one task), "keyed" (by the key's hash), "broadcast"
        (every batch to every instance) or "forward" (batches in turn)."""
        if self.chained:
            return "chained"
        if self.key is None or self.downstream.parallelism == 1:
            return "forward"
        if self.strategy == "hash":
            return "keyed"
        return "broadcast" if self.strategy == "broadcast" else "forward"


class Region:
    """Operators chained into one task: ``head`` and the nodes reached by chained edges."""

    def __init__(self, index: int, head: OperatorNode) -> None:
        self.index = index
        self.head = head
        self.parallelism = head.parallelism
        self.nodes: list[OperatorNode] = []  # topological order, head first
        self.remote_inputs: list[DataEdge] = []

    @property
    def label(self) -> str:
        return (
            self.head.label
            if len(self.nodes) == 1
            else f"{self.head.label}..{self.nodes[-1].label}"
        )

    @property
    def is_source(self) -> bool:
        return self.head.kind == "source"

    def __repr__(self) -> str:
        return f"<Region {[n.label for n in self.nodes]} x{self.parallelism}>"


def _strategy(t: Transformation) -> str:
    """The partitioning strategy of the ``keyby`` nearest upstream of ``t`` ("hash" if none)."""
    return t.strategy if t.kind == "keyby" else "hash"


class ExecutionGraph:
    """Nodes, edges and regions of one job, plus the environment's service contexts."""

    def __init__(
        self,
        nodes: Sequence[OperatorNode],
        edges: Sequence[DataEdge],
        regions: Sequence[Region],
        services: dict[str, ServiceContext] | None = None,
    ) -> None:
        self.nodes = list(nodes)
        self.edges = list(edges)
        self.regions = list(regions)
        self.services = dict(services or {})

    @classmethod
    def compile(
        cls,
        transformations: Sequence[Transformation],
        services: dict[str, ServiceContext] | None = None,
    ) -> ExecutionGraph:
        """Build the graph of ``transformations`` (in the order they were added)."""
        nodes: dict[int, OperatorNode] = {}
        for t in transformations:
            if t.kind not in ("keyby", "future"):
                nodes[t.id] = OperatorNode(t)
        if not any(n.kind == "source" for n in nodes.values()):
            raise ValueError(
                "the pipeline has no source; start one with env.from_batch(data) "
                "or env.from_source(fn)"
            )

        def real(t: Transformation) -> tuple[Transformation, bool]:
            """The transformation a node's input comes from, and whether it closes a loop."""
            feedback = False
            while t.kind in ("keyby", "future"):
                if t.kind == "future":
                    if t.filled_by is None:
                        raise ValueError(
                            f"future stream {t.name!r} was never filled: call "
                            f"stream.fill_future(future) with the stream that feeds it back"
                        )
                    t, feedback = t.filled_by, True
                else:
                    t = t.inputs[0]
            return t, feedback

        edges: list[DataEdge] = []
        for t in transformations:
            if t.kind in ("keyby", "future"):
                continue
            down = nodes[t.id]
            for port, (up_t, key) in enumerate(zip(t.inputs, t.input_keys)):
                source, feedback = real(up_t)
                up = nodes[source.id]
                edge = DataEdge(up, down, port, key, strategy=_strategy(up_t), feedback=feedback)
                edge.chained = (
                    not feedback
                    and len(t.inputs) == 1
                    and up.parallelism == down.parallelism
                    and (key is None or down.parallelism == 1)
                )
                up.outputs.append(edge)
                down.inputs.append(edge)
                edges.append(edge)

        regions: list[Region] = []
        for node in nodes.values():  # insertion order is topological: inputs come first
            chained_in = [e for e in node.inputs if e.chained]
            if chained_in:
                region = chained_in[0].upstream.region
                assert region is not None
            else:
                region = Region(len(regions), node)
                region.remote_inputs = list(node.inputs)
                regions.append(region)
            node.region = region
            region.nodes.append(node)
        return cls(list(nodes.values()), edges, regions, services)

    def node_statistics(self) -> list[NodeStatistics]:
        return [n.statistics() for n in self.nodes]

    def describe(self) -> str:
        """A one-line text picture: ``from_batch -> map(Enrich) -> sink(print)``."""
        parts = []
        for node in self.nodes:
            par = f" x{node.parallelism}" if node.parallelism > 1 else ""
            ins = ", ".join(
                f"{e.upstream.label}{'~' if e.partitioning == 'keyed' else ''}" for e in node.inputs
            )
            parts.append(f"{ins} -> {node.label}{par}" if ins else f"{node.label}{par}")
        return "; ".join(parts)

    def __repr__(self) -> str:
        shape = f"{len(self.nodes)} nodes in {len(self.regions)} tasks"
        return f"<ExecutionGraph {shape}: {self.describe()}>"
