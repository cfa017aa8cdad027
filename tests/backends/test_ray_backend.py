"""What only the Ray backend has: connecting, replicas, actor options, actors cleaned up."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from typing import Any

import pytest
from backend_helpers import WAIT, Echo, Recorder, Rendezvous

from sage_nb import MapFunction, ServiceNotFoundError, ServiceUnavailableError

pytestmark = pytest.mark.usefixtures("ray_cluster")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_python(code: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter of this environment (not connected to Ray)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=env,
    )


# -- connecting ------------------------------------------------------------------------------
def test_import_sage_nb_does_not_import_ray() -> None:
    result = run_python(
        """
        import sys
        import sage_nb
        assert "ray" not in sys.modules, "import sage_nb imported ray"
        cls = sage_nb.RemoteEnvironment
        assert "ray" not in sys.modules, "sage_nb.RemoteEnvironment imported ray"
        print(cls.__name__)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "RemoteEnvironment"


def test_missing_ray_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    from sage_nb import RemoteEnvironment

    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` sees without ray
    with pytest.raises(ImportError, match=r'pip install "sage_nb\[ray\]"'):
        RemoteEnvironment("no-ray")


def test_unreachable_cluster_fails_fast_with_the_address() -> None:
    result = run_python(
        """
        from sage_nb import RemoteEnvironment
        from sage_nb.backends.ray import RayConnectionError
        for address in ("127.0.0.1:9", "ray://127.0.0.1:9"):
            try:
                RemoteEnvironment("x", address=address, connect_timeout=2)
            except RayConnectionError as exc:
                assert address in str(exc), exc
                assert "ray start --head" in str(exc), exc
                print("refused", address)
            else:
                raise AssertionError(f"connected to {address}?")
        """,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["refused 127.0.0.1:9", "refused ray://127.0.0.1:9"]


def test_second_environment_reuses_the_connection(ray_env: Any) -> None:
    from sage_nb import RemoteEnvironment

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = RemoteEnvironment("second")  # no options: reused silently
    try:
        with pytest.warns(RuntimeWarning, match="already connected"):
            third = RemoteEnvironment("third", num_cpus=8)
        third.close()
        assert second.namespace != ray_env.namespace
        second.register_service("echo", Echo)
        ray_env.register_service("echo", Echo)  # same name, another environment
        assert second.call_service("echo", 1) == 1
        assert ray_env.call_service("echo", 2) == 2
    finally:
        assert second.close(timeout=WAIT)
    assert second.actors() == []
    assert ray_env.actors() == ["echo#0"]


# -- actors and their options ----------------------------------------------------------------
def test_replicas_behind_one_name(ray_env: Any) -> None:
    ray_env.register_service("echo", Echo, num_replicas=2)
    futures = [ray_env.call_service_async("echo", method="pid") for _ in range(400)]
    pids = {f.result(WAIT) for f in futures}
    assert len(pids) == 2
    assert ray_env.actors() == ["echo#0", "echo#1"]
    assert ray_env.statistics().services[0].workers == 2


def test_service_cell_options_reach_the_actors(shell: Any, capsys: Any) -> None:
    def ok(code: str) -> Any:
        res = shell.run_cell(code)
        assert res.success, res.error_before_exec or res.error_in_exec
        return res.result

    ok("%sage_env --backend ray")
    ok(
        "%%sage_service who --replicas 2 --num-cpus 0 --max-queued 5000\n"
        "def who():\n    import os\n    return os.getpid()\n"
    )
    assert "✓ service 'who' ready (2 replicas, 1 worker each)" in capsys.readouterr().out
    env = shell.user_ns["sage_env"]
    assert env.actors() == ["who#0", "who#1"]
    assert env.service_factory("who").options.max_queued == 5000
    pids = ok("{f.result(30) for f in [sage_env.call_service_async('who') for _ in range(400)]}")
    assert len(pids) == 2
    # The same options again: the new version swaps into the running actors.
    ok(
        "%%sage_service who --replicas 2 --num-cpus 0 --max-queued 5000\n"
        "def who():\n    import os\n    return os.getpid()\n"
    )
    assert "updated to version 2 (2 replicas, 1 worker each)" in capsys.readouterr().out
    assert env.actors() == ["who#0", "who#1"]
    # Fewer replicas: the service restarts once the calls already queued are answered.
    ok("queued = [sage_env.call_service_async('who') for _ in range(200)]")
    ok("%%sage_service who\ndef who():\n    return 'v3'\n")
    assert "✓ service 'who' restarted with its new options (1 worker)" in capsys.readouterr().out
    answers = ok("[f.result(30) for f in queued]")
    assert len(answers) == 200 and set(answers) <= pids
    assert env.actors() == ["who#0"]
    assert ok("%sage_call who") == "v3"


def test_a_restart_whose_new_version_fails_keeps_the_old_one(shell: Any) -> None:
    def run(code: str) -> Any:
        return shell.run_cell(code)

    assert run("%sage_env --backend ray").success
    assert run("%%sage_service svc\ndef svc():\n    return 'old'\n").success
    broken = (
        "%%sage_service svc --replicas 2\nclass Svc:\n"
        "    def setup(self):\n        raise OSError('model file missing')\n"
        "    def process(self):\n        return 'new'\n"
    )
    res = run(broken)
    assert not res.success and "model file missing" in str(res.error_in_exec)
    assert run("%sage_call svc").result == "old"
    assert shell.user_ns["sage_env"].actors() == ["svc#0"]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ("--replicas 0", "--replicas must be 1 or more, got 0"),
        ("--num-cpus -1", "--num-cpus must be a number >= 0, got -1"),
        ("--num-gpus inf", "--num-gpus must be a number >= 0, got inf"),
    ],
)
def test_ray_option_mistakes(shell: Any, options: str, expected: str) -> None:
    assert shell.run_cell("%sage_env --backend ray").success
    res = shell.run_cell(f"%%sage_service echo {options}\ndef echo(x):\n    return x\n")
    assert type(res.error_in_exec).__name__ == "UsageError"
    assert expected in str(res.error_in_exec)
    assert shell.user_ns["sage_env"].services == []


def test_max_concurrency_runs_calls_at_once(ray_env: Any, rendezvous: Rendezvous) -> None:
    gate, entered = rendezvous.gate(), rendezvous.signal()
    ray_env.register_service("rec", Recorder, gate, entered, max_concurrency=3)
    futures = [ray_env.call_service_async("rec", i, method="block") for i in range(3)]
    assert sorted(entered.wait() for _ in futures) == ["0", "1", "2"]  # all three running
    gate.open()
    assert [f.result(WAIT) for f in futures] == [0, 1, 2]


def test_resource_requests_reach_ray(ray_env: Any) -> None:
    class Resources:
        def process(self) -> dict[str, float]:
            import ray

            return dict(ray.get_runtime_context().get_assigned_resources())

    ray_env.register_service("cpu", Resources, num_cpus=1)
    assert ray_env.call_service("cpu") == {"CPU": 1.0}


def test_a_service_that_cannot_be_placed_fails_to_start(request: Any) -> None:
    from sage_nb import RemoteEnvironment

    env = RemoteEnvironment("unplaceable", start_timeout=2.0)
    try:
        env.register_service("gpu", Echo, num_gpus=1)  # the test cluster has no GPU
        with pytest.raises(ServiceUnavailableError, match=r"did not start within 2 s.*num_gpus=1"):
            env.call_service("gpu", 1)
        assert env.actors() == []
    finally:
        assert env.close()


def test_setup_failure_is_reported_and_nothing_is_left(ray_env: Any) -> None:
    class Broken:
        def setup(self) -> None:
            raise OSError("model file missing")

        def process(self, x: Any) -> Any:
            return x

    ray_env.register_service("broken", Broken)
    with pytest.raises(ServiceUnavailableError, match=r"failed to start.*model file missing"):
        ray_env.call_service("broken", 1)
    assert ray_env.actors() == []


def test_replace_swaps_the_version_inside_the_actor(ray_env: Any) -> None:
    class V1:
        def process(self) -> tuple[str, int]:
            return "v1", os.getpid()

    class V2:
        def process(self) -> tuple[str, int]:
            return "v2", os.getpid()

    ray_env.register_service("svc", V1)
    version, pid = ray_env.call_service("svc")
    ray_env.register_service("svc", V2, replace=True)
    assert ray_env.call_service("svc") == ("v2", pid)
    assert version == "v1"
    assert ray_env.statistics().services[0].version == 2


def test_services_find_services_registered_after_them(ray_env: Any) -> None:
    class Caller:
        def process(self, x: int) -> int:
            return self.call_service("late", x) + 1  # type: ignore[attr-defined,no-any-return]

    ray_env.register_service("caller", Caller)
    with pytest.raises(ServiceNotFoundError, match="no service 'late'"):
        ray_env.call_service("caller", 1)  # raised inside the caller's actor, as it is
    ray_env.register_service("late", Echo)
    ray_env.call_service("late", 0)  # running now
    assert ray_env.call_service("caller", 1) == 2


def test_health_and_statistics(ray_env: Any) -> None:
    class Healthy(Echo):
        def health(self) -> bool:
            return True

    ray_env.register_service("echo", Healthy)
    for i in range(20):
        ray_env.call_service("echo", i)
    with pytest.raises(Exception, match="bad input"):
        ray_env.call_service("echo", 1, method="fail")
    assert ray_env.health()["echo"].status == "healthy"
    stats = ray_env.statistics().services[0]
    assert (stats.backend, stats.state, stats.done, stats.failed) == ("ray", "running", 21, 1)
    assert stats.p50 is not None


# -- cleanup ---------------------------------------------------------------------------------
def test_close_kills_a_busy_service_and_fails_its_calls(rendezvous: Rendezvous) -> None:
    from sage_nb import RemoteEnvironment

    env = RemoteEnvironment("busy")
    gate, entered = rendezvous.gate(), rendezvous.signal()
    env.register_service("rec", Recorder, gate, entered)
    stuck = env.call_service_async("rec", "x", method="block", timeout=WAIT)
    assert entered.wait() == "x"
    env.close(timeout=3.0)  # close() of the service waits behind the stuck call: killed
    assert env.actors() == []
    with pytest.raises(ServiceUnavailableError):
        stuck.result(WAIT)


def test_stopping_a_job_kills_its_operator_actors(ray_env: Any, rendezvous: Rendezvous) -> None:
    gate, entered = rendezvous.gate(), rendezvous.signal()
    ray_env.register_service("rec", Recorder, gate, entered)

    class Blocks(MapFunction):
        def execute(self, record: int) -> int:
            return self.call_service("rec", record, method="block", timeout=WAIT)  # type: ignore[no-any-return]

    ray_env.from_batch(list(range(10))).map(Blocks, parallelism=2).sink(lambda r: None)
    job = ray_env.submit(autostop=False)
    assert entered.wait() is not None
    assert any(name.startswith("task.") for name in ray_env.actors())
    gate.open()
    job.stop(timeout=WAIT)
    assert [n for n in ray_env.actors() if n.startswith("task.")] == []


def test_kernel_shutdown_and_unload_close_a_remote_environment() -> None:
    from types import SimpleNamespace

    from sage_nb import RemoteEnvironment
    from sage_nb.notebook.kernel import KernelRuntime

    shell = SimpleNamespace(user_ns={})
    for ending in ("exit_now", "unload"):
        runtime = KernelRuntime(shell)
        runtime.env.close()
        runtime.env = shell.user_ns["sage_env"] = RemoteEnvironment(f"kernel-{ending}")
        runtime.env.register_service("echo", Echo)
        assert runtime.env.call_service("echo", 1) == 1
        assert runtime.env.actors() == ["echo#0"]
        if ending == "exit_now":
            runtime._on_exit_now({"new": True})
        else:
            runtime.unload()
        assert runtime.env.closed
        assert runtime.env.actors() == []
