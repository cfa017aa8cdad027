"""SAGE programs, written the way SAGE's tutorials and apps write them, run on
``sage_nb.compat``'s ``LocalEnvironment`` (threads): each checks what SAGE guarantees.

The programs import only from ``sage_nb.compat``, hand their function classes constructor
arguments through the stream methods, call ``super().__init__(**kwargs)``, use ``self.logger``,
``self.name``, ``self.ctx`` and the service helpers. The facts they check are SAGE's
(``/work/shared/SAGE_COMPAT.md``): a non-blocking ``submit()``, paced sources, record at a
time, a map's ``None`` dropped, a failing record logged, ``.print()`` showing the first record,
SAGE's service lifecycle.
"""

from __future__ import annotations

import logging
import queue
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from typing import Any

import pytest
from support import ROOT, WAIT

from sage_nb.compat import (
    SAGE_SEMANTICS,
    BaseCoMapFunction,
    BaseJoinFunction,
    BaseService,
    BatchFunction,
    CustomLogger,
    FilterFunction,
    FlatMapFunction,
    FutureFunction,
    KeyByFunction,
    LocalEnvironment,
    MapFunction,
    SinkFunction,
    SourceFunction,
    StopSignal,
    wrap_lambda,
)


@pytest.fixture
def make_sage_env():
    """``make_sage_env(name)``: a ``sage_nb.compat.LocalEnvironment``, closed (cleanly) after
    the test."""
    made: list[LocalEnvironment] = []

    def make(name: str = "sage-program") -> LocalEnvironment:
        env = LocalEnvironment(name)
        made.append(env)
        return env

    yield make
    for env in made:
        assert env.close(timeout=WAIT), f"{env!r} did not close cleanly"


@pytest.fixture
def console_levels():
    """Put back the console level of sage_nb's loggers that ``set_console_log_level`` sets
    for the whole process."""
    from sage_nb.core import logs

    top = logging.getLogger("sage_nb")
    level = top.level
    handler = logs._handler
    handler_level = None if handler is None else handler.level
    yield
    top.setLevel(level)
    if handler is None:
        made = logs._handler
        if made is not None:
            top.removeHandler(made)
            made.close()
            logs._handler = None
    else:
        handler.setLevel(handler_level)


# -- functions shared by several programs -------------------------------------------------------
class ListSource(BatchFunction):
    """A batch source over the items it is given (None once they run out)."""

    def __init__(self, items, **kwargs):
        super().__init__(**kwargs)
        self.items = list(items)
        self.position = 0

    def execute(self):
        if self.position >= len(self.items):
            return None
        item = self.items[self.position]
        self.position += 1
        return item


class Collect(SinkFunction):
    """Appends every record to the list it is given; ``closed`` (a list too) hears ``close()``."""

    def __init__(self, out, closed=None, **kwargs):
        super().__init__(**kwargs)
        self.out = out
        self.closed = closed

    def execute(self, data):
        self.out.append(data)

    def close(self):
        if self.closed is not None:
            self.closed.append(self.name)


class Identity(MapFunction):
    def execute(self, data):
        return data


# -- 1. batch word count --------------------------------------------------------------------
class SentenceSource(BatchFunction):
    def __init__(self, sentences, **kwargs):
        super().__init__(**kwargs)
        self.sentences = list(sentences)
        self.counter = 0

    def execute(self):
        if self.counter >= len(self.sentences):
            return None
        sentence = self.sentences[self.counter]
        self.counter += 1
        return sentence


class SplitWords(FlatMapFunction):
    """Returns the first word and collects the others (both reach the next operator)."""

    def execute(self, data):
        words = data.lower().split()
        for word in words[1:]:
            self.collect(word)
        return words[:1]


class WordKey(KeyByFunction):
    def execute(self, data):
        return data


