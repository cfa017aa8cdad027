"""keyby, connect + comap, and keyed joins."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from sage_nb import CoMapFunction, JoinFunction, KeyByFunction, LocalEnvironment, MapFunction


class IndexByKey(MapFunction):
    """Records which parallel instance saw each key (shared across instances)."""

    lock = threading.Lock()
    seen: dict[Any, set[int]] = {}

    def execute(self, data: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.seen.setdefault(data["k"], set()).add(self.ctx.index)
        return data


class KeyOf(KeyByFunction):
    def execute(self, data: dict[str, Any]) -> Any:
        return data["k"]


@pytest.mark.parametrize(
    "key", [lambda r: r["k"], KeyOf, KeyOf()], ids=["callable", "class", "instance"]
)
def test_keyby_sends_each_key_to_one_instance(env: LocalEnvironment, key: Any) -> None:
    IndexByKey.seen = {}
    records = [{"k": f"key{i % 30}", "i": i} for i in range(600)]
    out: list[dict[str, Any]] = []
    env.from_batch(records).keyby(key).map(IndexByKey, parallelism=3).sink(out.append)
    assert env.submit().status == "finished"

    # records pass unchanged and none is lost or duplicated
    assert sorted(out, key=lambda r: r["i"]) == records
    assert all(r is orig for r, orig in zip(sorted(out, key=lambda r: r["i"]), records))
    # every key met exactly one instance, and the keys were spread over the instances
    assert len(IndexByKey.seen) == 30
    assert all(len(indices) == 1 for indices in IndexByKey.seen.values()), IndexByKey.seen
    assert set().union(*IndexByKey.seen.values()) == {0, 1, 2}


def test_keyby_with_parallelism_one_passes_records_in_order(env: LocalEnvironment) -> None:
    out: list[int] = []
    env.from_batch(range(20)).keyby(lambda x: x % 3).map(lambda x: x).sink(out.append)
    env.submit()
    assert out == list(range(20))


def test_keyby_keeps_per_key_order(env: LocalEnvironment) -> None:
    out: list[tuple[int, int]] = []
    records = [(i % 5, i) for i in range(5000)]
    env.from_batch(records).keyby(lambda r: r[0]).map(lambda r: r, parallelism=2).sink(out.append)
    env.submit()
    assert sorted(out) == sorted(records)
    for key in range(5):
        assert [r for r in out if r[0] == key] == [r for r in records if r[0] == key]


class Tag(CoMapFunction):
    def map0(self, data: Any) -> Any:
        return ("left", data)

    def map1(self, data: Any) -> Any:
        return ("right", data)


@pytest.mark.parametrize("spec", [Tag, Tag()], ids=["class", "instance"])
def test_comap_subclass(env: LocalEnvironment, spec: Any) -> None:
    out: list[Any] = []
    left = env.from_batch([1, 2, 3])
    right = env.from_batch(["a", "b"])
    left.connect(right).comap(spec).sink(out.append)
    assert env.submit().status == "finished"
    assert [r for r in out if r[0] == "left"] == [("left", 1), ("left", 2), ("left", 3)]
    assert [r for r in out if r[0] == "right"] == [("right", "a"), ("right", "b")]
    assert len(out) == 5


def test_comap_plain_callables(env: LocalEnvironment) -> None:
    out: list[Any] = []
    numbers = env.from_batch([1, 2])
    words = env.from_batch(["x"])
    numbers.connect(words).comap(lambda n: n * 100, lambda w: w.upper()).sink(out.append)
    env.submit()
    assert sorted(out, key=str) == [100, 200, "X"]


def test_comap_three_streams(env: LocalEnvironment) -> None:
    out: list[Any] = []
    a, b, c = env.from_batch([1]), env.from_batch([2]), env.from_batch([3])
    a.connect(b).connect(c).comap(lambda x: x, lambda x: x * 10, lambda x: x * 100).sink(out.append)
    env.submit()
    assert sorted(out) == [1, 20, 300]


def test_comap_wrong_number_of_callables_raises(env: LocalEnvironment) -> None:
    connected = env.from_batch([1]).connect(env.from_batch([2]))
    with pytest.raises(TypeError, match="2 callables"):
        connected.comap(lambda x: x, lambda x: x, lambda x: x)

    class OnlyMap0:
        def map0(self, data: Any) -> Any:
            return data

    with pytest.raises(TypeError, match="map1"):
        connected.comap(OnlyMap0())


USERS = [{"id": 1, "name": "ann"}, {"id": 2, "name": "bob"}, {"id": 3, "name": "cy"}]
SCORES = [
    {"id": 2, "score": 5},
    {"id": 1, "score": 7},
    {"id": 1, "score": 9},
    {"id": 4, "score": 0},
]
EXPECTED = [("ann", 7), ("ann", 9), ("bob", 5)]


def keyed_pair(env: LocalEnvironment) -> Any:
    users = env.from_batch(USERS).keyby(lambda r: r["id"])
    scores = env.from_batch(SCORES).keyby(lambda r: r["id"])
    return users.connect(scores)


class NameScore(JoinFunction):
    def join(self, left: dict[str, Any], right: dict[str, Any]) -> tuple[str, int]:
        return (left["name"], right["score"])


@pytest.mark.parametrize("parallelism", [1, 2])
def test_join_function_subclass(env: LocalEnvironment, parallelism: int) -> None:
    out: list[Any] = []
    keyed_pair(env).join(NameScore, parallelism=parallelism).sink(out.append)
    assert env.submit().status == "finished"
    assert sorted(out) == EXPECTED


def test_join_plain_callable(env: LocalEnvironment) -> None:
    out: list[Any] = []
    keyed_pair(env).join(lambda left, right: (left["name"], right["score"])).sink(out.append)
    assert env.submit().status == "finished"
    assert sorted(out) == EXPECTED


def test_join_default_emits_pairs(env: LocalEnvironment) -> None:
    out: list[Any] = []
    keyed_pair(env).join(JoinFunction).sink(out.append)
    env.submit()
    assert len(out) == 3
    assert all(left["id"] == right["id"] for left, right in out)


def test_join_on_unkeyed_streams_raises(env: LocalEnvironment) -> None:
    keyed = env.from_batch(USERS).keyby(lambda r: r["id"])
    plain = env.from_batch(SCORES)
    with pytest.raises(TypeError, match="keyed"):
        keyed.connect(plain).join(NameScore)
    with pytest.raises(TypeError, match="keyed"):
        plain.connect(keyed).join(NameScore)
    with pytest.raises(TypeError, match="keyed"):
        env.from_batch([1]).connect(env.from_batch([2])).join(lambda a, b: (a, b))


def test_join_of_three_streams_raises(env: LocalEnvironment) -> None:
    streams = [env.from_batch([i]).keyby(lambda x: 0) for i in range(3)]
    with pytest.raises(TypeError, match="exactly two"):
        streams[0].connect(streams[1]).connect(streams[2]).join(lambda a, b: (a, b))
