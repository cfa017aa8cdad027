"""Helpers of the notebook-layer tests: ``KernelSession``, a kernel started with jupyter_client.

``KernelSession.execute`` sends a cell and collects its iopub messages until the kernel goes
idle; messages that belong to other cells (output of a background job) are kept per cell, and
``wait_for_output`` waits (bounded) for them. Nothing here sleeps: every wait is on a kernel
message, with a deadline. A wait that fails reports why: the kernel died, or the stacks of
its threads (dumped by faulthandler on SIGUSR1).
"""

from __future__ import annotations

import contextlib
import glob
import os
import queue
import signal
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: Seconds any single wait for a kernel message may take before the test fails.
KERNEL_WAIT = 30.0


@dataclass
class Cell:
    """What one executed cell produced."""

    msg_id: str
    reply: dict[str, Any]
    messages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def status(self) -> str:
        return str(self.reply["content"]["status"])

    def stream(self, name: str = "stdout") -> str:
        return "".join(
            m["content"]["text"]
            for m in self.messages
            if m["msg_type"] == "stream" and m["content"]["name"] == name
        )

    @property
    def stdout(self) -> str:
        return self.stream("stdout")

    @property
    def stderr(self) -> str:
        return self.stream("stderr")

    @property
    def result(self) -> str | None:
        """The ``text/plain`` of the cell's execute_result, if any."""
        for m in self.messages:
            if m["msg_type"] == "execute_result":
                return str(m["content"]["data"]["text/plain"])
        return None

    @property
    def error(self) -> dict[str, Any] | None:
        for m in self.messages:
            if m["msg_type"] == "error":
                return dict(m["content"])
        return None


