"""Bad input: unknown names, wrong arguments, unpicklable values, huge payloads, malformed magic
lines. Each gives a clear error (or, where the input is fine for threads, passes unchanged), and
the service or the notebook keeps working afterwards.

Property-based with hypothesis where the input space is open (names, argument lists, timeouts,
magic lines); plain tests where a few cases say it all (payload sizes, unpicklable kinds).
"""

from __future__ import annotations

import gc
import math
import os
import socket
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import WAIT

from sage_nb import LocalEnvironment, MapFunction
from sage_nb.errors import SageError, ServiceCallError, ServiceNotFoundError

pytestmark = pytest.mark.timeout(120)

#: Function-scoped fixtures (one environment, one shell) are shared by a test's examples on
#: purpose: each example must leave them working.
PROPERTY = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
REGISTERED = ("echo", "profile")
RESERVED = ("timeout", "method", "retries")
PACKAGE_DIR = os.path.dirname(os.path.abspath(__import__("sage_nb").__file__))


class Profile:
    def process(self, user_id: str) -> dict[str, Any]:
        return {"user_id": user_id}

    def lookup(self, user_id: str, fields: tuple[str, ...] = ()) -> dict[str, Any]:
        return {f: None for f in fields}

    def _private(self) -> str:
        return "hidden"


def echo(x: Any) -> Any:
    return x


@pytest.fixture
def env(make_env: Callable[..., LocalEnvironment]) -> LocalEnvironment:
    environment = make_env("bad")
    environment.register_service("echo", echo)
    environment.register_service("profile", Profile)
    return environment


def still_works(env: LocalEnvironment) -> None:
    assert env.call_service("echo", "ok", timeout=WAIT) == "ok"
    assert env.call_service("profile", "42", timeout=WAIT) == {"user_id": "42"}


# -- unknown names -----------------------------------------------------------------------------
@PROPERTY
@given(name=st.text(max_size=30).filter(lambda n: n not in REGISTERED))
def test_unknown_service_names_list_what_exists(env: LocalEnvironment, name: str) -> None:
    for call in (env.call_service, env.call_service_async):
        with pytest.raises(ServiceNotFoundError) as info:
            call(name, 1, timeout=WAIT)
        err = info.value
        assert err.service_name == name
        assert err.registered == REGISTERED
        message = str(err)
        assert "'echo'" in message and "'profile'" in message
        if name.isidentifier():  # says how to fix it
            assert f"%%sage_service {name} or env.register_service" in message
        else:
            assert "service names are Python identifiers" in message
        assert "\n" not in message  # the name is shown with repr()
    still_works(env)


@PROPERTY
@given(
    name=st.one_of(
        st.integers(), st.none(), st.binary(), st.floats(), st.lists(st.text(), max_size=2)
    )
)
def test_service_names_that_are_not_str_are_type_errors(env: LocalEnvironment, name: Any) -> None:
    with pytest.raises(TypeError, match="a service name is a str"):
        env.call_service(name, 1, timeout=WAIT)


@PROPERTY
@given(method=st.text(max_size=30).filter(lambda m: m not in ("process", "lookup")))
def test_unknown_method_names_list_the_methods(env: LocalEnvironment, method: str) -> None:
    for call in (env.call_service, env.call_service_async):
        with pytest.raises(ServiceNotFoundError) as info:
            result = call("profile", "42", method=method, timeout=WAIT)
            result.result(WAIT) if call is env.call_service_async else None
        err = info.value
        assert (err.service_name, err.method_name) == ("profile", method)
        assert err.registered == ("lookup", "process")  # no _private, setup, close, ctx...
        assert "methods: 'lookup', 'process'" in str(err)
    still_works(env)


@PROPERTY
@given(method=st.one_of(st.integers(), st.binary(), st.floats(), st.just(Profile.lookup)))
def test_methods_that_are_not_str_are_type_errors(env: LocalEnvironment, method: Any) -> None:
    # Regression: method=5 reached the worker and came back as the service's AttributeError.
    for call in (env.call_service, env.call_service_async):
        with pytest.raises(TypeError, match="method= takes the name of a method"):
            call("profile", "42", method=method, timeout=WAIT)
    assert env.statistics().services[1].failed == 0


