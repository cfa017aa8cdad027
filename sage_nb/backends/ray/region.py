"""``detach_region``: a copy of one pipeline region that can be sent to an actor.

A ``Region`` links to the whole graph (edges to other regions, nodes to their
``Transformation``, transformations to their inputs and the source's data), so pickling it
would send every record of ``from_batch(data)`` to every actor. The copy keeps what a
``ChainProgram`` needs: the region's nodes with their functions, the edges that touch them
(nodes outside the region become stubs without functions) and fresh counters.
"""

from __future__ import annotations

import copy

from ...runtime.graph import DataEdge, NodeCounters, OperatorNode, Region

__all__ = ["detach_region"]


def detach_region(region: Region) -> Region:
    """A self-contained copy of ``region`` (see the module docstring)."""
    nodes: dict[int, OperatorNode] = {}

    def clone(node: OperatorNode, inside: bool) -> OperatorNode:
        c = copy.copy(node)
        c.transformation = None  # type: ignore[assignment]
        c.inputs, c.outputs = [], []
        c.counters = [NodeCounters() for _ in range(node.parallelism)]
        c.region = None
        c.calls = set()
        c.total = None
        if not inside:
            c.factory = None
        return c

    for node in region.nodes:
        nodes[node.id] = clone(node, True)

    def node_of(node: OperatorNode) -> OperatorNode:
        found = nodes.get(node.id)
        if found is None:
            found = nodes[node.id] = clone(node, False)
        return found

    edges: dict[int, DataEdge] = {}

    def edge_of(edge: DataEdge) -> DataEdge:
        found = edges.get(id(edge))
        if found is None:
            found = edges[id(edge)] = DataEdge(
                node_of(edge.upstream), node_of(edge.downstream), edge.port, edge.key, edge.chained
            )
        return found

    for node in region.nodes:
        c = nodes[node.id]
        c.inputs = [edge_of(e) for e in node.inputs]
        c.outputs = [edge_of(e) for e in node.outputs]
    detached = copy.copy(region)
    detached.head = nodes[region.head.id]
    detached.nodes = [nodes[n.id] for n in region.nodes]
    detached.remote_inputs = [edge_of(e) for e in region.remote_inputs]
    for n in detached.nodes:
        n.region = detached
    return detached