class KernelSession:
    """A kernel started by jupyter_client, with helpers that never sleep: every wait is on a
    kernel message, bounded by ``KERNEL_WAIT``."""

    def __init__(self, cwd: str | None = None) -> None:
        from jupyter_client.manager import KernelManager

        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel(cwd=cwd)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)
        #: iopub messages seen so far, by the msg_id of the request they belong to.
        self.by_parent: dict[str, list[dict[str, Any]]] = defaultdict(list)
        #: shell replies read while waiting for another one.
        self.replies: dict[str, dict[str, Any]] = {}
        # A kernel that stops answering dumps its threads' stacks here on SIGUSR1 (see
        # _diagnose), so a failed wait says where the kernel was stuck.
        fd, self._stacks = tempfile.mkstemp(prefix="sage_nb-kernel-", suffix=".txt")
        os.close(fd)
        self.reply(
            self.kc.execute(
                "def _sage_nb_test_dump():\n"
                "    import faulthandler, signal\n"
                f"    faulthandler.register(signal.SIGUSR1, open({self._stacks!r}, 'w'), True)\n"
                "_sage_nb_test_dump()\ndel _sage_nb_test_dump",
                silent=True,
                store_history=False,
            )
        )

    # -- reading iopub -------------------------------------------------------------------------
    def _next_iopub(self, deadline: float) -> dict[str, Any]:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no kernel message in time")
        try:
            msg: dict[str, Any] = self.kc.get_iopub_msg(timeout=left)
        except queue.Empty:
            raise TimeoutError("no kernel message in time") from None
        parent = msg["parent_header"].get("msg_id")
        if parent:
            self.by_parent[parent].append(msg)
        return msg

    def wait_for(
        self, parent: str, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float
    ) -> list[dict[str, Any]]:
        """Read iopub until ``predicate(messages of parent)`` holds; return those messages."""
        deadline = time.monotonic() + timeout
        while not predicate(self.by_parent[parent]):
            self._next_iopub(deadline)
        return self.by_parent[parent]

    def wait_for_output(
        self, parent: str, text: str, timeout: float = KERNEL_WAIT, *, name: str = "stdout"
    ) -> str:
        """Wait until stream ``name`` of request ``parent`` contains ``text``; return it."""

        def stream(msgs: list[dict[str, Any]]) -> str:
            return "".join(
                m["content"]["text"]
                for m in msgs
                if m["msg_type"] == "stream" and m["content"]["name"] == name
            )

        self.wait_for(parent, lambda msgs: text in stream(msgs), timeout)
        return stream(self.by_parent[parent])

    def wait_idle(self, parent: str, timeout: float = KERNEL_WAIT) -> list[dict[str, Any]]:
        return self.wait_for(parent, _is_idle, timeout)

    # -- running cells ---------------------------------------------------------------------
    def submit(self, code: str) -> str:
        """Send a cell without waiting; returns its msg_id."""
        return str(self.kc.execute(code, allow_stdin=False, stop_on_error=False))

    def reply(self, msg_id: str, timeout: float = KERNEL_WAIT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while msg_id not in self.replies:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"no execute_reply for {msg_id} in {timeout} s; {self._output(msg_id)}"
                    f"{self._diagnose()}"
                )
            try:
                msg: dict[str, Any] = self.kc.get_shell_msg(timeout=left)
            except queue.Empty:
                continue
            self.replies[msg["parent_header"].get("msg_id")] = msg
        return self.replies.pop(msg_id)

    def finish(self, msg_id: str, timeout: float = KERNEL_WAIT) -> Cell:
        reply = self.reply(msg_id, timeout)
        messages = self.wait_idle(msg_id, timeout)
        return Cell(msg_id, reply, list(messages))

    def execute(self, code: str, timeout: float = KERNEL_WAIT, *, ok: bool = True) -> Cell:
        """Run a cell and wait until it is idle; with ``ok``, fail the test on an error."""
        cell = self.finish(self.submit(code), timeout)
        if ok and cell.status != "ok":
            err = cell.error or {}
            tb = "\n".join(err.get("traceback", []))
            raise AssertionError(
                f"cell failed: {err.get('ename')}: {err.get('evalue')}\n{cell.stderr}{tb}"
            )
        return cell

    def value(self, expression: str) -> Any:
        """Evaluate ``expression`` in the kernel; its repr is read back with ast.literal_eval."""
        import ast

        cell = self.execute(expression)
        assert cell.result is not None, f"{expression!r} gave no result"
        return ast.literal_eval(cell.result)

    def _output(self, msg_id: str) -> str:
        """What the cell printed so far (an "Exception ignored" on stderr tells a lot)."""
        with contextlib.suppress(TimeoutError):
            while True:  # what has arrived already
                self._next_iopub(time.monotonic() + 0.1)
        streams = [
            f"{m['content']['name']}: {m['content']['text']!r}"
            for m in self.by_parent[msg_id]
            if m["msg_type"] == "stream"
        ]
        return "the cell printed:\n" + "\n".join(streams or ["nothing"]) + "\n"

    def _diagnose(self) -> str:
        """Why the kernel did not answer: dead, or alive with these thread stacks."""
        process = getattr(self.km.provisioner, "process", None)
        if not self.km.is_alive():
            code = process.poll() if process is not None else None
            return f"the kernel process is gone (exit code {code})"
        if process is None:
            return "the kernel is alive (no process to ask for its stacks)"
        os.kill(process.pid, signal.SIGUSR1)
        # The failure path only: give faulthandler (it writes from its signal handler) a
        # bounded moment to write every thread.
        pause = threading.Event()
        deadline = time.monotonic() + 2.0
        while not os.path.getsize(self._stacks) and time.monotonic() < deadline:
            pause.wait(0.05)
        pause.wait(0.2)
        with open(self._stacks) as f:
            stacks = f.read()
        return f"the kernel is alive; {_sigint_state(process.pid)}; its threads:\n{stacks}"

    def shutdown(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)
        with contextlib.suppress(OSError):
            os.unlink(self._stacks)


def _sigint_state(pid: int) -> str:
    """Where SIGINT stands in process ``pid`` (Linux /proc): pending, blocked by which threads,
    ignored or caught; so a lost interrupt shows whether it ever reached Python."""
    bit = 1 << (signal.SIGINT - 1)
    pending, blocked, handling = [], [], ""
    for status in sorted(glob.glob(f"/proc/{pid}/task/*/status")):
        with contextlib.suppress(OSError), open(status) as f:
            fields = dict(line.split(":\t", 1) for line in f.read().splitlines() if ":\t" in line)
            name = f"{status.split('/')[4]} {fields['Name'].strip()}"
            if int(fields["SigPnd"], 16) & bit or int(fields["ShdPnd"], 16) & bit:
                pending.append(name)
            if int(fields["SigBlk"], 16) & bit:
                blocked.append(name)
            if int(fields["SigIgn"], 16) & bit:
                handling = "ignored"
            elif int(fields["SigCgt"], 16) & bit:
                handling = "caught"
    return (
        f"SIGINT is {handling or 'default'}, pending in {pending or 'no thread'}, "
        f"blocked in {blocked or 'no thread'}"
    )


def _is_idle(msgs: list[dict[str, Any]]) -> bool:
    return any(
        m["msg_type"] == "status" and m["content"]["execution_state"] == "idle" for m in msgs
    )