# -- wrong arguments ---------------------------------------------------------------------------
keyword = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True).filter(
    lambda k: k not in RESERVED and k != "user_id"
)


@PROPERTY
@given(
    args=st.lists(st.integers(), max_size=4),
    kwargs=st.dictionaries(keyword, st.integers(), max_size=3),
)
def test_wrong_arguments_reach_the_caller_as_the_services_type_error(
    env: LocalEnvironment, args: list[int], kwargs: dict[str, int]
) -> None:
    fits = len(args) == 1 and not kwargs  # process(self, user_id)
    for call in (env.call_service, env.call_service_async):
        if fits:
            continue
        with pytest.raises(ServiceCallError) as info:
            result = call("profile", *args, timeout=WAIT, **kwargs)
            result.result(WAIT) if call is env.call_service_async else None
        err = info.value
        assert err.remote_type == "TypeError"
        assert isinstance(err.__cause__, TypeError)
        assert "process()" in err.remote_message
        assert "raised TypeError" in str(err)
    still_works(env)


@PROPERTY
@given(
    timeout=st.one_of(
        st.floats(max_value=0.0),
        st.just(math.nan),
        st.booleans(),
        st.text(max_size=5),
        st.integers(max_value=0),
    )
)
def test_invalid_timeouts_are_refused_before_anything_is_queued(
    env: LocalEnvironment, timeout: Any
) -> None:
    for call in (env.call_service, env.call_service_async):
        with pytest.raises(ValueError, match="timeout must be a number of seconds > 0"):
            call("echo", 1, timeout=timeout)
    assert env._dispatcher.contexts()["echo"].pending == {}


@PROPERTY
@given(retries=st.one_of(st.integers(max_value=-1), st.text(max_size=3), st.floats()))
def test_invalid_retries_are_refused(env: LocalEnvironment, retries: Any) -> None:
    with pytest.raises((ValueError, TypeError), match="retries"):
        env.call_service("echo", 1, timeout=WAIT, retries=retries)


@PROPERTY
@given(
    name=st.text(max_size=12).filter(lambda n: not n.isidentifier()),
    concurrency=st.one_of(st.integers(max_value=0), st.booleans(), st.floats()),
    max_queued=st.one_of(st.integers(max_value=0), st.floats(), st.text(max_size=2)),
    overflow=st.text(max_size=6).filter(lambda o: o not in ("block", "fail")),
)
def test_invalid_registrations_are_refused_with_the_value(
    env: LocalEnvironment, name: str, concurrency: Any, max_queued: Any, overflow: str
) -> None:
    with pytest.raises(ValueError, match="Python identifier"):
        env.register_service(name, echo)
    with pytest.raises(ValueError, match="concurrency"):
        env.register_service("other", echo, concurrency=concurrency)
    with pytest.raises(ValueError, match="max_queued"):
        env.register_service("other", echo, max_queued=max_queued)
    with pytest.raises(ValueError, match="overflow"):
        env.register_service("other", echo, overflow=overflow)
    assert env.services == list(REGISTERED)


# -- unpicklable values: fine on threads -------------------------------------------------------
def _generator() -> Iterator[int]:
    yield 1


UNPICKLABLE: dict[str, Callable[[Any], Any]] = {
    "lambda": lambda tmp: lambda: 1,
    "lock": lambda tmp: threading.Lock(),
    "generator": lambda tmp: _generator(),
    "open file": lambda tmp: open(os.path.join(tmp, "f.txt"), "w"),  # noqa: SIM115
    "socket": lambda tmp: socket.socket(),
    "local class instance": lambda tmp: type("Local", (), {})(),
}


