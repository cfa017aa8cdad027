"""The magics in an in-process IPython shell: each magic, its help and its errors.

Output routing, interrupts and restarts need a real kernel: see ``test_kernel.py``.
"""

from __future__ import annotations

import _thread
import signal
import sys
import threading
import traceback
from typing import Any

import pytest
from support import error, ok, sage_thread_names, usage_error

import sage_nb
from sage_nb import LocalEnvironment, OperatorError, ServiceCallError, ServiceTimeoutError
from sage_nb.notebook import kernel
from sage_nb.notebook.display import ProgressReport, StatusReport, format_seconds, job_summary
from sage_nb.notebook.magics import JobInterrupted, SageMagics
from sage_nb.notebook.progress import SubmitProgress

PROFILE = """%%sage_service profile
class Profile:
    def setup(self):
        self.db = {"42": {"age": 62}}
    def process(self, user_id):
        return self.db.get(user_id, {})
    def close(self):
        closed.append("profile")
"""


@pytest.fixture
def closed(shell: Any) -> list[str]:
    """A list in the notebook namespace that services' close() append to."""
    shell.user_ns["closed"] = found = []
    return found


@pytest.fixture
def profile(shell: Any, closed: list[str]) -> Any:
    ok(shell, PROFILE)
    return shell


# -- %load_ext / %unload_ext ------------------------------------------------------------------
def test_load_creates_sage_env_and_the_magics(shell: Any, capsys: Any) -> None:
    env = shell.user_ns["sage_env"]
    assert isinstance(env, LocalEnvironment)
    assert kernel.get_env() is env
    lines = shell.magics_manager.lsmagic()
    for name in ("sage_nb", "sage_call", "sage_submit", "sage_status", "sage_stop"):
        assert name in lines["line"]
    for name in ("sage_reset", "sage_env"):
        assert name in lines["line"]
    assert "sage_service" in lines["cell"]
    # the load message went out before capsys was installed; ask for it again
    sage_nb.load_ipython_extension(shell)
    out = capsys.readouterr().out
    assert f"sage_nb {sage_nb.__version__}" in out
    assert "%sage_nb" in out
    assert "%sage_status" in out


def test_loading_twice_is_harmless(profile: Any, capsys: Any) -> None:
    env = profile.user_ns["sage_env"]
    threads = sage_thread_names()
    ok(profile, "%load_ext sage_nb")
    sage_nb.load_ipython_extension(profile)
    assert profile.user_ns["sage_env"] is env
    assert kernel.current() is not None and kernel.current().env is env
    assert ok(profile, '%sage_call profile "42"') == {"age": 62}
    assert sage_thread_names() == threads
    registered = [m for m in profile.magics_manager.registry.values() if isinstance(m, SageMagics)]
    assert len(registered) == 1


def test_unload_stops_everything_and_removes_sage_env(profile: Any, closed: list[str]) -> None:
    observers = profile._trait_notifiers.get("exit_now", {}).get("change", [])
    assert any(isinstance(getattr(o, "__self__", None), kernel.KernelRuntime) for o in observers)
    ok(
        profile,
        "import itertools\n"
        "sage_env.from_source(itertools.count())"
        '.map(lambda x: sage_env.call_service("profile", str(x))).sink(lambda r: None)\n'
        "job = %sage_submit --background",
    )
    job = profile.user_ns["job"]
    assert not job.wait(0.05)
    env = profile.user_ns["sage_env"]
    assert sage_thread_names()

    ok(profile, "%unload_ext sage_nb")

    assert job.status == "stopped"
    assert closed == ["profile"]
    assert env.closed
    assert "sage_env" not in profile.user_ns
    assert kernel.current() is None
    assert profile.find_line_magic("sage_call") is None
    assert profile.find_cell_magic("sage_service") is None
    assert not any(isinstance(m, SageMagics) for m in profile.magics_manager.registry.values())
    observers = profile._trait_notifiers.get("exit_now", {}).get("change", [])
    assert not any(
        isinstance(getattr(o, "__self__", None), kernel.KernelRuntime) for o in observers
    )
    assert sage_thread_names() == []
    with pytest.raises(RuntimeError, match="%load_ext sage_nb"):
        kernel.get_env()
    # and it loads again, with a fresh environment
    ok(profile, "%load_ext sage_nb")
    assert profile.user_ns["sage_env"] is not env
    assert profile.user_ns["sage_env"].services == []


def test_reload_ext_gives_a_fresh_environment(profile: Any, closed: list[str]) -> None:
    old = profile.user_ns["sage_env"]
    ok(profile, '%sage_call profile "42"')
    ok(profile, "%reload_ext sage_nb")
    assert old.closed and closed == ["profile"]
    assert profile.user_ns["sage_env"] is not old
    assert "no service 'profile'" in usage_error(profile, '%sage_call profile "42"')


# -- %sage_nb and help -------------------------------------------------------------------------
def test_sage_nb_lists_every_magic(shell: Any, capsys: Any) -> None:
    ok(shell, "%sage_nb")
    out = capsys.readouterr().out
    for magic in (
        "%%sage_service",
        "%sage_call",
        "%sage_submit",
        "%sage_status",
        "%sage_stop",
        "%sage_reset",
        "%sage_env",
        "%sage_submit?",
    ):
        assert magic in out
    assert "unrecognized arguments: extra; usage: %sage_nb" in usage_error(shell, "%sage_nb extra")


