"""Services, functions and cross-process signals shared by the backend tests.

Services may run in a Ray actor, so tests cannot share Python objects (an Event, a list) with
them. ``Gate`` and ``Signal`` use Unix sockets instead: they work the same between threads of
this process and between this process and an actor, and every wait has a timeout.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
from typing import Any

from sage_nb import MapFunction

#: Longest any test waits for something that should happen soon (Ray calls included).
WAIT = 30.0


class Gate:
    """Closed until ``open()``; ``wait()`` blocks (in any process) until it opens.

    A closed gate is a listening Unix socket that never accepts: a waiter connects and blocks
    in ``recv``. Opening closes the listener, which resets every waiting connection and
    refuses later ones, so the gate stays open.
    """

    def __init__(self, path: str, server: socket.socket | None = None) -> None:
        self.path = path
        self._server = server

    @classmethod
    def create(cls, directory: str) -> Gate:
        path = os.path.join(directory, "gate")
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(path)
        server.listen(128)
        return cls(path, server)

    def open(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def wait(self, timeout: float = WAIT) -> bool:
        """True once the gate is open, False after ``timeout`` seconds."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            try:
                s.connect(self.path)
            except (FileNotFoundError, ConnectionRefusedError):
                return True
            try:
                s.recv(1)
            except (ConnectionResetError, BrokenPipeError):
                return True
            except TimeoutError:
                return False
            return True

    def __reduce__(self) -> tuple[Any, ...]:
        return (Gate, (self.path,))


class Signal:
    """Counts ``set()`` calls from any process; ``wait()`` consumes one (Unix datagrams)."""

    def __init__(self, path: str, receiver: socket.socket | None = None) -> None:
        self.path = path
        self._receiver = receiver

    @classmethod
    def create(cls, directory: str, name: str = "signal") -> Signal:
        path = os.path.join(directory, name)
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        receiver.bind(path)
        return cls(path, receiver)

    def set(self, message: str = "") -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(message.encode(), self.path)

    def wait(self, timeout: float = WAIT) -> str | None:
        """The next message, or None after ``timeout`` seconds."""
        assert self._receiver is not None, "wait() on the side that created the signal"
        self._receiver.settimeout(timeout)
        try:
            return self._receiver.recv(4096).decode()
        except TimeoutError:
            return None

    def close(self) -> None:
        if self._receiver is not None:
            self._receiver.close()

    def __reduce__(self) -> tuple[Any, ...]:
        return (Signal, (self.path,))


class Rendezvous:
    """A short-path temporary directory with gates and signals, removed by ``close()``."""

    def __init__(self) -> None:
        # Unix socket paths are limited to ~107 bytes: not under pytest's long tmp_path.
        self.directory = tempfile.mkdtemp(prefix="sg", dir="/tmp")
        self.gates: list[Gate] = []
        self.signals: list[Signal] = []

    def gate(self) -> Gate:
        gate = Gate.create(self.directory)
        self.gates.append(gate)
        return gate

    def signal(self, name: str = "signal") -> Signal:
        signal = Signal.create(self.directory, f"{name}{len(self.signals)}")
        self.signals.append(signal)
        return signal

    def close(self) -> None:
        for gate in self.gates:
            gate.open()
        for signal in self.signals:
            signal.close()
        shutil.rmtree(self.directory, ignore_errors=True)


# -- services --------------------------------------------------------------------------------
class Echo:
    """``process(x)`` returns x; other methods for ``method=``, kwargs and failures."""

    def process(self, x: Any = None, **kw: Any) -> Any:
        return (x, kw) if kw else x

    def double(self, x: int) -> int:
        return 2 * x

    def fail(self, x: Any) -> Any:
        raise ValueError(f"bad input {x!r}")

    def pid(self) -> int:
        return os.getpid()

    async def later(self, x: int) -> int:
        return x + 1

    def make_lock(self) -> Any:
        return threading.Lock()


class Recorder:
    """Records what it ran; ``block(x)`` signals ``entered`` and waits for ``gate``."""

    def __init__(self, gate: Gate, entered: Signal) -> None:
        self.gate = gate
        self.entered = entered
        self.ran: list[Any] = []

    def block(self, x: Any) -> Any:
        self.ran.append(x)
        self.entered.set(str(x))
        self.gate.wait()
        return x

    def process(self, x: Any) -> Any:
        self.ran.append(x)
        return x

    def seen(self) -> list[Any]:
        return list(self.ran)


class Score:
    def process(self, x: int) -> int:
        return 10 * x


class Profile:
    """Calls ``score`` from inside the service: a nested call."""

    def process(self, x: int) -> dict[str, int]:
        return {"x": x, "score": self.call_service("score", x)}  # type: ignore[attr-defined]


# -- operator functions ----------------------------------------------------------------------
class Enrich(MapFunction):
    """Calls ``profile`` (which calls ``score``) for every record."""

    def execute(self, record: int) -> dict[str, int]:
        return self.call_service("profile", record, timeout=WAIT)  # type: ignore[no-any-return]


class EnrichAsync(MapFunction):
    def execute(self, record: int) -> dict[str, int]:
        return self.call_service_async("profile", record, timeout=WAIT).result(WAIT)  # type: ignore[no-any-return]


#: Bigger than the Ray backend's ``wire.LARGE``, so these travel beside the frame.
BIG = 3 << 20


def big(record: int) -> bytes:
    return bytes([record % 256]) * BIG


class BigEcho(MapFunction):
    """Sends ``big(record)`` to ``echo`` sync and async; returns whether both came back whole."""

    def execute(self, record: int) -> bool:
        blob = big(record)
        back = self.call_service("echo", blob, timeout=WAIT)
        later = self.call_service_async("echo", blob, timeout=WAIT).result(WAIT)
        return bool(back == blob and later == blob)


class WhoAmI(MapFunction):
    """Tags a record with the instance (process and index) that saw it."""

    def execute(self, record: Any) -> tuple[Any, tuple[int, int]]:
        return record, (os.getpid(), self.ctx.index)


class FailOn(MapFunction):
    def __init__(self, bad: int = 13) -> None:
        self.bad = bad

    def execute(self, record: int) -> int:
        if record == self.bad:
            raise ZeroDivisionError(f"cannot take {record}")
        return record