@pytest.mark.parametrize("kind", sorted(UNPICKLABLE))
def test_unpicklable_values_pass_by_reference_on_threads(
    env: LocalEnvironment, kind: str, tmp_path: Any
) -> None:
    # The thread backend never serializes: arguments and results are the caller's own objects
    # (the Ray backend pickles them, and fails with ServiceSerializationError instead).
    value = UNPICKLABLE[kind](str(tmp_path))
    try:
        assert env.call_service("echo", value, timeout=WAIT) is value
        assert env.call_service_async("echo", value, timeout=WAIT).result(WAIT) is value
        out: list[Any] = []

        class CallEcho(MapFunction):
            def execute(self, record: Any) -> Any:
                return self.call_service("echo", record, timeout=WAIT)

        env.from_batch([value]).map(CallEcho).sink(out.append)
        env.submit()
        assert len(out) == 1 and out[0] is value
    finally:
        close = getattr(value, "close", None)
        if callable(close) and kind != "generator":
            close()


@PROPERTY
@given(
    value=st.recursive(
        st.one_of(st.integers(), st.text(), st.binary(), st.none(), st.floats(allow_nan=False)),
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=4), inner, max_size=4)
        ),
        max_leaves=20,
    )
)
def test_values_are_passed_by_reference_not_copied(env: LocalEnvironment, value: Any) -> None:
    assert env.call_service("echo", value, timeout=WAIT) is value


def test_a_service_sees_the_callers_object_not_a_copy(env: LocalEnvironment) -> None:
    env.register_service("append", lambda items: items.append("from the service"))
    items: list[str] = []
    env.call_service("append", items, timeout=WAIT)
    assert items == ["from the service"]  # documented: share, do not mutate, or copy yourself


# -- huge payloads ------------------------------------------------------------------------------
HUGE = 50 * 2**20


def traced_peak(fn: Callable[[], Any]) -> tuple[Any, int]:
    """Run ``fn`` and return its result and the most memory allocated while it ran."""
    gc.collect()
    tracemalloc.start()
    try:
        result = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