MAGIC_USAGE = {
    ("line", "sage_nb"): "%sage_nb",
    ("cell", "sage_service"): "%sage_service [--method METHOD] [--concurrency CONCURRENCY]",
    ("line", "sage_call"): "%sage_call [--method METHOD] [--timeout TIMEOUT] name [args ...]",
    ("line", "sage_submit"): "%sage_submit [--background] [--timeout TIMEOUT] [--no-progress]",
    ("line", "sage_status"): "%sage_status",
    ("line", "sage_stop"): "%sage_stop [--all] [name]",
    ("line", "sage_reset"): "%sage_reset",
    ("line", "sage_env"): "%sage_env [--backend {local,ray}] [--address ADDRESS] [name]",
}


@pytest.mark.parametrize(("kind", "name"), list(MAGIC_USAGE), ids=[n for _, n in MAGIC_USAGE])
def test_each_magic_has_help_from_its_parser(shell: Any, kind: str, name: str) -> None:
    magic = shell.find_magic(name, kind)
    assert magic is not None
    doc = magic.__doc__
    # magic_arguments rewrote the docstring: the usage line, the description, the options
    assert doc.startswith("::\n\n  " + MAGIC_USAGE[kind, name]), doc
    assert len(doc.splitlines()) > 3
    info = shell.object_inspect_text(("%%" if kind == "cell" else "%") + name)
    assert MAGIC_USAGE[kind, name] in info


def test_question_mark_shows_the_help(shell: Any, capsys: Any) -> None:
    ok(shell, "%sage_submit?")
    out = capsys.readouterr().out
    assert "%sage_submit [--background]" in out
    assert "--no-progress" in out
    assert "stops the job" in out


# -- %%sage_service ---------------------------------------------------------------------------
def test_service_class_is_defined_and_called(capsys: Any, profile: Any) -> None:
    assert "✓ service 'profile' ready (1 worker)" in capsys.readouterr().out
    assert ok(profile, '%sage_call profile "42"') == {"age": 62}
    assert ok(profile, 'sage_env.call_service("profile", "7")') == {}
    assert isinstance(profile.user_ns["Profile"], type)  # the class stays in the namespace
    assert "sage_nb/service/profile" in sage_thread_names()
    assert profile.user_ns["sage_env"].services == ["profile"]


def test_service_function_becomes_process(shell: Any, capsys: Any) -> None:
    ok(shell, "%%sage_service double\ndef double(x):\n    return 2 * x\n")
    assert "✓ service 'double' ready (1 worker)" in capsys.readouterr().out
    assert ok(shell, "%sage_call double 21") == 42


def test_async_service_function_and_method(shell: Any) -> None:
    ok(
        shell,
        "%%sage_service slow_double\nimport asyncio\n"
        "async def slow_double(x):\n    await asyncio.sleep(0)\n    return 2 * x\n",
    )
    ok(
        shell,
        "%%sage_service greeter\nclass Greeter:\n"
        "    async def process(self, name):\n        return f'hello {name}'\n"
        "    async def shout(self, name):\n        return f'HELLO {name}'\n",
    )
    assert ok(shell, "%sage_call slow_double 4") == 8
    ok(shell, 'r = await sage_env.call_service_async("slow_double", 5, timeout=5)')
    assert shell.user_ns["r"] == 10
    ok(shell, 'g = await sage_env.call_service_async("greeter", "ada", timeout=5)')
    assert shell.user_ns["g"] == "hello ada"
    assert ok(shell, "%sage_call --method shout greeter 'ada'") == "HELLO ada"
    assert "sage_nb/service-loop/greeter" in sage_thread_names()


def test_awaited_call_raises_the_service_error(shell: Any) -> None:
    ok(shell, "%%sage_service fails\ndef fails(x):\n    raise KeyError(x)\n")
    err = error(shell, 'await sage_env.call_service_async("fails", "k", timeout=5)')
    assert isinstance(err, ServiceCallError)
    assert err.remote_type == "KeyError"
    assert isinstance(err.__cause__, KeyError)


def test_method_option_on_a_class(shell: Any) -> None:
    ok(
        shell,
        "%%sage_service profile --method lookup\n"
        "class Profile:\n"
        "    def setup(self):\n        self.db = {'42': {'age': 62}}\n"
        "    def lookup(self, user_id):\n        return self.db.get(user_id, {})\n"
        "    def size(self):\n        return len(self.db)\n",
    )
    assert ok(shell, '%sage_call profile "42"') == {"age": 62}  # setup() ran, lookup answered
    assert ok(shell, "%sage_call --method size profile") == 1
    assert ok(shell, 'sage_env.call_service("profile", "42", method="lookup")') == {"age": 62}
    assert shell.user_ns["Profile"].__name__ == "Profile"


def test_method_option_on_a_function(shell: Any) -> None:
    ok(shell, "%%sage_service math -m double\ndef double(x):\n    return 2 * x\n")
    assert ok(shell, "%sage_call math 2") == 4
    assert ok(shell, "%sage_call --method double math 3") == 6