class CountWords(MapFunction):
    """Keyed state SAGE's way: a dict keyed by ``self.ctx.get_key()``."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.counts = {}

    def execute(self, data):
        key = self.ctx.get_key()
        assert key == data
        self.counts[key] = self.counts.get(key, 0) + 1
        self.logger.debug("%s: %d", key, self.counts[key])
        return (key, self.counts[key])


class WordCountSink(SinkFunction):
    def __init__(self, results, lifecycle, **kwargs):
        super().__init__(**kwargs)
        self.results = results
        self.lifecycle = lifecycle

    def execute(self, data):
        word, count = data
        self.results[word] = count
        self.lifecycle.append("record")

    def close(self):
        self.lifecycle.append("close")


SENTENCES = [
    "hello world",
    "hello sage",
    "Hello world of AI",
    "sage world",
    "chatgpt",
]


def test_batch_word_count_counts_every_word_per_key_and_closes_the_sink(make_sage_env) -> None:
    env = make_sage_env("wordcount")
    results: dict[str, int] = {}
    lifecycle: list[str] = []
    words = env.from_batch(SentenceSource, SENTENCES, delay=0).flatmap(SplitWords)
    counts = words.keyby(WordKey).map(CountWords)
    counts.sink(WordCountSink, results, lifecycle)

    job = env.submit(autostop=True)

    assert job.status == "finished"
    expected = Counter(w for s in SENTENCES for w in s.lower().split())
    assert results == dict(expected)
    assert results == {"hello": 3, "world": 3, "sage": 2, "of": 1, "ai": 1, "chatgpt": 1}
    # submit(autostop=True) returned after every record reached the sink and close() ran.
    assert lifecycle == ["record"] * sum(expected.values()) + ["close"]
    assert list(results) == ["hello", "world", "sage", "of", "ai", "chatgpt"]  # record order


def test_keyed_counts_run_up_one_by_one_per_key(make_sage_env) -> None:
    env = make_sage_env("wordcount-keyed")
    out: list[tuple[str, int]] = []
    stream = env.from_batch(SentenceSource, SENTENCES, delay=0).flatmap(SplitWords)
    stream.keyby(WordKey).map(CountWords, parallelism=2).sink(Collect, out)

    env.submit(autostop=True)

    by_word: dict[str, list[int]] = {}
    for word, count in out:
        by_word.setdefault(word, []).append(count)
    # One instance holds each word's state, so its counts go 1, 2, 3 ... in order.
    expected = {"hello": 3, "world": 3, "sage": 2, "of": 1, "ai": 1, "chatgpt": 1}
    assert by_word == {word: list(range(1, n + 1)) for word, n in expected.items()}


def test_sources_are_paced_by_default_as_in_sage(make_sage_env) -> None:
    env = make_sage_env("pacing")
    out: list[str] = []
    env.from_batch(SentenceSource, SENTENCES[:3]).sink(Collect, out)

    job = env.submit(autostop=True)

    assert out == SENTENCES[:3]
    (source,) = [n for n in job.execution_graph.nodes if n.kind == "source"]
    assert source.transformation.delay == 0.1 == SAGE_SEMANTICS.batch_delay
    assert not source.transformation.streaming


class StopAtOnce(SourceFunction):
    def execute(self):
        return StopSignal("nothing-to-read")


def test_from_source_waits_one_second_between_records_by_default(make_sage_env) -> None:
    env = make_sage_env("pacing-source")
    out: list[Any] = []
    env.from_source(StopAtOnce).sink(Collect, out)
    # A source that stops at once ends the job without waiting for its pace.
    job = env.submit(autostop=True)

    assert job.status == "finished"
    assert out == []
    (source,) = [n for n in job.execution_graph.nodes if n.kind == "source"]
    assert source.transformation.delay == 1.0 == SAGE_SEMANTICS.source_delay
    assert source.transformation.streaming


# -- 2. an endless source: submit(), wait, close() -----------------------------------------------
class NumberSource(SourceFunction):
    def __init__(self, start=1, **kwargs):
        super().__init__(**kwargs)
        self.next_number = start

    def execute(self):
        number = self.next_number
        self.next_number += 1
        return number


class SignalAfter(SinkFunction):
    def __init__(self, out, wanted, enough, closed, **kwargs):
        super().__init__(**kwargs)
        self.out = out
        self.wanted = wanted
        self.enough = enough
        self.closed = closed

    def execute(self, data):
        self.out.append(data)
        if len(self.out) >= self.wanted:
            self.enough.set()

    def close(self):
        self.closed.set()


def test_endless_source_runs_in_the_background_until_close(make_sage_env) -> None:
    env = make_sage_env("endless")
    out: list[int] = []
    enough, closed = threading.Event(), threading.Event()
    numbers = env.from_source(NumberSource, 1, delay=0.01)
    numbers.map(Identity).sink(SignalAfter, out, 5, enough, closed, name="FinalSink")

    job = env.submit()  # SAGE's default: returns at once

    assert job.status == "running"
    assert enough.wait(WAIT), f"the sink got only {out}"
    assert not closed.is_set()
    assert env.close(timeout=WAIT)
    assert job.done
    assert job.status == "stopped"
    assert closed.is_set(), "the sink's close() did not run"
    assert out[:5] == [1, 2, 3, 4, 5]
    assert out == list(range(1, len(out) + 1))  # one source, record at a time: in order
    (source,) = [n for n in job.execution_graph.nodes if n.kind == "source"]
    assert source.transformation.delay == 0.01
    assert env.threads() == []


# -- 3. parallelism: self.name and ctx.parallel_index per instance ------------------------------
class ModKey(KeyByFunction):
    def __init__(self, modulo, **kwargs):
        super().__init__(**kwargs)
        self.modulo = modulo

    def execute(self, data):
        return data % self.modulo


class WhoAmI(MapFunction):
    def __init__(self, built, **kwargs):
        super().__init__(**kwargs)
        built.append(self)

    def execute(self, data):
        ctx = self.ctx
        return {
            "value": data,
            "key": ctx.get_key(),
            "name": self.name,
            "index": ctx.parallel_index,
            "parallelism": ctx.parallelism,
            "instance": id(self),
        }


def test_parallel_instances_are_named_and_hold_their_keys(make_sage_env) -> None:
    env = make_sage_env("parallelism")
    built: list[WhoAmI] = []
    out: list[dict[str, Any]] = []
    closed: list[str] = []
    stream = env.from_batch(ListSource, range(1, 13), delay=0).keyby(ModKey, 4)
    stream.map(WhoAmI, built, parallelism=2, name="Tagger").sink(
        Collect, out, closed, name="Collector"
    )

    env.submit(autostop=True)

    assert len(built) == 2  # one instance per parallel instance, built at submit
    assert sorted(r["value"] for r in out) == list(range(1, 13))
    assert all(r["key"] == r["value"] % 4 for r in out)
    assert {r["name"] for r in out} == {"Tagger_0", "Tagger_1"}  # both instances got keys
    for r in out:
        assert r["name"] == f"Tagger_{r['index']}"
        assert r["parallelism"] == 2
    instances_of_key: dict[int, set[int]] = {}
    for r in out:
        instances_of_key.setdefault(r["key"], set()).add(r["instance"])
    assert all(len(ids) == 1 for ids in instances_of_key.values()), instances_of_key
    assert {id(b) for b in built} == {r["instance"] for r in out}
    assert closed == ["Collector_0"]


def test_a_parallel_sink_fills_one_list(make_sage_env) -> None:
    env = make_sage_env("parallel-sink")
    out: list[int] = []
    closed: list[str] = []
    env.from_batch(ListSource, range(20), delay=0).sink(Collect, out, closed, parallelism=2)

    env.submit(autostop=True)

    assert sorted(out) == list(range(20))
    assert sorted(closed) == ["Collect_0", "Collect_1"]


# -- 4. connected streams: comap, join, union, keyby per stream ---------------------------------
class TagStreams(BaseCoMapFunction):
    def __init__(self, left_tag, right_tag, **kwargs):
        super().__init__(**kwargs)
        self.left_tag = left_tag
        self.right_tag = right_tag

    def map0(self, data):
        return f"[{self.left_tag}] {data}"

    def map1(self, data):
        return None if data == "skip" else f"[{self.right_tag}] {data}"


def test_comap_maps_each_stream_with_its_own_method(make_sage_env) -> None:
    env = make_sage_env("comap")
    out: list[str] = []
    hellos = env.from_batch(ListSource, [f"Hello #{i}" for i in range(1, 4)], delay=0)
    worlds = env.from_batch(ListSource, ["World #1", "skip", "World #2"], delay=0)
    hellos.connect(worlds).comap(TagStreams, "Stream0", right_tag="Stream1").sink(Collect, out)

    env.submit(autostop=True)

    left = [r for r in out if r.startswith("[Stream0]")]
    right = [r for r in out if r.startswith("[Stream1]")]
    assert left == ["[Stream0] Hello #1", "[Stream0] Hello #2", "[Stream0] Hello #3"]
    assert right == ["[Stream1] World #1", "[Stream1] World #2"]  # map1's None: nothing
    assert len(out) == 5


class IdKeyBy(KeyByFunction):
    def execute(self, data):
        return data["id"]


class HelloWorldJoin(BaseJoinFunction):
    """Caches each side per key; emits the merged record once both sides are there."""

    def __init__(self, separator, **kwargs):
        super().__init__(**kwargs)
        self.separator = separator
        self.cache: dict[Any, dict[int, Any]] = {}
        self.calls: list[tuple[Any, int]] = []

    def execute(self, payload, key, tag):
        sides = self.cache.setdefault(key, {})
        sides[tag] = payload
        if 0 in sides and 1 in sides:
            merged = f"{sides[0]['msg']}{self.separator}{sides[1]['msg']}"
            return [{"id": key, "msg": merged}]
        return []


def test_join_merges_two_keyed_streams_on_their_keys(make_sage_env) -> None:
    env = make_sage_env("join")
    out: list[dict[str, Any]] = []
    hello = [{"id": i, "msg": f"Hello-{i}"} for i in (1, 2, 3)]
    world = [{"id": i, "msg": f"World-{i}"} for i in (2, 3, 4)]
    left = env.from_batch(ListSource, hello, delay=0).keyby(IdKeyBy)
    right = env.from_batch(ListSource, world, delay=0).keyby(IdKeyBy)
    left.connect(right).join(HelloWorldJoin, " + ").sink(Collect, out)

    env.submit(autostop=True)

    assert sorted(out, key=lambda r: r["id"]) == [
        {"id": 2, "msg": "Hello-2 + World-2"},
        {"id": 3, "msg": "Hello-3 + World-3"},
    ]


class Upper(MapFunction):
    def execute(self, data):
        return data.upper()


def test_connected_map_is_the_union_of_the_streams(make_sage_env) -> None:
    env = make_sage_env("union")
    out: list[str] = []
    a = env.from_batch(ListSource, ["a1", "a2", "a3"], delay=0)
    b = env.from_batch(ListSource, ["b1", "b2"], delay=0)
    union = a.connect(b).map(Upper)
    union.sink(Collect, out)

    env.submit(autostop=True)

    assert sorted(out) == ["A1", "A2", "A3", "B1", "B2"]
    assert [r for r in out if r.startswith("A")] == ["A1", "A2", "A3"]  # each in its order


class DictId(KeyByFunction):
    def execute(self, data):
        return data["id"]


class TupleId(KeyByFunction):
    def execute(self, data):
        return data[0]


class OrderShipmentJoin(BaseJoinFunction):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.orders: dict[Any, Any] = {}
        self.shipments: dict[Any, list[Any]] = {}

    def execute(self, payload, key, tag):
        if tag == 0:
            self.orders[key] = payload
            return [(key, payload["item"], s[1]) for s in self.shipments.pop(key, [])]
        if key in self.orders:
            return [(key, self.orders[key]["item"], payload[1])]
        self.shipments.setdefault(key, []).append(payload)
        return None


def test_connected_keyby_takes_one_key_function_per_stream(make_sage_env) -> None:
    env = make_sage_env("keyby-list")
    out: list[tuple[Any, ...]] = []
    orders = env.from_batch(ListSource, [{"id": 1, "item": "pen"}, {"id": 2, "item": "ink"}])
    shipments = env.from_batch(ListSource, [(2, "shipped"), (1, "packed"), (3, "lost")])
    connected = orders.connect(shipments).keyby([DictId, TupleId])
    connected.join(OrderShipmentJoin).sink(Collect, out)

    env.submit(autostop=True)

    assert sorted(out) == [(1, "pen", "packed"), (2, "ink", "shipped")]


def test_connected_keyby_needs_one_key_function_per_stream(make_sage_env) -> None:
    env = make_sage_env("keyby-list-bad")
    a = env.from_batch([1])
    b = env.from_batch([2])
    with pytest.raises(ValueError, match="2 connected streams"):
        a.connect(b).keyby([DictId, TupleId, DictId])


# -- 5. services calling each other, and SAGE's service lifecycle -------------------------------
class KeyValueStore(BaseService):
    """A store that records its lifecycle (and its ctx, already there in ``__init__``)."""

    def __init__(self, lifecycle, **kwargs):
        super().__init__(**kwargs)
        self.lifecycle = lifecycle
        self.lifecycle.append(f"init ctx={self.ctx.name}")
        self.data: dict[Any, Any] = {}

    def setup(self):
        self.lifecycle.append("setup")

    def start_running(self):
        self.lifecycle.append("start_running")

    def start(self):
        self.lifecycle.append("start")

    def stop(self):
        self.lifecycle.append("stop")

    def cleanup(self):
        self.lifecycle.append("cleanup")

    def close(self):
        self.lifecycle.append("close")

    def terminate(self):
        self.lifecycle.append("terminate")

    def put(self, key, value):
        self.data[key] = value
        return len(self.data)

    def process(self, key):
        return self.data.get(key)


class OrderDesk(BaseService):
    """Calls the store twice per request: synchronously and through a future."""

    def __init__(self, lifecycle, **kwargs):
        super().__init__(**kwargs)
        self.lifecycle = lifecycle
        self.store_name = f"{self.ctx.name}_store"  # ctx in __init__: SAGE injects it first
        self.lifecycle.append("init")

    def setup(self):
        self.lifecycle.append("setup")

    def start(self):
        self.lifecycle.append("start")

    def stop(self):
        self.lifecycle.append("stop")

    def close(self):
        self.lifecycle.append("close")

    def process(self, order, quantity):
        self.logger.info("order %s x%d", order, quantity)
        size = self.call_service(self.store_name, order, quantity, method="put", timeout=WAIT)
        stored = self.call_service_async(self.store_name, order).result(timeout=WAIT)
        return {"order": order, "stored": stored, "store_size": size}


class PlaceOrder(MapFunction):
    def execute(self, data):
        order, quantity = data
        return self.call_service("desk", order, quantity, timeout=WAIT)


def test_services_call_each_other_and_follow_sages_lifecycle(make_sage_env) -> None:
    env = make_sage_env("services")
    store_log: list[str] = []
    desk_log: list[str] = []
    env.register_service("desk_store", KeyValueStore, store_log)
    env.register_service("desk", OrderDesk, desk_log)
    out: list[dict[str, Any]] = []
    orders = [("pen", 2), ("ink", 1), ("pen", 5)]
    env.from_batch(ListSource, orders, delay=0).map(PlaceOrder).sink(Collect, out)

    env.submit(autostop=True)

    assert out == [
        {"order": "pen", "stored": 2, "store_size": 1},
        {"order": "ink", "stored": 1, "store_size": 2},
        {"order": "pen", "stored": 5, "store_size": 2},
    ]
    # start_running wins over start, cleanup over close; terminate comes last.
    assert store_log == [
        "init ctx=desk_store",
        "setup",
        "start_running",
        "stop",
        "cleanup",
        "terminate",
    ]
    # Without start_running, start; without cleanup, close.
    assert desk_log == ["init", "setup", "start", "stop", "close"]
    assert env.close(timeout=WAIT)
    assert store_log[-1] == "terminate" and desk_log[-1] == "close"  # nothing ran twice


class NoSuper(BaseService):
    """SAGE's tutorial service: ``__init__`` never calls ``super().__init__()``."""

    def __init__(self, greeting):
        self.greeting = greeting
        self.owner = self.ctx.name

    def hello(self, who):
        return f"{self.greeting}, {who} from {self.owner} ({self.name})"


