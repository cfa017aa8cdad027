"""SAGE programs on ``sage_nb.compat``'s remote environments: ``RemoteEnvironment`` (SAGE
0.2) and ``FlowNetEnvironment`` / ``FlownetEnvironment`` (SAGE 0.3), which run them on
sage_nb's Ray backend. Services and parallel operators are Ray actors, in other processes: what
the programs observe there comes back in records, in service results, or through a file.

One environment per test, always closed; the session shares one local Ray cluster.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from sage_nb import compat
from sage_nb.compat import (
    BaseService,
    BatchFunction,
    FilterFunction,
    FlatMapFunction,
    KeyByFunction,
    MapFunction,
    SinkFunction,
)

pytestmark = pytest.mark.ray

#: Longest a test waits for something Ray does (an actor's start included).
WAIT = 30.0


@pytest.fixture
def make_remote(ray_cluster: Any):
    """``make_remote(kind, name)``: SAGE's remote environment ``kind`` on the session's
    cluster; closed after the test, leaving no actor alive."""
    made: list[Any] = []

    def make(kind: str = "RemoteEnvironment", name: str = "sage-remote") -> Any:
        env = getattr(compat, kind)(name)
        made.append(env)
        return env

    yield make
    for env in made:
        assert env.close(timeout=WAIT), f"{env!r} did not close cleanly"
        assert env.actors() == [], f"actors left alive: {env.actors()}"


# -- the program's functions --------------------------------------------------------------------
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
    def execute(self, data):
        words = data.lower().split()
        for word in words[1:]:
            self.collect(word)
        return words[:1]


class WordKey(KeyByFunction):
    def execute(self, data):
        return data


class CountWords(MapFunction):
    """Keyed state in a dict keyed by ``self.ctx.get_key()``; says who counted, and where."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.counts: dict[str, int] = {}

    def execute(self, data):
        key = self.ctx.get_key()
        self.counts[key] = self.counts.get(key, 0) + 1
        return {
            "word": key,
            "count": self.counts[key],
            "name": self.name,
            "index": self.ctx.parallel_index,
            "pid": os.getpid(),
        }


class Collect(SinkFunction):
    def __init__(self, out, closed=None, **kwargs):
        super().__init__(**kwargs)
        self.out = out
        self.closed = closed

    def execute(self, data):
        self.out.append(data)

    def close(self):
        if self.closed is not None:
            self.closed.append(self.name)


SENTENCES = ["hello world", "hello sage", "Hello world of AI", "sage world", "chatgpt"]
COUNTS = {"hello": 3, "world": 3, "sage": 2, "of": 1, "ai": 1, "chatgpt": 1}


def run_word_count(
    env: Any, parallelism: int = 2, stream: Any = None
) -> tuple[Any, list[dict[str, Any]], list[str]]:
    out: list[dict[str, Any]] = []
    closed: list[str] = []
    words = env.from_batch(SentenceSource, SENTENCES, delay=0).flatmap(SplitWords)
    if stream is not None:
        words = stream(words)
    counted = words.keyby(WordKey).map(CountWords, parallelism=parallelism, name="Counter")
    counted.sink(Collect, out, closed, name="Results")
    job = env.submit(autostop=True)
    return job, out, closed


def check_word_count(
    job: Any, out: list[dict[str, Any]], closed: list[str], counts: dict[str, int] = COUNTS
) -> None:
    assert job.status == "finished"
    assert Counter(r["word"] for r in out) == Counter(counts)
    by_word: dict[str, list[int]] = {}
    for r in out:
        by_word.setdefault(r["word"], []).append(r["count"])
    # One instance holds a word's state: its counts run 1, 2, 3 ...
    assert by_word == {w: list(range(1, n + 1)) for w, n in counts.items()}
    assert closed == ["Results_0"]  # the sink (here, filling our list) was closed


# -- 1. word count with the counting map in two actors ------------------------------------------
def test_word_count_runs_its_parallel_map_in_ray_actors(make_remote) -> None:
    env = make_remote("RemoteEnvironment", "wordcount-remote")

    job, out, closed = run_word_count(env)

    check_word_count(job, out, closed)
    assert {r["pid"] for r in out}.isdisjoint({os.getpid()}), "the map ran in this process"


# -- 3. self.name and ctx.parallel_index of each instance ---------------------------------------
def test_each_parallel_instance_knows_its_name_and_index(make_remote) -> None:
    env = make_remote("RemoteEnvironment", "parallelism-remote")
    out: list[dict[str, Any]] = []
    numbers = env.from_batch(SentenceSource, [f"w{i % 4}" for i in range(12)], delay=0)
    numbers.keyby(WordKey).map(CountWords, parallelism=2, name="Tagger").sink(Collect, out)

    env.submit(autostop=True)

    assert len(out) == 12
    for r in out:
        assert r["name"] == f"Tagger_{r['index']}"
    names_of_word: dict[str, set[str]] = {}
    pids_of_name: dict[str, set[int]] = {}
    for r in out:
        names_of_word.setdefault(r["word"], set()).add(r["name"])
        pids_of_name.setdefault(r["name"], set()).add(r["pid"])
    assert all(len(names) == 1 for names in names_of_word.values()), names_of_word
    assert all(len(pids) == 1 for pids in pids_of_name.values()), pids_of_name
    assert sorted(r["count"] for r in out if r["word"] == "w1") == [1, 2, 3]