@pytest.mark.parametrize("method", ["nope", "_private", "setup", "close", "not-a-name"])
def test_method_option_must_name_a_public_method(shell: Any, method: str) -> None:
    cell = (
        f"%%sage_service profile --method {method}\n"
        "class Profile:\n    def lookup(self, x):\n        return x\n"
    )
    message = usage_error(shell, cell)
    assert method in message
    assert "--method" in message
    assert shell.user_ns["sage_env"].services == []


def test_concurrency_starts_that_many_named_workers(shell: Any) -> None:
    ok(shell, "%%sage_service echo --concurrency 3\ndef echo(x):\n    return x\n")
    assert sage_thread_names("sage_nb/service/echo") == [
        "sage_nb/service/echo",
        "sage_nb/service/echo#1",
        "sage_nb/service/echo#2",
    ]
    (stats,) = shell.user_ns["sage_env"].statistics().services
    assert stats.workers == 3
    message = usage_error(
        shell, "%%sage_service echo2 --concurrency 0\ndef echo(x):\n    return x\n"
    )
    assert "--concurrency must be 1 or more, got 0" in message


def test_options_set_backpressure_retries_and_restarts(shell: Any) -> None:
    shell.user_ns["gate"] = gate = threading.Event()
    shell.user_ns["started"] = started = threading.Event()
    ok(
        shell,
        "%%sage_service slow --max-queued 1 --overflow fail --retries 2 --max-restarts 1\n"
        "def slow(x):\n    started.set()\n    gate.wait(10)\n    return x\n",
    )
    factory = shell.user_ns["sage_env"].service_factory("slow").options
    assert (factory.max_queued, factory.overflow, factory.max_restarts) == (1, "fail", 1)
    assert factory.retry is not None and factory.retry.retries == 2
    try:
        ok(shell, "running = sage_env.call_service_async('slow', 1, timeout=20)")
        assert started.wait(5)
        ok(shell, "queued = sage_env.call_service_async('slow', 2, timeout=20)")
        err = error(shell, "sage_env.call_service('slow', 3, timeout=5)")
        assert type(err).__name__ == "ServiceOverloadedError"
    finally:
        gate.set()
    assert ok(shell, "running.result(5), queued.result(5)") == (1, 2)


def test_rerunning_with_other_options_applies_them(shell: Any) -> None:
    cell = "def echo(x):\n    return x\n"
    ok(shell, "%%sage_service echo --max-queued 2 --overflow fail\n" + cell)
    ok(shell, "%%sage_service echo --max-queued none\n" + cell)
    factory = shell.user_ns["sage_env"].service_factory("echo").options
    assert (factory.max_queued, factory.overflow, factory.retry) == (None, "block", None)
    ctx = shell.user_ns["sage_env"]._dispatcher.contexts()["echo"]
    assert (ctx.max_queued, ctx.overflow) == (None, "block")
    assert ok(shell, "%sage_call echo 7") == 7


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ("--max-queued 0", "takes a number >= 1 or none, got '0'"),
        ("--max-queued lots", "takes a number >= 1 or none, got 'lots'"),
        ("--overflow drop", "invalid choice: 'drop'"),
        ("--retries -1", "--retries must be 0 or more, got -1"),
        ("--max-restarts -2", "--max-restarts must be 0 or more, got -2"),
        ("--replicas 2", "--replicas only apply to Ray actors"),
        ("--num-cpus 1 --num-gpus 1", "--num-cpus, --num-gpus only apply to Ray actors"),
    ],
)
def test_option_mistakes(shell: Any, options: str, expected: str) -> None:
    message = usage_error(shell, f"%%sage_service echo {options}\ndef echo(x):\n    return x\n")
    assert expected in message
    assert shell.user_ns["sage_env"].services == []


def test_rerunning_the_cell_swaps_in_place(profile: Any, closed: list[str], capsys: Any) -> None:
    capsys.readouterr()
    ok(
        profile,
        PROFILE.replace('{"42": {"age": 62}}', '{"42": {"age": 63}}'),
    )
    assert "✓ service 'profile' updated to version 2 (1 worker)" in capsys.readouterr().out
    assert closed == ["profile"]  # the old version's close() ran
    assert ok(profile, '%sage_call profile "42"') == {"age": 63}
    assert sage_thread_names("sage_nb/service/") == ["sage_nb/service/profile"]
    (stats,) = profile.user_ns["sage_env"].statistics().services
    assert stats.version == 2


def test_rerun_hands_queued_requests_to_the_new_version(shell: Any, capsys: Any) -> None:
    shell.user_ns["gate"] = threading.Event()
    shell.user_ns["started"] = threading.Event()
    ok(
        shell,
        "%%sage_service echo\nclass Echo:\n"
        "    def process(self, x):\n        started.set()\n        gate.wait(10)\n"
        "        return ('v1', x)\n",
    )
    ok(shell, "futures = [sage_env.call_service_async('echo', i, timeout=20) for i in range(5)]")
    assert shell.user_ns["started"].wait(5)  # request 0 is running; 1-4 are queued
    capsys.readouterr()
    # The new version's constructor releases the old version's running request, so the swap
    # (which waits for it) can finish.
    ok(
        shell,
        "%%sage_service echo\nclass Echo:\n"
        "    def __init__(self):\n        gate.set()\n"
        "    def process(self, x):\n        return ('v2', x)\n",
    )
    assert "4 queued requests handed over" in capsys.readouterr().out
    results = [f.result(timeout=5) for f in shell.user_ns["futures"]]
    assert results == [("v1", 0), ("v2", 1), ("v2", 2), ("v2", 3), ("v2", 4)]