class Greet(SinkFunction):
    def __init__(self, out, **kwargs):
        super().__init__(**kwargs)
        self.out = out

    def execute(self, data):
        self.out.append(self.call_service("hello_service", data, method="hello"))


def test_a_service_that_skips_super_init_still_has_its_context(make_sage_env) -> None:
    env = make_sage_env("hello-service")
    env.register_service("hello_service", NoSuper, "hello")
    out: list[str] = []
    env.from_batch(ListSource, ["ada", "bob"], delay=0).sink(Greet, out)

    env.submit(autostop=True)

    assert out == [
        "hello, ada from hello_service (hello_service)",
        "hello, bob from hello_service (hello_service)",
    ]


# -- 6. a pipeline used as a service through a bridge -------------------------------------------
class PipelineBridge:
    """Requests go in a queue, each with a one-slot queue for its answer."""

    def __init__(self):
        self._requests: queue.Queue[Any] = queue.Queue()
        self._closed = threading.Event()

    def submit(self, payload):
        if self._closed.is_set():
            raise RuntimeError("the pipeline bridge is closed")
        answer: queue.Queue[Any] = queue.Queue(maxsize=1)
        self._requests.put((payload, answer))
        return answer

    def next(self, timeout=0.05):
        try:
            return self._requests.get(timeout=timeout)
        except queue.Empty:
            return StopSignal("pipeline-service-shutdown") if self._closed.is_set() else None

    def close(self):
        self._closed.set()


