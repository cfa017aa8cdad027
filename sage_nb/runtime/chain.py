"""Compiles one region instance (operators chained into a task) into plain Python loops.

For ``from_batch → map(f) → filter(p) → keyby(k) → …`` the source's task runs::

    def port0(batch):
        o1 = [[] for _ in range(2)]; a1 = [l.append for l in o1]
        c7 = 0
        r = None
        try:
            for r in batch:
                r = f3(r)                      # map(f)
                if f5(r):                      # filter(p)
                    c7 += 1
                    a1[hash(k9(r)) % 2](r)     # keyed edge to the next task
        except BaseException as exc:
            fail(exc, r)
        return (o1,), (c7,)

so a record costs what a hand-written loop costs: no per-record queue, no per-operator frame, no
per-record counter except after filters and flatmaps. Per-node counts are derived per batch from
the batch size and those counters. When a function raises, the line it raised on names the
operator and ``r`` is the record it was given, for ``OperatorError``.
"""

from __future__ import annotations

import linecache
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

from ..errors import JobCancelledError, OperatorError
from .channel import ChannelClosed
from .dead_letters import DeadLetter

if TYPE_CHECKING:
    from .graph import DataEdge, NodeCounters, OperatorNode, Region

__all__ = ["ChainProgram", "KeyCursor"]

log = logging.getLogger(__name__)

#: Compiled chains by (source, filename): resubmitting a pipeline does not compile again.
_compiled: dict[tuple[str, str], Any] = {}

PortFunction = Callable[[list[Any]], tuple[tuple[Any, ...], tuple[int, ...]]]