@pytest.mark.parametrize("hook", ["__init__", "setup"])
def test_failed_new_version_keeps_the_old_one_serving(
    profile: Any, closed: list[str], capsys: Any, hook: str
) -> None:
    capsys.readouterr()
    err = error(
        profile,
        "%%sage_service profile\nclass Profile:\n"
        f"    def {hook}(self):\n        raise ValueError('bad config')\n"
        "    def process(self, user_id):\n        return 'v2'\n",
    )
    assert isinstance(err, ValueError) and str(err) == "bad config"
    assert "the running version keeps serving" in capsys.readouterr().err
    assert ok(profile, '%sage_call profile "42"') == {"age": 62}
    (stats,) = profile.user_ns["sage_env"].statistics().services
    assert (stats.version, stats.state) == (1, "running")
    assert closed == []
    # the traceback starts at the user's line, not in the runtime
    frames = traceback.extract_tb(err.__traceback__)
    assert (frames[-1].name, frames[-1].lineno) == (hook, 4)
    assert not any("/sage_nb/runtime/" in f.filename for f in frames)


def test_failed_setup_on_first_definition_registers_nothing(shell: Any) -> None:
    err = error(
        shell,
        "%%sage_service broken\nclass Broken:\n"
        "    def setup(self):\n        raise RuntimeError('no database')\n"
        "    def process(self, x):\n        return x\n",
    )
    assert isinstance(err, RuntimeError) and str(err) == "no database"
    assert shell.user_ns["sage_env"].services == []
    assert sage_thread_names() == []
    message = usage_error(shell, "%sage_call broken 1")
    assert "no service 'broken'" in message


def test_typo_in_the_cell_registers_nothing(shell: Any) -> None:
    err = error(
        shell,
        "%%sage_service profile\nclass Profile:\n    db = dcit()\n"
        "    def process(self, x):\n        return x\n",
    )
    assert isinstance(err, NameError)
    frames = traceback.extract_tb(err.__traceback__)
    assert frames[-1].lineno == 3  # the cell's line 3: the %%sage_service line is line 1
    assert shell.user_ns["sage_env"].services == []


def test_syntax_error_points_at_the_cell_line(shell: Any) -> None:
    err = error(shell, "%%sage_service profile\nclass Profile:\n    def process(self x):\n")
    assert isinstance(err, SyntaxError)
    assert err.lineno == 3
    assert shell.user_ns["sage_env"].services == []


def test_service_error_traceback_shows_the_cell_line(shell: Any) -> None:
    ok(
        shell,
        "%%sage_service profile\nclass Profile:\n"
        "    def process(self, user_id):\n        return {}[user_id]\n",
    )
    err = error(shell, '%sage_call profile "x"')
    assert isinstance(err, ServiceCallError)
    assert (err.remote_type, err.remote_message) == ("KeyError", "'x'")
    cause = err.__cause__
    assert isinstance(cause, KeyError)
    frames = traceback.extract_tb(cause.__traceback__)
    # only the user's frame: the runtime's worker loop is left out
    assert [(f.name, f.lineno) for f in frames] == [("process", 4)]
    # and the service answers the next call
    ok(shell, "%%sage_service profile\ndef profile(user_id):\n    return user_id\n")
    assert ok(shell, '%sage_call profile "x"') == "x"


def test_name_registered_from_code_needs_replace(shell: Any, capsys: Any) -> None:
    ok(shell, 'sage_env.register_service("cache", lambda key: "from code")')
    cell = "%%sage_service cache\ndef cache(key):\n    return 'from cell'\n"
    message = usage_error(shell, cell)
    assert "registered from code" in message
    assert "%%sage_service cache --replace" in message
    assert ok(shell, "%sage_call cache 1") == "from code"
    ok(shell, cell.replace("cache\n", "cache --replace\n", 1))
    assert ok(shell, "%sage_call cache 1") == "from cell"
    ok(shell, cell)  # now the cell owns it: re-running needs no --replace
    assert "updated to version" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("%%sage_service 9lives\ndef f(x):\n    return x\n", "is not an identifier"),
        ("%%sage_service\ndef f(x):\n    return x\n", "usage: %sage_service"),
        ("%%sage_service a b\ndef f(x):\n    return x\n", "unrecognized arguments: b"),
        ("%%sage_service a --bogus\ndef f(x):\n    return x\n", "usage: %sage_service"),
        ("%%sage_service a\nclass A:\n    pass\nclass B:\n    pass\n", "defines 2 classes (A, B)"),
        ("%%sage_service a\ndef f(x):\n    pass\ndef g(x):\n    pass\n", "2 functions (f, g)"),
        ("%%sage_service a\nx = 1\n", "defines no class or function"),
        ("%%sage_service a\n", "the cell body is empty"),  # IPython's own check
    ],
)
def test_service_cell_mistakes(shell: Any, cell: str, expected: str) -> None:
    assert expected in usage_error(shell, cell)
    assert shell.user_ns["sage_env"].services == []