class OrderPipelineService(BaseService):
    def __init__(self, bridge, request_timeout=WAIT, **kwargs):
        super().__init__(**kwargs)
        self.bridge = bridge
        self.request_timeout = request_timeout

    def process(self, message):
        if message.get("command") == "shutdown":
            self.bridge.close()
            return {"status": "shutdown_requested"}
        answer = self.bridge.submit(message)
        try:
            return answer.get(timeout=self.request_timeout)
        except queue.Empty:
            raise TimeoutError(f"no answer for {message} in {self.request_timeout} s") from None


class RiskService(BaseService):
    def process(self, amount):
        return round(amount / 1000, 3)


class BridgeSource(SourceFunction):
    def __init__(self, bridge, **kwargs):
        super().__init__(**kwargs)
        self.bridge = bridge

    def execute(self):
        return self.bridge.next()  # None while idle, StopSignal once closed


class ScoreRisk(MapFunction):
    def execute(self, request):
        payload, answer = request
        risk = self.call_service("risk", payload["amount"], timeout=WAIT)
        return payload, answer, risk


class DecisionSink(SinkFunction):
    def __init__(self, answered, **kwargs):
        super().__init__(**kwargs)
        self.answered = answered

    def execute(self, data):
        payload, answer, risk = data
        decision = "auto_approve" if risk < 0.1 else "review"
        self.answered.append(payload["order"])
        answer.put({"order": payload["order"], "decision": decision, "risk": risk}, timeout=WAIT)


