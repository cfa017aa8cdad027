"""sage_nb in a real kernel started with jupyter_client: services from cells, in-place swaps
under load, interrupts, restarts and where output lands.

Every wait is on a kernel message or on a condition evaluated in the kernel, with a bound.
The one timing assertion is the contract's: an interrupt returns control within 2 s.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from notebook_helpers import Cell, KernelSession

pytestmark = pytest.mark.timeout(120)

PROFILE = """%%sage_service profile
class Profile:
    def setup(self):
        self.db = {"42": {"age": 62}}
    def process(self, user_id):
        return self.db.get(user_id, {})
"""

TASK_THREADS = "sorted(t.name for t in threading.enumerate() if t.name.startswith('sage_nb/task/'))"


@pytest.fixture
def reset(kernel: KernelSession):
    """The module's kernel, with ``sage_env`` reset after the test."""
    kernel.execute("import threading, itertools")
    yield kernel
    kernel.execute("%sage_reset")
    assert kernel.value("sorted(t.name for t in threading.enumerate() if 'sage_nb' in t.name)") in (
        [],
        ["sage_nb/deadlines/sage_env"],  # ends by itself a second after the last async call
    )


def test_service_defined_and_called_from_cells(reset: KernelSession) -> None:
    kernel = reset
    assert kernel.execute(PROFILE).stdout == "✓ service 'profile' ready (1 worker)\n"
    assert kernel.execute('%sage_call profile "42"').result == "{'age': 62}"
    assert kernel.execute('sage_env.call_service("profile", "7")').result == "{}"
    cell = kernel.execute('r = await sage_env.call_service_async("profile", "42", timeout=5)\nr')
    assert cell.result == "{'age': 62}"
    kernel.execute(
        "%%sage_service greeter\nimport asyncio\n"
        "async def greet(name):\n    await asyncio.sleep(0)\n    return 'hello ' + name\n"
    )
    cell = kernel.execute('await sage_env.call_service_async("greeter", "ada", timeout=5)')
    assert cell.result == "'hello ada'"
    assert kernel.execute("%sage_call greeter 'bob'").result == "'hello bob'"
    assert kernel.value(
        "sorted(t.name for t in threading.enumerate() if t.name.startswith('sage_nb/service'))"
    ) == ["sage_nb/service-loop/greeter", "sage_nb/service/greeter", "sage_nb/service/profile"]


def test_a_user_mistake_is_one_line_without_traceback(reset: KernelSession) -> None:
    kernel = reset
    kernel.execute(PROFILE)
    cell = kernel.execute('%sage_call profiel "42"', ok=False)
    assert cell.status == "error"
    assert cell.stderr == (
        "UsageError: no service 'profiel' (registered: 'profile'); define it with "
        "%%sage_service profiel or env.register_service('profiel', cls)\n"
    )
    assert cell.error is None  # no traceback message
    # Nothing listens on port 1: the Ray backend fails fast, in one line, keeping sage_env.
    cell = kernel.execute("%sage_env --backend ray --address 127.0.0.1:1", ok=False)
    assert cell.stderr.count("\n") == 1
    assert cell.stderr.startswith("UsageError: cannot reach a Ray cluster at address='127.0.0.1:1'")
    assert kernel.value("type(sage_env).__name__") == "LocalEnvironment"


def test_rerunning_a_service_cell_50_times_under_load_loses_no_request(
    reset: KernelSession,
) -> None:
    kernel = reset
    kernel.execute(
        "versions = itertools.count(1)\n"
        "closes = []\n"
        "load = {'sent': 0, 'answered': 0, 'failed': [], 'wrong': [], 'versions': set()}\n"
        "stop_load, load_started = threading.Event(), threading.Event()\n"
    )
    echo = (
        "%%sage_service echo\n"
        "class Echo:\n"
        "    def __init__(self):\n        self.version = next(versions)\n"
        "    def process(self, x):\n        return (self.version, x)\n"
        "    def close(self):\n        closes.append(self.version)\n"
    )
    assert "ready" in kernel.execute(echo).stdout
    # Another thread keeps 50 async calls and one sync call in flight at a time, so requests
    # sit in the queue while the cell is swapped.
    kernel.execute(
        "def caller():\n"
        "    i = 0\n"
        "    while not stop_load.is_set():\n"
        "        batch = [(i + k, sage_env.call_service_async('echo', i + k, timeout=30))\n"
        "                 for k in range(50)]\n"
        "        calls = batch + [(-1, None)]\n"
        "        load['sent'] += len(calls)\n"
        "        for x, future in calls:\n"
        "            try:\n"
        "                v, y = future.result(30) if future else sage_env.call_service('echo', x)\n"
        "            except Exception as exc:\n"
        "                load['failed'].append(repr(exc))\n"
        "                continue\n"
        "            load['answered'] += 1\n"
        "            load['versions'].add(v)\n"
        "            if y != x:\n"
        "                load['wrong'].append((x, y))\n"
        "        i += 50\n"
        "        load_started.set()\n"
        "load_thread = threading.Thread(target=caller, name='load', daemon=True)\n"
        "load_thread.start()\n"
        "assert load_started.wait(10)"
    )
    handed_over = 0
    for run in range(2, 52):
        out = kernel.execute(echo).stdout
        assert f"✓ service 'echo' updated to version {run} (1 worker)" in out
        handed_over += "handed over" in out
    kernel.execute("stop_load.set()\nload_thread.join(30)\nassert not load_thread.is_alive()")
    sent, answered, failed, wrong = kernel.value(
        "load['sent'], load['answered'], load['failed'], load['wrong']"
    )
    assert failed == [] and wrong == []
    assert answered == sent > 50
    versions, closes = kernel.value("sorted(load['versions']), sorted(closes)")
    assert closes == list(range(1, 51))  # every replaced version's close() ran, once
    assert versions[-1] == 51 and len(versions) > 1
    assert kernel.value(
        "sorted(t.name for t in threading.enumerate() if t.name.startswith('sage_nb/service/'))"
    ) == ["sage_nb/service/echo"]
    print(f"\n50 swaps under load: {sent} calls, {handed_over} swaps handed queued requests over")