# -- %sage_call -------------------------------------------------------------------------------
def test_call_arguments_are_python_expressions(shell: Any) -> None:
    ok(
        shell,
        "%%sage_service args\nclass Args:\n"
        "    def process(self, *args, **kwargs):\n        return args, kwargs\n"
        "    def pair(self, a, b):\n        return (b, a)\n",
    )
    shell.user_ns["uid"] = "42"
    assert ok(shell, "%sage_call args uid") == (("42",), {})
    assert ok(shell, "%sage_call args 1 2 'three'") == ((1, 2, "three"), {})
    assert ok(shell, '%sage_call args 1, [2, 3], k="v"') == ((1, [2, 3]), {"k": "v"})
    assert ok(shell, "%sage_call args") == ((), {})
    assert ok(shell, "%sage_call -m pair args 1 2") == (2, 1)
    assert ok(shell, "%sage_call --method=pair --timeout 5 args 1, 2") == (2, 1)


def test_call_unknown_service_says_how_to_define_it(profile: Any) -> None:
    message = usage_error(profile, '%sage_call profiel "42"')
    assert "no service 'profiel' (registered: 'profile')" in message
    assert "%%sage_service profiel" in message


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("%sage_call", "a service name is missing; usage: %sage_call"),
        ("%sage_call --bogus profile", "unknown option --bogus"),
        ("%sage_call profile (", "cannot read the arguments"),
        ("%sage_call --timeout 0 profile 1", "--timeout takes seconds > 0"),
        ("%sage_call --timeout soon profile 1", "--timeout takes seconds > 0"),
    ],
)
def test_call_mistakes(profile: Any, line: str, expected: str) -> None:
    assert expected in usage_error(profile, line)


def test_call_unknown_method_lists_the_methods(profile: Any) -> None:
    err = error(profile, '%sage_call --method lookup profile "42"')
    assert "has no method 'lookup'" in str(err)
    assert "'process'" in str(err)


def test_call_timeout_then_the_service_answers_again(shell: Any) -> None:
    shell.user_ns["gate"] = threading.Event()
    ok(shell, "%%sage_service slow\ndef slow(x):\n    gate.wait(10)\n    return x\n")
    err = error(shell, "%sage_call --timeout 0.2 slow 1")
    assert isinstance(err, ServiceTimeoutError)
    assert "timed out after 0.2 s" in str(err)
    shell.user_ns["gate"].set()
    assert ok(shell, "%sage_call slow 2") == 2


# -- %sage_submit -----------------------------------------------------------------------------
PIPELINE = (
    "out = []\n"
    "sage_env.from_batch(['42', '7', '42'])"
    ".map(lambda u: sage_env.call_service('profile', u)).sink(out.append)\n"
)


def test_submit_without_a_pipeline(shell: Any) -> None:
    message = usage_error(shell, "%sage_submit")
    assert "no pipeline yet" in message
    assert "sage_env.from_batch(data)" in message


def test_submit_runs_the_pipeline_and_prints_a_summary(profile: Any, capsys: Any) -> None:
    ok(profile, PIPELINE)
    capsys.readouterr()
    assert ok(profile, "%sage_submit --no-progress") is None
    assert profile.user_ns["out"] == [{"age": 62}, {}, {"age": 62}]
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert lines[0].startswith("✓ job 'sage_env-")
    assert "finished in" in lines[0]
    assert lines[0].endswith(": 3 of 3 records, errors: 0")
    assert lines[1] == "  from_batch 3 → map(lambda) 3 → sink(append) 3"
    assert lines[2].startswith("  service calls: profile 3 (p50 ")
    assert "records (" not in out  # no progress line
    assert sage_thread_names("sage_nb/task/") == []


def test_submit_shows_progress(profile: Any, capsys: Any) -> None:
    shown: list[Any] = []
    profile.display_pub.publish = lambda data, **kw: shown.append(data)  # type: ignore[method-assign]
    try:
        ok(profile, PIPELINE + "%sage_submit")
    finally:
        del profile.display_pub.publish
    texts = [d["text/plain"] for d in shown]
    assert texts, "no progress display"
    assert texts[-1].startswith("sage_env-")
    assert "finished: 3 / 3 records (100.0%)" in texts[-1]
    assert '<progress value="3" max="3"' in shown[-1]["text/html"]


def test_progress_view_of_a_running_job(profile: Any) -> None:
    ok(profile, "import itertools\nsage_env.from_source(itertools.count()).sink(lambda r: None)")
    job = ok(profile, "%sage_submit --background")
    try:
        view = ProgressReport(job)
        assert repr(view).startswith(f"{job.name} running: ")
        assert "<progress" not in view._repr_html_()  # unknown total: no bar
    finally:
        job.stop(timeout=5)