class InvokePipeline(MapFunction):
    def execute(self, payload):
        return self.call_service("order_pipeline", payload, timeout=WAIT)


def test_a_pipeline_serves_requests_of_another_pipeline_through_a_bridge(make_sage_env) -> None:
    env = make_sage_env("pipeline-as-service")
    bridge = PipelineBridge()
    env.register_service("order_pipeline", OrderPipelineService, bridge)
    env.register_service("risk", RiskService)
    answered: list[str] = []
    out: list[dict[str, Any]] = []
    # The pipeline behind the service ...
    env.from_source(BridgeSource, bridge, delay=0.01).map(ScoreRisk).sink(DecisionSink, answered)
    # ... and the driver that calls it, ending with the shutdown command.
    orders = [
        {"order": "o-1001", "amount": 20},
        {"order": "o-1002", "amount": 450},
        {"order": "o-1003", "amount": 75},
        {"command": "shutdown"},
    ]
    env.from_batch(ListSource, orders, delay=0).map(InvokePipeline).sink(Collect, out)

    job = env.submit(autostop=True)  # ends once the bridge is closed and both sources ended

    assert job.status == "finished"
    assert out == [
        {"order": "o-1001", "decision": "auto_approve", "risk": 0.02},
        {"order": "o-1002", "decision": "review", "risk": 0.45},
        {"order": "o-1003", "decision": "auto_approve", "risk": 0.075},
        {"status": "shutdown_requested"},
    ]
    assert answered == ["o-1001", "o-1002", "o-1003"]


# -- 7. apps whose sinks fill the list they are handed -----------------------------------------
class ResultCollectorSink(SinkFunction):
    def __init__(self, results, instances=None, **kwargs):
        super().__init__(**kwargs)
        self.results = results
        if instances is not None:
            instances.append(self)

    def execute(self, data):
        self.results.append(data)


class Validate(MapFunction):
    def execute(self, data):
        if not data.get("query"):
            self.logger.warning("empty query in %s", data)
            return None
        return {**data, "valid": True}


class Analyze(MapFunction):
    def execute(self, data):
        return {"query": data["query"], "terms": len(data["query"].split())}


def run_landscape(requests: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Any]]:
    results: list[dict[str, Any]] = []
    instances: list[Any] = []
    env = LocalEnvironment("patent_landscape_mapper")
    try:
        env.set_console_log_level("ERROR")
        stream = env.from_batch(ListSource, requests, delay=0).map(Validate).map(Analyze)
        stream.sink(ResultCollectorSink, results=results, instances=instances)
        env.submit(autostop=True)
    finally:
        assert env.close(timeout=WAIT)
    return results, instances


