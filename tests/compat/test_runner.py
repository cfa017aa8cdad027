"""``python -m sage_nb.compat``: runs a SAGE program unchanged, as ``python`` would run it.

The runs are real interpreters (``sys.executable -m sage_nb.compat``) started in an empty
directory; the argument parsing and the usage errors are checked in this process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from sage_nb.compat import aliases
from sage_nb.compat.__main__ import Invocation, main, parse

PROGRAM = """\
import sys

import helper  # next to the program: its directory comes first on sys.path
from sage.common.core.functions import MapFunction, SinkFunction
from sage.kernel.api.local_environment import LocalEnvironment


class Double(MapFunction):
    def execute(self, data):
        return data * 2


class Collect(SinkFunction):
    def __init__(self, out, **kwargs):
        super().__init__(**kwargs)
        self.out = out

    def execute(self, data):
        self.out.append(data)


seen = []
env = LocalEnvironment("runner")
env.from_batch([1, 2, 3], delay=0).map(Double).sink(Collect, seen)
env.submit(autostop=True)
env.close()
print("records", seen)
print("argv", sys.argv)
print("main", __name__, helper.NAME, sys.path[0])
sys.exit(int(sys.argv[-1]))
"""

FAILING = """\
def fail(value):
    raise ValueError(f"boom {value}")


fail(42)
"""


def compat(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m sage_nb.compat *args`` in ``cwd``, with ``env`` added to the environment."""
    return subprocess.run(
        [sys.executable, "-m", "sage_nb.compat", *args],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """An empty working directory."""
    work = tmp_path / "work"
    work.mkdir()
    return work


def test_runs_a_sage_program_with_its_own_arguments_and_exit_code(
    tmp_path: Path, work: Path
) -> None:
    programs = tmp_path / "programs"
    programs.mkdir()
    (programs / "helper.py").write_text("NAME = 'helper'\n")
    program = programs / "program.py"
    program.write_text(PROGRAM)
    own = ["--force", "-m", "x", "--help", "3"]  # the program's, not the runner's

    done = compat(str(program), *own, cwd=work)

    assert done.returncode == 3, done.stderr
    assert done.stdout.splitlines() == [
        "records [2, 4, 6]",
        f"argv {[str(program), *own]}",
        f"main __main__ helper {programs}",
    ]


def test_dash_m_runs_a_module_as_main(work: Path) -> None:
    (work / "pkg").mkdir()
    (work / "pkg" / "__init__.py").write_text("")
    (work / "pkg" / "mod.py").write_text(
        textwrap.dedent(
            """\
            import sys
            from sage.foundation import MapFunction
            from sage_nb.compat import MapFunction as ours
            print(__name__, sys.argv[1:], MapFunction is ours)
            """
        )
    )

    done = compat("-m", "pkg.mod", "a", "-b", cwd=work)

    assert done.returncode == 0, done.stderr
    assert done.stdout == "__main__ ['a', '-b'] True\n"


def test_a_missing_program_is_a_message_and_exit_code_2(work: Path) -> None:
    done = compat("missing.py", "arg", cwd=work)

    assert done.returncode == 2
    assert done.stdout == ""
    assert "can't open file" in done.stderr and "missing.py" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_program_s_traceback_is_the_one_python_prints(work: Path) -> None:
    program = work / "failing.py"
    program.write_text(FAILING)
    plain = subprocess.run(
        [sys.executable, str(program)], cwd=work, capture_output=True, text=True, timeout=60
    )

    done = compat(str(program), cwd=work)

    assert done.returncode == plain.returncode == 1
    assert "ValueError: boom 42" in plain.stderr
    assert done.stderr == plain.stderr


def test_a_real_sage_stops_the_runner_unless_forced(tmp_path: Path, work: Path) -> None:
    (tmp_path / "site" / "sage").mkdir(parents=True)
    (tmp_path / "site" / "sage" / "__init__.py").write_text("")
    program = work / "program.py"
    program.write_text("print('ran')\n")

    done = compat(str(program), cwd=work, PYTHONPATH=str(tmp_path / "site"))

    assert done.returncode == 2
    assert done.stdout == ""
    assert "real 'sage' package" in done.stderr and "--force" in done.stderr


# -- in this process: the runner's own arguments ------------------------------------------------
@pytest.fixture
def runner_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``main()`` may install the aliases and set ``sys.argv``: both are undone."""
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    yield
    aliases.uninstall()


def test_options_end_at_the_program() -> None:
    assert parse(["--force", "p.py", "--force", "-m"]) == Invocation(
        "p.py", False, ("--force", "-m"), True
    )
    assert parse(["-m", "pkg.mod", "-h"]) == Invocation("pkg.mod", True, ("-h",), False)
    assert parse(["--", "-odd.py", "x"]) == Invocation("-odd.py", False, ("x",), False)
    assert parse(["p.py", "--help"]) == Invocation("p.py", False, ("--help",), False)
    assert parse(["--help", "p.py"]) is None


def test_help_prints_the_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m sage_nb.compat [--force] program.py [args ...]")
    assert "-m module" in out and "--force" in out


@pytest.mark.parametrize(
    ("argv", "says"),
    [([], "no program given"), (["--bogus", "p.py"], "unknown option '--bogus'"), (["-m"], "-m")],
)
def test_usage_errors_exit_2_with_the_usage(
    capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sage_nb.compat: {says}")
    assert "usage: python -m sage_nb.compat" in err


def test_dash_m_of_a_missing_module_says_so_like_python(
    runner_state: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--force", "-m", "no_such_module_for_sage_nb"]) == 1
    err = capsys.readouterr().err
    assert err == f"{sys.executable}: No module named no_such_module_for_sage_nb\n"
    assert "Traceback" not in err