def test_submit_background_returns_the_job(profile: Any) -> None:
    ok(profile, PIPELINE)
    job = ok(profile, "%sage_submit --background")
    assert job is profile.user_ns["sage_env"].jobs[-1]
    assert job.wait(10)
    assert job.status == "finished"
    assert profile.user_ns["out"] == [{"age": 62}, {}, {"age": 62}]


def test_submit_while_a_job_runs_says_how_to_stop_it(profile: Any) -> None:
    ok(profile, "import itertools\nsage_env.from_source(itertools.count()).sink(lambda r: None)")
    job = ok(profile, "%sage_submit --background")
    try:
        message = usage_error(profile, "%sage_submit")
        assert f"job {job.name!r} is still running" in message
        assert "%sage_stop" in message
    finally:
        job.stop(timeout=5)


def test_submit_timeout_stops_an_endless_job(shell: Any, capsys: Any) -> None:
    ok(shell, "import itertools\nsage_env.from_source(itertools.count()).sink(lambda r: None)")
    capsys.readouterr()
    ok(shell, "%sage_submit --timeout 0.2 --no-progress")
    job = shell.user_ns["sage_env"].jobs[-1]
    assert job.status == "stopped"
    assert f"job {job.name!r} stopped (--timeout 0.2 s) in" in capsys.readouterr().out
    assert sage_thread_names("sage_nb/task/") == []


@pytest.mark.parametrize("value", ["0", "-1"])
def test_submit_timeout_must_be_positive(shell: Any, value: str) -> None:
    ok(shell, "sage_env.from_batch([1]).sink(print)")
    assert "--timeout must be a number of seconds > 0" in usage_error(
        shell, f"%sage_submit --timeout {value}"
    )


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("%sage_submit --bogus", "unrecognized arguments: --bogus; usage: %sage_submit"),
        ("%sage_submit --timeout x", "invalid float value: 'x'; usage: %sage_submit"),
    ],
)
def test_submit_argument_mistakes(shell: Any, line: str, expected: str) -> None:
    assert expected in usage_error(shell, line)


def test_submit_raises_the_operator_error(shell: Any) -> None:
    ok(shell, "sage_env.from_batch([1, 0]).map(lambda x: 1 / x).sink(print)")
    err = error(shell, "%sage_submit --no-progress")
    assert isinstance(err, OperatorError)
    assert isinstance(err.__cause__, ZeroDivisionError)
    assert shell.user_ns["sage_env"].jobs[-1].status == "failed"


def test_rerunning_a_build_and_submit_cell_runs_the_pipeline_once(profile: Any) -> None:
    cell = PIPELINE + "%sage_submit --no-progress"
    ok(profile, cell)
    ok(profile, cell)
    assert profile.user_ns["out"] == [{"age": 62}, {}, {"age": 62}]
    assert profile.user_ns["sage_env"].jobs[-1].progress() == (3, 3)
    # nothing new built: %sage_submit runs the same pipeline again
    ok(profile, "%sage_submit --no-progress")
    assert len(profile.user_ns["out"]) == 6


def test_extending_a_submitted_pipeline_runs_all_of_it(shell: Any) -> None:
    ok(shell, "out = []\nstream = sage_env.from_batch([1, 2]).map(lambda x: x * 10)")
    ok(shell, "stream.sink(out.append)\n%sage_submit --no-progress")
    ok(shell, "stream.map(lambda x: -x).sink(out.append)\n%sage_submit --no-progress")
    assert sorted(shell.user_ns["out"]) == [-20, -10, 10, 10, 20, 20]


def test_interrupt_stops_the_job_and_says_how_far_it_got(profile: Any) -> None:
    # The map interrupts the main thread (as SIGINT would) once records flow.
    ok(
        profile,
        "import _thread, itertools\n"
        "def interrupt_at_10(x):\n"
        "    if x == 10:\n        _thread.interrupt_main()\n"
        "    return sage_env.call_service('profile', str(x))\n"
        "sage_env.from_source(itertools.count()).map(interrupt_at_10).sink(lambda r: None)",
    )
    err = error(profile, "%sage_submit --no-progress\nafter = True")
    assert isinstance(err, JobInterrupted) and isinstance(err, KeyboardInterrupt)
    job = profile.user_ns["sage_env"].jobs[-1]
    assert job.status == "stopped"
    assert str(err).startswith(f"job {job.name!r} stopped after ")
    assert str(err).endswith(" records")
    assert "after" not in profile.user_ns  # the rest of the cell did not run
    assert err._render_traceback_() == [f"\x1b[0;31mKeyboardInterrupt\x1b[0m: {err}"]
    assert sage_thread_names("sage_nb/task/") == []
    assert ok(profile, '%sage_call profile "42"') == {"age": 62}  # services keep serving