class ChainProgram:
    """The compiled loops of one parallel instance of a region.

    Attributes
    ----------
    ports:
        ``ports[p](batch) -> (outputs, counters)`` processes a batch arriving on input port
        ``p`` (a source region has one port, fed by the source).
    out_edges:
        The remote edges, in the order of ``outputs``. For a keyed edge to ``n`` instances the
        output is a list of ``n`` lists, otherwise one list.
    """

    def __init__(
        self,
        region: Region,
        index: int,
        fns: dict[int, Any],
        dead_letter: Callable[[DeadLetter], None] | None = None,
    ) -> None:
        self.region = region
        self.index = index
        self.out_edges: list[DataEdge] = [
            e for n in region.nodes for e in n.outputs if not e.chained
        ]
        # Nodes whose output count is not their input count need a counter in the loop.
        self._counted: list[OperatorNode] = [
            n
            for n in region.nodes
            if n.kind in ("filter", "flatmap", "join") or _guarded(n) or _drops_none(n)
        ]
        self._dead_letter = dead_letter
        self._filename = f"<sage_nb chain {region.label}#{index}>"
        self._ns: dict[str, Any] = {"fail": self._fail}
        self._line_labels: dict[int, str] = {}
        self._fns = fns
        #: Functions on a keyed stream read the current record's key through these
        #: (``ctx.get_key()``): one per keyed node, shared by the nodes chained after it.
        self.key_cursors: dict[int, KeyCursor] = {}
        self._lines: list[str] = []
        head = region.head
        n_ports = max(1, len(head.inputs))  # a union (connected.map) has a port per stream
        for port in range(n_ports):
            self._port_function(port)
        text = "\n".join(self._lines) + "\n"
        linecache.cache[self._filename] = (len(text), None, text.splitlines(True), self._filename)
        code = _compiled.get((text, self._filename))
        if code is None:
            if len(_compiled) > 256:
                _compiled.clear()
            code = _compiled[text, self._filename] = compile(text, self._filename, "exec")
        exec(code, self._ns)
        self.source = text
        self.ports: list[PortFunction] = [self._ns[f"port{p}"] for p in range(n_ports)]
        self._plan = self._accounting_plan()

    # -- code generation -------------------------------------------------------------------
    def _name(self, prefix: str, obj: Any) -> str:
        name = f"{prefix}{len(self._ns)}"
        self._ns[name] = obj
        return name

    def _line(self, indent: int, text: str, label: str | None = None) -> None:
        self._lines.append("    " * indent + text)
        if label is not None:  # line numbers are 1-based
            self._line_labels[len(self._lines)] = label

    def _port_function(self, port: int) -> None:
        self._line(0, f"def port{port}(batch):")
        for i, e in enumerate(self.out_edges):
            if e.partitioning == "keyed":
                width = e.downstream.parallelism
                self._line(
                    1, f"o{i} = [[] for _ in range({width})]; a{i} = [l.append for l in o{i}]"
                )
            else:
                self._line(1, f"o{i} = []; a{i} = o{i}.append")
        for node in self._counted:
            self._line(1, f"c{node.id} = 0")
        self._line(1, "r = None")
        self._line(1, "try:")
        self._line(2, "for r in batch:")
        before = len(self._lines)
        self._head(port, 3)
        if len(self._lines) == before:
            self._line(3, "pass")
        self._line(1, "except BaseException as exc:")
        self._line(2, "fail(exc, r)")
        outs = "".join(f"o{i}, " for i in range(len(self.out_edges)))
        counts = "".join(f"c{n.id}, " for n in self._counted)
        self._line(1, f"return ({outs}), ({counts})")

    def _cursor(self, node: OperatorNode, edge: DataEdge, ind: int) -> None:
        """On a keyed input, keep the record ``node`` is given where ``ctx.get_key()`` of its
        function (and of those chained after it) finds it."""
        if edge.key is None:
            # Downstream of a keyby, records keep their key (as in SAGE): a function chained
            # after the keyed one reads the key of the record that entered it.
            inherited = self.key_cursors.get(edge.upstream.id) if edge.chained else None
            if inherited is not None:
                self.key_cursors[node.id] = inherited
            return
        cursor = self.key_cursors.get(node.id)
        if cursor is None:
            cursor = self.key_cursors[node.id] = KeyCursor()
        c = self._name("kc", cursor)
        if len(node.inputs) > 1:  # the port decides which key function applies
            k = self._name("k", edge.key.entry(edge.key.create(self.index)))
            self._line(ind, f"{c}.fn = {k}; {c}.record = r")
        else:
            cursor.fn = edge.key.entry(edge.key.create(self.index))
            self._line(ind, f"{c}.record = r")

    def _head(self, port: int, ind: int) -> None:
        head = self.region.head
        if head.kind == "source":
            self._successors(head, ind)
        elif head.kind == "comap":
            assert head.factory is not None
            f = self._name("f", head.factory.entry(self._fns[head.id], f"map{port}"))
            self._cursor(head, head.inputs[port], ind)
            if _guarded(head):
                self._guarded_stage(head, f, ind)
                return
            self._line(ind, f"r = {f}(r)", head.label)
            self._successors(head, self._keep_not_none(head, ind))
        elif head.kind == "join":
            edge = head.inputs[port]
            assert edge.key is not None and head.factory is not None
            f = self._name("f", head.factory.entry(self._fns[head.id]))
            k = self._name("k", edge.key.entry(edge.key.create(self.index)))
            self._cursor(head, edge, ind)
            self._line(ind, f"for r in {f}(r, {k}(r), {port}) or ():", head.label)
            self._line(ind + 1, f"c{head.id} += 1")
            self._successors(head, ind + 1)
        else:
            self._stage(head, ind, head.inputs[port])

    def _stage(self, node: OperatorNode, ind: int, edge: DataEdge | None = None) -> None:
        assert node.factory is not None
        f = self._name("f", node.factory.entry(self._fns[node.id]))
        self._cursor(node, edge or node.inputs[0], ind)
        if _guarded(node):
            self._guarded_stage(node, f, ind)
            return
        if node.kind == "map":
            self._line(ind, f"r = {f}(r)", node.label)
            ind = self._keep_not_none(node, ind)
        elif node.kind == "filter":
            self._line(ind, f"if {f}(r):", node.label)
            self._line(ind + 1, f"c{node.id} += 1")
            ind += 1
        elif node.kind == "flatmap":
            self._line(ind, f"for r in {f}(r) or ():", node.label)
            self._line(ind + 1, f"c{node.id} += 1")
            ind += 1
        elif node.kind == "sink":
            self._line(ind, f"{f}(r)", node.label)
        else:  # pragma: no cover - compile() only chains one-input operators
            raise AssertionError(f"cannot chain {node.kind}")
        self._successors(node, ind)

    def _keep_not_none(self, node: OperatorNode, ind: int) -> int:
        """After ``r = f(r)``: under SAGE's semantics a ``None`` goes no further (counted
        out); returns the indentation of what follows."""
        if not _drops_none(node):
            return ind
        self._line(ind, "if r is not None:")
        self._line(ind + 1, f"c{node.id} += 1")
        return ind + 1

    def _guarded_stage(self, node: OperatorNode, f: str, ind: int) -> None:
        """A stage whose failures are skipped, logged or dead-lettered: ``try`` around each
        call."""
        h = self._name("h", self._error_handler(node))
        c = f"c{node.id}"
        call = {
            "map": f"v = {f}(r)",
            "comap": f"v = {f}(r)",  # the function of one port
            "filter": f"v = {f}(r)",
            "flatmap": f"v = list({f}(r) or ())",
            "sink": f"{f}(r)",
        }[node.kind]
        self._line(ind, "try:")
        self._line(ind + 1, call, node.label)
        self._line(ind, "except Exception as exc:")
        self._line(ind + 1, f"{h}(r, exc)", node.label)
        self._line(ind, "else:")
        ind += 1
        if node.kind in ("map", "comap"):
            if _drops_none(node):
                self._line(ind, "if v is not None:")
                ind += 1
            self._line(ind, "r = v")
        elif node.kind == "filter":
            self._line(ind, "if v:")
            ind += 1
        elif node.kind == "flatmap":
            self._line(ind, "for r in v:")
            ind += 1
        self._line(ind, f"{c} += 1")
        self._successors(node, ind)

    def _error_handler(self, node: OperatorNode) -> Callable[[Any, BaseException], None]:
        counters = node.counters[self.index]
        policy = node.on_error
        label = node.label
        dead_letter = self._dead_letter

        def handle(record: Any, exc: BaseException) -> None:
            if isinstance(exc, (JobCancelledError, ChannelClosed)):
                raise exc
            counters.errors_pending += 1  # counted with the batch's records (account)
            if policy == "skip":
                return
            if policy == "log":  # SAGE's way: the error in the log, the job goes on
                log.error("%s failed on record %r", label, record, exc_info=exc)
                return
            letter = DeadLetter(label, record, exc)
            if callable(policy):
                policy(letter)
            elif dead_letter is not None:
                dead_letter(letter)

        return handle

    def _successors(self, node: OperatorNode, ind: int) -> None:
        edges = node.outputs
        if len(edges) > 1:
            self._line(ind, f"r{node.id} = r")
        for e in edges:
            if len(edges) > 1:
                self._line(ind, f"r = r{node.id}")
            if e.chained:
                self._stage(e.downstream, ind)
                continue
            i = self.out_edges.index(e)
            if e.partitioning == "keyed":
                assert e.key is not None
                k = self._name("k", e.key.entry(e.key.create(self.index)))
                n = e.downstream.parallelism
                self._line(ind, f"a{i}[hash({k}(r)) % {n}](r)", f"keyby({e.key.name})")
            else:
                self._line(ind, f"a{i}(r)")

    # -- failures --------------------------------------------------------------------------
    def _fail(self, exc: BaseException, record: Any) -> NoReturn:
        if isinstance(exc, (JobCancelledError, ChannelClosed, OperatorError)):
            raise exc
        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename != self._filename:
            tb = tb.tb_next
        label = self._line_labels.get(tb.tb_lineno) if tb is not None else None
        raise OperatorError(label or self.region.label, record, exc) from exc

    # -- accounting ------------------------------------------------------------------------
    def _accounting_plan(self) -> list[tuple[NodeCounters, int, int]]:
        pos = {n.id: i for i, n in enumerate(self.region.nodes)}
        counted = {n.id: i for i, n in enumerate(self._counted)}
        plan = []
        for node in self.region.nodes:
            parent = -1 if node is self.region.head else pos[node.inputs[0].upstream.id]
            plan.append((node.counters[self.index], parent, counted.get(node.id, -1)))
        return plan

    def account(self, size: int, counts: tuple[int, ...]) -> None:
        """Add one processed batch of ``size`` records to the nodes' counters."""
        outs = [0] * len(self._plan)
        for i, (counters, parent, ci) in enumerate(self._plan):
            n_in = size if parent < 0 else outs[parent]
            n_out = counts[ci] if ci >= 0 else n_in
            outs[i] = n_out
            counters.records_in += n_in
            counters.records_out += n_out
            failed = counters.errors_pending
            if failed:
                counters.errors += failed
                counters.errors_pending = 0


def _guarded(node: OperatorNode) -> bool:
    """Whether a failing record is handled in the loop (skipped, logged, dead-lettered)."""
    return node.on_error != "fail" and node.kind in ("map", "filter", "flatmap", "sink", "comap")


def _drops_none(node: OperatorNode) -> bool:
    return node.kind in ("map", "comap") and node.drop_none


class KeyCursor:
    """The record a function on a keyed stream is processing, and the key function of its
    input: ``OperatorContext.get_key()`` applies one to the other (only when asked)."""

    __slots__ = ("fn", "record")

    def __init__(self) -> None:
        self.fn: Callable[[Any], Any] | None = None
        self.record: Any = None

    def key(self) -> Any:
        fn = self.fn
        return None if fn is None else fn(self.record)