def test_an_app_reads_its_result_from_the_list_its_sink_filled(console_levels) -> None:
    requests = [{"query": "solid state battery"}, {"query": ""}, {"query": "anode"}]

    results, instances = run_landscape(requests)

    assert results == [{"query": "solid state battery", "terms": 3}, {"query": "anode", "terms": 1}]
    assert results[-1] == {"query": "anode", "terms": 1}
    (sink,) = instances
    assert sink.results is results  # the very list, no copy


def test_every_parallel_sink_instance_fills_the_very_list_given(make_sage_env) -> None:
    env = make_sage_env("collect-parallel")
    results: list[int] = []
    instances: list[ResultCollectorSink] = []
    env.from_batch(ListSource, range(30), delay=0).sink(
        ResultCollectorSink, results, instances=instances, parallelism=2
    )

    env.submit(autostop=True)

    assert len(instances) == 2
    assert all(sink.results is results for sink in instances)
    assert sorted(results) == list(range(30))


# -- 8. SAGE's record semantics -------------------------------------------------------------
class DropOdd(MapFunction):
    def execute(self, data):
        return None if data % 2 else data * 10


def test_a_map_returning_none_emits_nothing(make_sage_env) -> None:
    env = make_sage_env("drop-none")
    out: list[int] = []
    env.from_batch(ListSource, range(6), delay=0).map(DropOdd).sink(Collect, out)

    job = env.submit(autostop=True)

    assert out == [0, 20, 40]
    (sink,) = [n for n in job.execution_graph.nodes if n.kind == "sink"]
    assert sink.statistics().records_in == 3


class FailOnTwo(MapFunction):
    def execute(self, data):
        if data == 2:
            raise ValueError(f"cannot take {data}")
        return data


class FailingSink(SinkFunction):
    def __init__(self, out, **kwargs):
        super().__init__(**kwargs)
        self.out = out

    def execute(self, data):
        if data == 4:
            raise KeyError(data)
        self.out.append(data)


def test_a_failing_record_is_logged_and_the_job_goes_on(make_sage_env, caplog) -> None:
    env = make_sage_env("fail-one")
    out: list[int] = []
    env.from_batch(ListSource, [1, 2, 3, 4, 5], delay=0).map(FailOnTwo).sink(FailingSink, out)

    with caplog.at_level(logging.ERROR, logger="sage_nb"):
        job = env.submit(autostop=True)

    assert job.status == "finished"
    assert out == [1, 3, 5]
    failures = [r for r in caplog.records if r.exc_info and r.levelno == logging.ERROR]
    assert len(failures) == 2, [r.getMessage() for r in caplog.records]
    in_map, in_sink = failures
    assert "FailOnTwo" in in_map.getMessage() and "record 2" in in_map.getMessage()
    assert isinstance(in_map.exc_info[1], ValueError)
    assert str(in_map.exc_info[1]) == "cannot take 2"
    assert "FailingSink" in in_sink.getMessage() and "record 4" in in_sink.getMessage()
    assert isinstance(in_sink.exc_info[1], KeyError)
    errors = {n.label: n.statistics().errors for n in job.execution_graph.nodes}
    assert errors == {"from_batch": 0, "map(FailOnTwo)": 1, "sink(FailingSink)": 1}


class TagLeftRight(BaseCoMapFunction):
    def map0(self, data):
        return ("L", data)

    def map1(self, data):
        if data == 2:
            raise ValueError("right stream cannot take 2")
        return ("R", data)


def test_a_failing_record_in_a_comap_is_logged_and_the_job_goes_on(make_sage_env, caplog) -> None:
    env = make_sage_env("comap-fails-one")
    out: list[tuple[str, int]] = []
    left = env.from_batch(ListSource, [1, 2], delay=0)
    right = env.from_batch(ListSource, [1, 2, 3], delay=0)
    left.connect(right).comap(TagLeftRight).sink(Collect, out)

    with caplog.at_level(logging.ERROR, logger="sage_nb"):
        job = env.submit(autostop=True)

    assert job.status == "finished"
    assert sorted(out) == [("L", 1), ("L", 2), ("R", 1), ("R", 3)]
    failures = [r for r in caplog.records if r.exc_info]
    assert [str(r.exc_info[1]) for r in failures] == ["right stream cannot take 2"]


class WhoIsIt(MapFunction):
    def execute(self, data):
        return self.name


def test_operators_of_one_class_get_distinct_names(make_sage_env) -> None:
    env = make_sage_env("same-class")
    first: list[str] = []
    second: list[str] = []
    source = env.from_batch(ListSource, [1], delay=0)
    source.map(WhoIsIt).sink(Collect, first)
    source.map(WhoIsIt).sink(Collect, second)

    env.submit(autostop=True)

    assert first == ["WhoIsIt_0"]
    assert second == ["WhoIsIt_1_0"]  # SAGE 0.2: basename WhoIsIt_1, instance 0


class OwnLogger(MapFunction):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._logger = CustomLogger("OwnLogger", outputs=[("console", "ERROR")])

    def execute(self, data):
        return type(self.logger).__name__, self.logger.name