def test_interrupt_while_the_job_starts_still_stops_it(profile: Any, monkeypatch: Any) -> None:
    # SIGINT arrives while start_job() is still starting task threads (it happens in a busy
    # kernel): it only counts until the Job exists, then the magic stops that job.
    env = profile.user_ns["sage_env"]
    start_job = env.start_job

    def start_then_interrupt() -> Any:
        job = start_job()
        signal.raise_signal(signal.SIGINT)  # the magic is still inside start_job
        return job

    monkeypatch.setattr(env, "start_job", start_then_interrupt)
    ok(profile, "import itertools\nsage_env.from_source(itertools.count()).sink(lambda r: None)")
    err = error(profile, "%sage_submit --no-progress")
    assert isinstance(err, JobInterrupted)
    assert env.jobs[-1].status == "stopped"
    assert sage_thread_names("sage_nb/task/") == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_interrupt_inside_a_finalizer_still_stops_the_job(
    profile: Any, monkeypatch: Any
) -> None:
    # While the magic waits, the garbage collector runs a finalizer in the cell's thread just
    # as Ctrl-C arrives. Python's own handler would raise there and the exception would be
    # dropped (a real kernel once hung so); the magic's handler only counts, and its waiting
    # loop stops the job.
    class InterruptedFinalizer:
        def __del__(self) -> None:
            signal.raise_signal(signal.SIGINT)

    dropped: list[type[BaseException]] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: dropped.append(u.exc_type))
    tick = SubmitProgress.tick
    collected: list[bool] = []

    def tick_then_collect(progress: Any) -> None:
        if not collected:
            collected.append(True)
            InterruptedFinalizer()
        tick(progress)

    monkeypatch.setattr(SubmitProgress, "tick", tick_then_collect)
    ok(profile, "import itertools\nsage_env.from_source(itertools.count()).sink(lambda r: None)")
    err = error(profile, "%sage_submit")
    assert collected and dropped == []
    assert isinstance(err, JobInterrupted)
    assert profile.user_ns["sage_env"].jobs[-1].status == "stopped"
    assert sage_thread_names("sage_nb/task/") == []


def test_second_interrupt_stops_waiting_for_a_busy_task(profile: Any) -> None:
    gate = profile.user_ns["gate"] = threading.Event()
    # The map gets stuck on its first record and interrupts the main thread (as SIGINT
    # would); a helper interrupts again as soon as the job is asked to stop.
    ok(
        profile,
        "import _thread, itertools\n"
        "def stuck(x):\n"
        "    if x == 0:\n"
        "        _thread.interrupt_main()\n"
        "        gate.wait(30)\n"
        "    return x\n"
        "sage_env.from_source(itertools.count()).map(stuck).sink(lambda r: None)",
    )
    env = profile.user_ns["sage_env"]

    def interrupt_again() -> None:
        for _ in range(300):  # bounded: 30 s
            if env.jobs and env.jobs[-1].stopping:
                _thread.interrupt_main()
                return
            gate.wait(0.1)

    helper = threading.Thread(target=interrupt_again, name="test/interrupt-again")
    helper.start()
    try:
        err = error(profile, "%sage_submit --no-progress")
    finally:
        helper.join(30)
        gate.set()  # the busy task's call returns and the task ends
    assert isinstance(err, JobInterrupted)
    assert str(err).endswith(" records (a task was still busy; it stops after its current call)")
    job = env.jobs[-1]
    assert job.wait(10) and job.status == "stopped"
    assert sage_thread_names("sage_nb/task/") == []


# -- %sage_status -----------------------------------------------------------------------------
def test_status_shows_services_jobs_and_threads(profile: Any) -> None:
    ok(profile, PIPELINE + "%sage_submit --no-progress")
    report = ok(profile, "%sage_status")
    assert isinstance(report, StatusReport)
    text = repr(report)
    assert text.startswith("<LocalEnvironment 'sage_env' (threads): 1 services>")
    header, rule, row = text.split("\n\n")[1].splitlines()
    assert header.split()[:4] == ["service", "state", "workers", "version"]
    assert row.split()[:9] == ["profile", "running", "1", "1", "0", "0", "3", "0", "0"]
    assert len(header) == len(rule) == len(row)  # right-aligned numbers, fixed-width latencies
    assert "finished" in text.split("\n\n")[2]
    assert text.endswith("threads: 1 (sage_nb/service/profile)")
    html = report._repr_html_()
    assert "<td>profile</td>" in html and "<td>running</td>" in html


def test_status_escapes_html(shell: Any) -> None:
    ok(shell, "sage_env.from_batch(['<b>x</b>']).map(lambda s: int(s)).sink(print)")
    error(shell, "%sage_submit --no-progress")
    html = ok(shell, "%sage_status")._repr_html_()
    assert "<b>x</b>" not in html.replace("<b><LocalEnvironment", "")
    assert "&lt;b&gt;x&lt;/b&gt;" in html


def test_status_takes_no_arguments(shell: Any) -> None:
    assert "unrecognized arguments: now; usage: %sage_status" in usage_error(
        shell, "%sage_status now"
    )


def test_status_of_an_empty_environment(shell: Any) -> None:
    text = repr(ok(shell, "%sage_status"))
    assert "no services" in text and text.endswith("threads: 0")


# -- %sage_stop -------------------------------------------------------------------------------
def test_stop_without_arguments_stops_running_jobs(profile: Any, capsys: Any) -> None:
    ok(profile, "import itertools\nsage_env.from_source(itertools.count()).sink(lambda r: None)")
    job = ok(profile, "%sage_submit --background")
    capsys.readouterr()
    ok(profile, "%sage_stop")
    assert capsys.readouterr().out == "stopped 1 job\n"
    assert job.status == "stopped"
    assert sage_thread_names("sage_nb/task/") == []
    ok(profile, "%sage_stop")
    assert capsys.readouterr().out == "stopped 0 jobs\n"


