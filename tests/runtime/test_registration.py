"""register_service: call and decorator forms, what can be registered, names, duplicates."""

from __future__ import annotations

import pytest

from sage_nb import LocalEnvironment, ServiceExistsError


class Cache:
    def __init__(self, size: int, ttl: float = 0.0) -> None:
        self.size = size
        self.ttl = ttl

    def process(self) -> tuple[int, float]:
        return self.size, self.ttl


def test_call_form_passes_constructor_args_and_kwargs(env: LocalEnvironment) -> None:
    returned = env.register_service("cache", Cache, 1024, ttl=30)
    assert returned is Cache
    assert env.services == ["cache"]
    assert env.call_service("cache") == (1024, 30)


def test_decorator_form_returns_the_class_unchanged(env: LocalEnvironment) -> None:
    @env.register_service("profile")
    class Profile:
        def process(self, user_id: str) -> dict[str, str]:
            return {"user_id": user_id}

    assert isinstance(Profile, type)
    assert Profile.__name__ == "Profile"
    assert Profile().process("7") == {"user_id": "7"}
    assert env.call_service("profile", "42") == {"user_id": "42"}


def test_function_becomes_process(env: LocalEnvironment) -> None:
    def double(x: int) -> int:
        return 2 * x

    assert env.register_service("double", double) is double
    assert env.call_service("double", 21) == 42
    assert env.call_service("double", 4, method="process") == 8


def test_decorated_function_is_returned_unchanged(env: LocalEnvironment) -> None:
    @env.register_service("square")
    def square(x: int) -> int:
        return x * x

    assert square(3) == 9
    assert env.call_service("square", 5) == 25


def test_instance_is_used_as_is(env: LocalEnvironment) -> None:
    class Counter:
        def __init__(self) -> None:
            self.count = 0

        def process(self, step: int = 1) -> int:
            self.count += step
            return self.count

    counter = Counter()
    env.register_service("counter", counter)
    assert env.call_service("counter") == 1
    assert env.call_service("counter", 5) == 6
    assert counter.count == 6  # the registered object itself served the calls


def test_duplicate_name_raises_service_exists(env: LocalEnvironment) -> None:
    env.register_service("dup", lambda: "first")
    with pytest.raises(ServiceExistsError, match=r"'dup'.*replace=True") as info:
        env.register_service("dup", lambda: "second")
    assert info.value.service_name == "dup"
    assert env.call_service("dup") == "first"


def test_duplicate_name_via_decorator_raises(env: LocalEnvironment) -> None:
    env.register_service("dup", lambda: "first")
    with pytest.raises(ServiceExistsError):

        @env.register_service("dup")
        def second() -> str:
            return "second"

    assert env.call_service("dup") == "first"


def test_replace_true_swaps_the_definition(env: LocalEnvironment) -> None:
    env.register_service("svc", lambda: "first")
    env.register_service("svc", lambda: "second", replace=True)
    assert env.call_service("svc") == "second"
    assert env.services == ["svc"]


@pytest.mark.parametrize("name", ["", "1abc", "a-b", "two words", None, 3])
def test_invalid_names_raise_value_error(env: LocalEnvironment, name: object) -> None:
    with pytest.raises(ValueError, match="identifier"):
        env.register_service(name, Cache, 1)  # type: ignore[arg-type]
    assert env.services == []


@pytest.mark.parametrize("concurrency", [0, -1, "2", 1.5, None])
def test_invalid_concurrency_raises_value_error(env: LocalEnvironment, concurrency: object) -> None:
    with pytest.raises(ValueError, match="concurrency"):
        env.register_service("svc", lambda: 1, concurrency=concurrency)
    assert env.services == []


def test_bool_concurrency_is_rejected(env: LocalEnvironment) -> None:
    with pytest.raises(ValueError, match="concurrency"):
        env.register_service("svc", lambda: 1, concurrency=True)


def test_constructor_args_without_a_class_raise(env: LocalEnvironment) -> None:
    with pytest.raises(TypeError, match="constructor arguments need the class"):
        env.register_service("cache", None, 1024)


def test_object_without_methods_is_rejected(env: LocalEnvironment) -> None:
    with pytest.raises(TypeError, match="'nothing'"):
        env.register_service("nothing", 42)


def test_unregister_stops_and_forgets(env: LocalEnvironment) -> None:
    closed = []

    class Svc:
        def process(self) -> str:
            return "ok"

        def close(self) -> None:
            closed.append(True)

    env.register_service("svc", Svc)
    assert env.call_service("svc") == "ok"
    env.unregister_service("svc")
    assert closed == [True]
    assert env.services == []