class ContextLogger(MapFunction):
    def execute(self, data):
        self.logger.debug("got %s", data)
        return data, self.logger.name


def test_functions_log_through_their_own_logger_or_one_named_after_them(make_sage_env) -> None:
    env = make_sage_env("loggers")
    own: list[Any] = []
    named: list[Any] = []
    stream = env.from_batch(ListSource, [1], delay=0)
    stream.map(OwnLogger).sink(Collect, own)
    stream.map(ContextLogger, name="Tracer").sink(Collect, named)

    env.submit(autostop=True)

    assert own == [("CustomLogger", "OwnLogger")]  # the logger the function set
    ((record, logger_name),) = named
    assert record == 1
    assert logger_name.endswith("Tracer_0")  # named after self.name


def test_print_shows_only_the_first_record(make_sage_env, capsys) -> None:
    env = make_sage_env("print")
    out: list[Any] = []
    stream = env.from_batch(ListSource, [{"id": 1, "msg": "hi"}, {"id": 2}, {"id": 3}], delay=0)
    stream.print("🎯 Final Result").sink(Collect, out)

    env.submit(autostop=True)

    printed = capsys.readouterr().out.splitlines()
    assert printed == [
        "🔍 Stream output: 🎯 Final Result | id=1, msg=hi",
        "   (Further outputs logged. Check logs for details.)",
    ]
    assert len(out) == 3  # print() returns the stream: the next sink still gets everything


def test_two_sinks_on_one_stream_each_get_every_record(make_sage_env) -> None:
    env = make_sage_env("two-sinks")
    first: list[int] = []
    second: list[int] = []
    third: list[int] = []
    stream = env.from_batch(ListSource, [1, 2, 3], delay=0).map(Identity)
    returned = stream.sink(Collect, first)
    assert returned is stream
    stream.sink(Collect, second).sink(Collect, third)

    env.submit(autostop=True)

    assert first == second == third == [1, 2, 3]


class CountTo(SourceFunction):
    def __init__(self, last, **kwargs):
        super().__init__(**kwargs)
        self.last = last
        self.counter = 0

    def execute(self):
        self.counter += 1
        if self.counter > self.last:
            return StopSignal(f"NumberSequence_{self.counter}")
        return self.counter


class BatchUntilStop(BatchFunction):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.items = ["a", "b", StopSignal("batch-done"), "never"]

    def execute(self):
        return self.items.pop(0)


def test_a_stop_signal_ends_a_source(make_sage_env) -> None:
    env = make_sage_env("stop-signal")
    numbers: list[int] = []
    letters: list[str] = []
    env.from_source(CountTo, 4, delay=0).sink(Collect, numbers)
    env.from_batch(BatchUntilStop, delay=0).sink(Collect, letters)

    job = env.submit(autostop=True)

    assert job.status == "finished"
    assert numbers == [1, 2, 3, 4]
    assert letters == ["a", "b"]


class CounterService(BaseService):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.value = 0

    def get(self):
        return self.value

    def increment(self):
        self.value += 1
        return self.value


class ReadCounter(MapFunction):
    def execute(self, data):
        return data, self.call_service("counter", method="get", timeout=WAIT)


class BumpCounter(SinkFunction):
    def __init__(self, out, **kwargs):
        super().__init__(**kwargs)
        self.out = out

    def execute(self, data):
        self.out.append(data)
        self.call_service("counter", method="increment", timeout=WAIT)


def test_record_at_a_time_a_later_write_is_seen_by_the_next_record(make_sage_env) -> None:
    env = make_sage_env("record-at-a-time")
    env.register_service("counter", CounterService)
    out: list[tuple[str, int]] = []
    letters = list("abcdefgh")
    stream = env.from_batch(ListSource, letters, delay=0).map(ReadCounter)
    stream.map(Identity, parallelism=2).sink(BumpCounter, out)

    env.submit(autostop=True)

    # The sink's increment for record i happened before the map read the counter for i + 1.
    assert out == [(letter, i) for i, letter in enumerate(letters)]


def test_set_console_log_level_sets_sage_nb_loggers_level(make_sage_env, console_levels) -> None:
    env = make_sage_env("log-level")
    function_logger = logging.getLogger("sage_nb.function.Validate_0")

    env.set_console_log_level("error")

    assert env.console_log_level == "ERROR"
    assert not function_logger.isEnabledFor(logging.WARNING)
    assert function_logger.isEnabledFor(logging.ERROR)
    env.set_console_log_level("DEBUG")
    assert function_logger.isEnabledFor(logging.DEBUG)
    with pytest.raises(ValueError, match="VERBOSE"):
        env.set_console_log_level("VERBOSE")
    assert env.console_log_level == "DEBUG"