def test_stop_a_service_then_it_restarts_on_its_next_call(
    profile: Any, closed: list[str], capsys: Any
) -> None:
    capsys.readouterr()
    ok(profile, "%sage_stop profile")
    assert capsys.readouterr().out == "stopped service 'profile'\n"
    assert closed == ["profile"]
    assert sage_thread_names() == []
    assert ok(profile, '%sage_call profile "42"') == {"age": 62}  # setup() ran again
    assert sage_thread_names() == ["sage_nb/service/profile"]


def test_stop_all(profile: Any, closed: list[str], capsys: Any) -> None:
    ok(profile, "import itertools\nsage_env.from_source(itertools.count()).sink(lambda r: None)")
    job = ok(profile, "%sage_submit --background")
    capsys.readouterr()
    ok(profile, "%sage_stop --all")
    assert capsys.readouterr().out == "stopped 1 job and every service\n"
    assert job.status == "stopped" and closed == ["profile"]
    assert sage_thread_names() == []
    assert ok(profile, '%sage_call profile "42"') == {"age": 62}


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("%sage_stop nope", "no service 'nope' to stop (registered: 'profile')"),
        ("%sage_stop profile --all", "not both"),
        ("%sage_stop a b", "unrecognized arguments: b; usage: %sage_stop [--all] [name]"),
    ],
)
def test_stop_mistakes(profile: Any, line: str, expected: str) -> None:
    assert expected in usage_error(profile, line)


# -- %sage_reset ------------------------------------------------------------------------------
def test_reset_closes_everything_and_starts_fresh(
    profile: Any, closed: list[str], capsys: Any
) -> None:
    old = profile.user_ns["sage_env"]
    ok(profile, PIPELINE + "%sage_submit --no-progress")
    capsys.readouterr()
    ok(profile, "%sage_reset")
    assert capsys.readouterr().out == "sage_env reset: 1 service and 1 job removed\n"
    new = profile.user_ns["sage_env"]
    assert new is not old and old.closed and not new.closed
    assert new.name == "sage_env"
    assert closed == ["profile"]
    assert new.services == [] and new.jobs == [] and new.pipeline == []
    assert sage_thread_names() == []
    assert kernel.get_env() is new
    assert "no pipeline yet" in usage_error(profile, "%sage_submit")
    ok(profile, PROFILE)  # the magics work on the new environment
    assert new.services == ["profile"]


def test_reset_takes_no_arguments(shell: Any) -> None:
    assert "usage: %sage_reset" in usage_error(shell, "%sage_reset --hard")


# -- %sage_env --------------------------------------------------------------------------------
def test_env_shows_sage_env(shell: Any) -> None:
    assert ok(shell, "%sage_env") is shell.user_ns["sage_env"]


def test_env_address_needs_the_ray_backend_and_keeps_sage_env(profile: Any) -> None:
    env = profile.user_ns["sage_env"]
    message = usage_error(profile, "%sage_env --backend local --address auto")
    assert message == "--address is for the Ray backend: add --backend ray"
    assert profile.user_ns["sage_env"] is env and not env.closed
    assert ok(profile, '%sage_call profile "42"') == {"age": 62}


def test_env_name_makes_a_new_environment(profile: Any, closed: list[str]) -> None:
    old = profile.user_ns["sage_env"]
    new = ok(profile, "%sage_env staging")
    assert new is profile.user_ns["sage_env"] and new.name == "staging"
    assert old.closed and closed == ["profile"]
    again = ok(profile, "%sage_env --backend local")
    assert again.name == "staging" and new.closed
    assert repr(again) == "<LocalEnvironment 'staging' (threads): 0 services>"


def test_env_unknown_backend(shell: Any) -> None:
    message = usage_error(shell, "%sage_env --backend dask")
    assert "invalid choice: 'dask'" in message
    assert "usage: %sage_env [--backend {local,ray}] [--address ADDRESS] [name]" in message


# -- display helpers --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (25e-6, "25.0 µs"),
        (1.5e-6, "1.50 µs"),
        (125e-6, "125 µs"),
        (999.7e-6, "1.00 ms"),
        (0.0125, "12.5 ms"),
        (0.84, "840 ms"),
        (1.234, "1.23 s"),
        (125.0, "125 s"),
    ],
)
def test_format_seconds(seconds: float | None, text: str) -> None:
    assert format_seconds(seconds) == text
    assert len(format_seconds(seconds)) <= 7


def test_summary_of_a_branching_pipeline() -> None:
    with LocalEnvironment("summary") as env:
        a, b = [], []
        stream = env.from_batch([1, 2, 3])
        stream.filter(lambda x: x > 1).sink(a.append)
        stream.sink(b.append)
        job = env.submit()
        text = job_summary(job)
    first, counts = text.splitlines()
    assert first.startswith("✓ job 'summary-") and first.endswith(": 3 of 3 records, errors: 0")
    assert " → " not in counts and counts.count(",") == 3