# -- 5. services as actors calling each other, and their lifecycle -------------------------------
class Journal:
    """Lines appended to a file: how a service in another process tells the test what ran."""

    def __init__(self, path: str) -> None:
        self.path = path

    def write(self, line: str) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")

    def lines(self) -> list[str]:
        p = Path(self.path)
        return p.read_text(encoding="utf-8").splitlines() if p.exists() else []


class InventoryStore(BaseService):
    def __init__(self, journal_path, **kwargs):
        super().__init__(**kwargs)
        self.journal = Journal(journal_path)
        self.journal.write(f"init ctx={self.ctx.name} pid={os.getpid()}")
        self.stock: dict[str, int] = {}

    def setup(self):
        self.journal.write("setup")

    def start_running(self):
        self.journal.write("start_running")

    def start(self):
        self.journal.write("start")

    def stop(self):
        self.journal.write("stop")

    def cleanup(self):
        self.journal.write("cleanup")

    def close(self):
        self.journal.write("close")

    def terminate(self):
        self.journal.write("terminate")

    def add(self, item, quantity):
        self.stock[item] = self.stock.get(item, 0) + quantity
        return self.stock[item]

    def process(self, item):
        return self.stock.get(item, 0)


class Warehouse(BaseService):
    """Calls the store synchronously and through a future."""

    def __init__(self, journal_path, **kwargs):
        super().__init__(**kwargs)
        self.journal = Journal(journal_path)
        self.journal.write(f"init ctx={self.ctx.name}")

    def setup(self):
        self.journal.write("setup")

    def start(self):
        self.journal.write("start")

    def stop(self):
        self.journal.write("stop")

    def close(self):
        self.journal.write("close")

    def process(self, item, quantity):
        total = self.call_service("inventory", item, quantity, method="add", timeout=WAIT)
        seen = self.call_service_async("inventory", item).result(timeout=WAIT)
        return {"item": item, "total": total, "seen": seen, "pid": os.getpid()}


class Receive(MapFunction):
    def execute(self, data):
        item, quantity = data
        return self.call_service("warehouse", item, quantity, timeout=WAIT)


def test_services_in_actors_call_each_other_and_run_sages_lifecycle(
    make_remote, tmp_path: Path
) -> None:
    store_journal = Journal(str(tmp_path / "inventory.log"))
    warehouse_journal = Journal(str(tmp_path / "warehouse.log"))
    env = make_remote("RemoteEnvironment", "services-remote")
    env.register_service("inventory", InventoryStore, store_journal.path)
    env.register_service("warehouse", Warehouse, warehouse_journal.path)
    out: list[dict[str, Any]] = []
    deliveries = [("bolt", 5), ("nut", 2), ("bolt", 1)]
    env.from_batch(SentenceSource, deliveries, delay=0).map(Receive).sink(Collect, out)

    env.submit(autostop=True)

    assert [{k: r[k] for k in ("item", "total", "seen")} for r in out] == [
        {"item": "bolt", "total": 5, "seen": 5},
        {"item": "nut", "total": 2, "seen": 2},
        {"item": "bolt", "total": 6, "seen": 6},
    ]
    assert {r["pid"] for r in out}.isdisjoint({os.getpid()}), "the service ran in this process"
    assert env.call_service("inventory", "bolt", timeout=WAIT) == 6
    assert env.close(timeout=WAIT)

    init, *hooks = store_journal.lines()
    assert init.startswith("init ctx=inventory pid=")
    assert int(init.rsplit("=", 1)[1]) != os.getpid()
    # start_running wins over start, cleanup over close; terminate comes last.
    assert hooks == ["setup", "start_running", "stop", "cleanup", "terminate"]
    assert warehouse_journal.lines() == ["init ctx=warehouse", "setup", "start", "stop", "close"]


# -- FlowNet: SAGE 0.3's (and the tutorials' 0.2 spelling) remote environment ----------------
class StopWords(BaseService):
    def __init__(self, words, **kwargs):
        super().__init__(**kwargs)
        self.words = set(words)

    def is_stop(self, word):
        return word in self.words

    def pid(self):
        return os.getpid()


class DropStopWords(FilterFunction):
    def execute(self, data):
        return not self.call_service("stopwords", data, method="is_stop", timeout=WAIT)


@pytest.mark.parametrize("kind", ["FlowNetEnvironment", "FlownetEnvironment"])
def test_flownet_environment_runs_the_word_count(make_remote, kind: str) -> None:
    env = make_remote(kind, f"wordcount-{kind.lower()}")
    assert type(env).__name__ == kind
    env.register_service("stopwords", StopWords, ["of", "ai"])

    # The counting map on one instance (a thread here), the stop words in an actor.
    job, out, closed = run_word_count(env, 1, lambda words: words.filter(DropStopWords))

    counts = {w: n for w, n in COUNTS.items() if w not in ("of", "ai")}
    check_word_count(job, out, closed, counts)
    assert {r["name"] for r in out} == {"Counter_0"}
    assert env.call_service("stopwords", method="pid", timeout=WAIT) != os.getpid()