def _endless_pipeline(kernel: KernelSession) -> None:
    """An endless pipeline whose map announces the first record on stdout."""
    kernel.execute(
        "first = [True]\n"
        "def lookup(x):\n"
        "    if first:\n        first.pop()\n        print('records flowing', flush=True)\n"
        "    return sage_env.call_service('profile', str(x % 100))\n"
        "sage_env.from_source(itertools.count()).map(lookup).sink(lambda r: None)"
    )


def test_interrupt_during_submit_returns_within_2s(reset: KernelSession) -> None:
    kernel = reset
    kernel.execute(PROFILE)
    _endless_pipeline(kernel)
    msg_id = kernel.submit("%sage_submit\nafter_submit = True")
    kernel.wait_for_output(msg_id, "records flowing")

    start = time.monotonic()
    kernel.km.interrupt_kernel()
    reply = kernel.reply(msg_id, timeout=10)
    elapsed = time.monotonic() - start
    cell = Cell(msg_id, reply, kernel.wait_idle(msg_id))
    print(f"\ninterrupt during %sage_submit: execute_reply after {elapsed:.3f} s")
    assert elapsed < 2.0

    assert cell.status == "error"
    assert reply["content"]["ename"] == "JobInterrupted"
    job = kernel.value("sage_env.jobs[-1].name")
    assert cell.error is not None
    evalue = cell.error["evalue"]
    assert evalue.startswith(f"job {job!r} stopped after ") and evalue.endswith(" records")
    assert len(cell.error["traceback"]) == 1  # one line, no traceback
    assert kernel.value("'after_submit' in globals()") is False
    assert kernel.value("sage_env.jobs[-1].status") == "stopped"
    assert kernel.value(TASK_THREADS) == []
    assert kernel.execute('%sage_call profile "42"').result == "{'age': 62}"


def test_sink_output_lands_in_the_submitting_cell(reset: KernelSession) -> None:
    kernel = reset
    kernel.execute(
        "%%sage_service loud\nclass Loud:\n"
        "    def process(self, x):\n        print(f'service saw {x}')\n        return x\n"
    )
    cell = kernel.execute(
        "sage_env.from_batch(range(3))"
        ".map(lambda x: sage_env.call_service('loud', x))"
        ".sink(lambda x: print(f'sink got {x}'))\n"
        "%sage_submit --no-progress"
    )
    for x in range(3):
        assert f"service saw {x}\n" in cell.stdout
        assert f"sink got {x}\n" in cell.stdout

    # A background job prints after its cell went idle: still under that cell.
    submitting = kernel.execute(
        "gate = threading.Event()\n"
        "sage_env.from_batch(range(3)).map(lambda x: (gate.wait(10), x)[1])"
        ".sink(lambda x: print(f'late {x}'))\n"
        "job = %sage_submit --background"
    )
    assert "late" not in submitting.stdout
    waiting = kernel.execute("gate.set()\njob.wait(10)")
    assert waiting.result == "True"
    later = kernel.execute("%sage_call loud 'from another cell'")
    out = kernel.wait_for_output(submitting.msg_id, "late 2")
    assert out == "late 0\nlate 1\nlate 2\n"
    assert "late" not in waiting.stdout and "late" not in later.stdout
    assert later.stdout == "service saw from another cell\n"


@pytest.mark.parametrize("mode", ["background", "blocking"])
def test_restart_with_a_running_job_runs_close(
    fresh_kernel: KernelSession, tmp_path: Path, mode: str
) -> None:
    kernel = fresh_kernel
    flag = tmp_path / "closed.txt"
    kernel.execute("%load_ext sage_nb\nimport itertools")
    kernel.execute(
        PROFILE.replace(
            "    def process",
            f"    def close(self):\n        open({str(flag)!r}, 'w').write('closed')\n"
            "    def process",
        )
    )
    _endless_pipeline(kernel)
    option = " --background" if mode == "background" else ""
    msg_id = kernel.submit(f"%sage_submit --no-progress{option}")
    kernel.wait_for_output(msg_id, "records flowing")
    if mode == "background":
        kernel.wait_idle(msg_id)  # the job runs on; the cell has finished
    assert not flag.exists()

    process = kernel.km.provisioner.process  # type: ignore[union-attr]
    start = time.monotonic()
    kernel.km.restart_kernel(now=False)
    elapsed = time.monotonic() - start
    print(f"\nrestart ({mode} job running): {elapsed:.3f} s, exit code {process.returncode}")

    assert process.returncode == 0  # it exited by itself: neither SIGTERM (-15) nor SIGKILL
    assert flag.read_text() == "closed"
    kernel.kc.wait_for_ready(timeout=60)
    assert kernel.execute("'sage_env' in globals()").result == "False"