class ListHandler(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(f"{record.levelname} {record.getMessage()}")


def test_disable_global_console_debug_drops_debug_messages() -> None:
    logger = CustomLogger("compat-debug-switch", outputs=[("console", "DEBUG")])
    handler = ListHandler()
    logger.logger.addHandler(handler)
    was_enabled = CustomLogger.is_global_console_debug_enabled()
    try:
        CustomLogger.enable_global_console_debug()
        logger.debug("shown %d", 1)
        CustomLogger.disable_global_console_debug()
        assert not CustomLogger.is_global_console_debug_enabled()
        logger.debug("dropped %d", 2)
        logger.info("info %d", 3)
        CustomLogger.enable_global_console_debug()
        logger.debug("shown %d", 4)
    finally:
        if was_enabled:
            CustomLogger.enable_global_console_debug()
        else:
            CustomLogger.disable_global_console_debug()
        logger.logger.removeHandler(handler)
    assert handler.messages == ["DEBUG shown 1", "INFO info 3", "DEBUG shown 4"]


def is_even(x: int) -> bool:
    return x % 2 == 0


def test_wrap_lambda_makes_function_classes(make_sage_env) -> None:
    Triple = wrap_lambda(lambda x: x * 3, "map")
    Even = wrap_lambda(is_even)  # the bool annotation makes it a filter
    assert issubclass(Triple, MapFunction)
    assert issubclass(Even, FilterFunction)
    assert Triple().execute(4) == 12
    assert Even().execute(3) is False
    with pytest.raises(ValueError, match="func_type"):
        wrap_lambda(is_even, "reduce")

    env = make_sage_env("wrap-lambda")
    out: list[int] = []
    env.from_batch(ListSource, range(6), delay=0).filter(Even).map(Triple).sink(Collect, out)
    env.submit(autostop=True)

    assert out == [0, 6, 12]


class StartOnce(SourceFunction):
    def __init__(self, start_value, **kwargs):
        super().__init__(**kwargs)
        self.start_value = start_value
        self.sent = False

    def execute(self):
        if self.sent:
            return StopSignal("start-sent")
        self.sent = True
        return {"signal": "start", "n": self.start_value}


class MergeFeedback(BaseCoMapFunction):
    def map0(self, data):
        return data["n"]

    def map1(self, data):
        return data


class NextSentence(MapFunction):
    def __init__(self, sentences, **kwargs):
        super().__init__(**kwargs)
        self.sentences = sentences

    def execute(self, n):
        if n >= len(self.sentences):
            return None  # nothing flows back: the loop dies out
        return n


class Advance(MapFunction):
    def execute(self, n):
        return n + 1


def test_a_feedback_loop_ends_by_itself_when_it_dies_out(make_sage_env) -> None:
    env = make_sage_env("future-loop")
    sentences = ["first.", "second.", "third.", "fourth."]
    out: list[int] = []
    start = env.from_source(StartOnce, 0, delay=0)
    feedback = env.from_future("loop")
    provided = start.connect(feedback).comap(MergeFeedback).map(NextSentence, sentences)
    provided.sink(Collect, out)
    provided.map(Advance).fill_future(feedback)

    job = env.submit(autostop=True)

    assert job.status == "finished"
    assert out == [0, 1, 2, 3]


def test_filling_a_future_twice_or_a_plain_stream_is_refused(make_sage_env) -> None:
    env = make_sage_env("future-misuse")
    feedback = env.from_future("loop")
    plain = env.from_batch([1])
    plain.map(Identity).fill_future(feedback)
    with pytest.raises(RuntimeError, match="already filled"):
        plain.fill_future(feedback)
    with pytest.raises(ValueError, match="from_future"):
        plain.map(Identity).fill_future(plain)


class SetupWithContext(MapFunction):
    def __init__(self, seen, **kwargs):
        super().__init__(**kwargs)
        self.seen = seen
        self.seen.append(("init", self.ctx))

    def setup(self, context):
        self.seen.append(("setup", context.parallel_index, context is self.ctx))

    def execute(self, data):
        return data


def test_a_setup_that_takes_the_context_gets_it(make_sage_env) -> None:
    env = make_sage_env("setup-context")
    seen: list[tuple[Any, ...]] = []
    out: list[int] = []
    env.from_batch(ListSource, [1], delay=0).map(SetupWithContext, seen).sink(Collect, out)

    env.submit(autostop=True)

    assert seen == [("init", None), ("setup", 0, True)]  # no ctx in __init__, as in SAGE
    assert out == [1]


def test_a_future_function_is_only_a_placeholder() -> None:
    placeholder = FutureFunction()
    with pytest.raises(RuntimeError, match="fill_future"):
        placeholder.execute("x")
    with pytest.raises(RuntimeError, match="fill_future"):
        placeholder("x")
    with pytest.raises(RuntimeError, match="fill_future"):
        placeholder.call("x")


# -- 9. a script that ends right after submit() -------------------------------------------------
SCRIPT = """
import sys

from sage_nb.compat import LocalEnvironment

env = LocalEnvironment("ends-at-once")
env.from_batch([f"line {i}" for i in range(1, 6)], delay=0.01).sink(print)
job = env.submit()
print(f"submitted: {job.status}", file=sys.stderr)
"""


def test_a_script_ending_after_submit_still_prints_every_record(tmp_path) -> None:
    script = tmp_path / "program.py"
    script.write_text(textwrap.dedent(SCRIPT), encoding="utf-8")

    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "submitted: running" in done.stderr.splitlines()  # submit() returned at once
    assert [line for line in lines if line.startswith("line ")] == [
        f"line {i}" for i in range(1, 6)
    ]