def test_a_50_mb_argument_passes_without_a_copy(env: LocalEnvironment) -> None:
    payload = os.urandom(1024) * (HUGE // 1024)
    still_works(env)  # started before measuring
    result, peak = traced_peak(lambda: env.call_service("echo", payload, timeout=WAIT))
    assert result is payload
    assert peak < HUGE // 20, f"{peak / 2**20:.1f} MiB allocated for a 50 MiB call"
    future_result, peak = traced_peak(
        lambda: env.call_service_async("echo", payload, timeout=WAIT).result(WAIT)
    )
    assert future_result is payload
    assert peak < HUGE // 20


def test_a_50_mb_result_is_allocated_once(env: LocalEnvironment) -> None:
    env.register_service("make", lambda n: bytes(n))
    env.call_service("make", 1, timeout=WAIT)
    result, peak = traced_peak(lambda: env.call_service("make", HUGE, timeout=WAIT))
    assert len(result) == HUGE
    assert peak < HUGE * 1.05  # the result itself, no second copy


def test_50_mb_records_through_a_pipeline_that_calls_a_service(env: LocalEnvironment) -> None:
    payloads = [bytes([i]) * HUGE for i in range(3)]
    out: list[bytes] = []

    class CallEcho(MapFunction):
        def execute(self, record: bytes) -> Any:
            return self.call_service("echo", record, timeout=WAIT)

    env.from_batch(payloads).map(CallEcho).sink(out.append)
    _, peak = traced_peak(env.submit)
    assert len(out) == 3 and all(a is b for a, b in zip(out, payloads))
    assert peak < HUGE // 10


# -- malformed magic lines ---------------------------------------------------------------------
def innermost_file(exc: BaseException) -> str:
    tb = exc.__traceback__
    last = ""
    while tb is not None:
        last = tb.tb_frame.f_code.co_filename
        tb = tb.tb_next
    return last


def check_magic_outcome(exc: BaseException | None) -> None:
    """A magic either worked, raised a one-line UsageError, raised a sage_nb error about the
    call, or let an error of the user's own expression through (NameError...); it never fails
    inside sage_nb with anything else."""
    from IPython.core.error import UsageError

    if exc is None:
        return
    if isinstance(exc, UsageError):
        message = str(exc)
        assert message and "\n" not in message, f"UsageError not on one line: {message!r}"
        return
    if isinstance(exc, SageError):
        assert "\n" not in str(exc).strip()
        return
    where = innermost_file(exc)
    assert not os.path.abspath(where).startswith(PACKAGE_DIR), (
        f"{type(exc).__name__}: {exc} escaped from sage_nb ({where})"
    )


OPTION_TOKENS = ["--timeout", "-t", "--method", "-m", "1", "0", "-1", "nan", "lookup", "--bogus"]
ARG_TOKENS = [
    "x", "y", "nope", "1", "2.5", "-1", "'a'", '"', "'", "(", ")", "[", "]", "{", "}", ",",
    "=", ":", "*", "**", ".", "\\", "#", "fields=", "user_id=", "--timeout", "lambda", "1/0",
]  # fmt: skip


@PROPERTY
@given(
    options=st.lists(st.sampled_from(OPTION_TOKENS), max_size=3),
    name=st.sampled_from(["echo", "profile", "nope", "1x", ""]),
    args=st.lists(st.sampled_from(ARG_TOKENS), max_size=8),
)
def test_sage_call_with_malformed_lines(
    shell: Any, options: list[str], name: str, args: list[str]
) -> None:
    if "echo" not in shell.user_ns["sage_env"].services:
        shell.user_ns["sage_env"].register_service("echo", echo)
        shell.user_ns["sage_env"].register_service("profile", Profile)
        shell.user_ns.update(x=1, y="two")
    line = " ".join([*options, name, *args])
    try:
        shell.run_line_magic("sage_call", line)
    except Exception as exc:
        check_magic_outcome(exc)
    assert shell.run_line_magic("sage_call", "echo 5") == 5  # the notebook still works


SERVICE_TOKENS = [
    "svc", "other", "1abc", "a-b", "''", "--concurrency", "-c", "0", "-3", "2", "x",
    "--method", "-m", "lookup", "setup", "_private", "missing", "--replace", "--bogus",
    "=", '"', "'", "--",
]  # fmt: skip
SERVICE_CELL = """
class Svc:
    def process(self, x):
        return x
    def lookup(self, x):
        return [x]
"""


@PROPERTY
@given(tokens=st.lists(st.sampled_from(SERVICE_TOKENS), max_size=8))
def test_sage_service_with_malformed_arguments(shell: Any, tokens: list[str]) -> None:
    env = shell.user_ns["sage_env"]
    try:
        shell.run_cell_magic("sage_service", " ".join(tokens), SERVICE_CELL)
    except Exception as exc:
        check_magic_outcome(exc)
    for name in env.services:  # whatever got registered works, then goes for the next example
        assert env.call_service(name, 3, timeout=WAIT) in (3, [3])
        env.unregister_service(name)


@pytest.mark.parametrize(
    "cell",
    [
        "",
        "x = 1",
        "class A:\n    pass\nclass B:\n    pass",
        "def f(x):\n    return x\ndef g(x):\n    return x",
    ],
    ids=["empty", "no definition", "two classes", "two functions"],
)
def test_sage_service_cells_without_one_service_are_usage_errors(shell: Any, cell: str) -> None:
    from IPython.core.error import UsageError

    with pytest.raises(UsageError) as info:
        shell.run_cell_magic("sage_service", "svc", cell)
    assert "\n" not in str(info.value)
    assert shell.user_ns["sage_env"].services == []


def test_a_usage_error_shows_as_one_line_without_a_traceback(shell: Any, capsys: Any) -> None:
    capsys.readouterr()
    result = shell.run_cell("%sage_call --timeout -1 echo 1")
    assert not result.success
    captured = capsys.readouterr()
    shown = (captured.out + captured.err).strip().splitlines()
    assert len(shown) == 1 and shown[0].startswith("UsageError: --timeout takes seconds > 0")


OTHER_TOKENS = ["svc", "--all", "--background", "-b", "--timeout", "-t", "0", "-1", "nan",
                "x", "--no-progress", "--bogus", "'", '"', "--"]  # fmt: skip


@PROPERTY
@given(
    magic=st.sampled_from(["sage_stop", "sage_status", "sage_submit"]),
    tokens=st.lists(st.sampled_from(OTHER_TOKENS), max_size=5),
)
def test_other_magics_with_malformed_lines(shell: Any, magic: str, tokens: list[str]) -> None:
    try:
        shell.run_line_magic(magic, " ".join(tokens))
    except Exception as exc:
        check_magic_outcome(exc)
