"""``python -m sage_nb.compat``: run a program written for SAGE, unchanged, on sage_nb.

::

    python -m sage_nb.compat [--force] program.py [args ...]
    python -m sage_nb.compat [--force] -m package.module [args ...]

The runner installs the aliases (``sage_nb.compat.aliases.install``), so SAGE's module paths
resolve to sage_nb in this process, and then runs the program as ``python`` would: as
``__main__``, with ``sys.argv`` holding the program and its arguments, the program's directory
(for ``-m``: the working directory) first on ``sys.path``. Everything after the program path
(or the module name) belongs to the program. The exit code is the program's; an exception it
does not catch prints its traceback without the runner's frames and exits with 1. One
difference: ``sys.argv[0]`` is the program's absolute path, like ``__file__`` (runpy sets both;
python keeps the path as given there).
"""

from __future__ import annotations

import os
import runpy
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

from .aliases import install

USAGE = """\
usage: python -m sage_nb.compat [--force] program.py [args ...]
       python -m sage_nb.compat [--force] -m module [args ...]

Run a program written for SAGE on sage_nb: SAGE's module paths (sage.kernel.api.*,
sage.common.core.functions, sage.foundation, sage.runtime, ...) resolve to sage_nb.compat
in this process only.

  program.py   the program to run as __main__; it and everything after it are its sys.argv
  -m module    run a module as `python -m module` does; what follows are its arguments
  --force      run even where a real 'sage' package (SAGE, SageMath) is installed: sage_nb's
               modules take precedence over it in this process
  -h, --help   show this help and exit
"""
#: What ``python`` itself exits with for a usage error or a program file it cannot open.
USAGE_ERROR = 2


class UsageError(Exception):
    """The runner's own arguments are wrong (not the program's)."""


@dataclass(frozen=True)
class Invocation:
    """What to run: a program path or a module name, and the arguments that are its own."""

    target: str
    is_module: bool
    args: tuple[str, ...]
    force: bool


def parse(argv: Sequence[str]) -> Invocation | None:
    """The runner's options, up to the program (``None``: help was asked for).

    Raises
    ------
    UsageError
        No program, an unknown option, or ``-m`` without a module name.
    """
    force = False
    rest = list(argv)
    while rest:
        arg = rest.pop(0)
        if arg in ("-h", "--help"):
            return None
        if arg == "--force":
            force = True
        elif arg == "-m":
            if not rest:
                raise UsageError("-m needs a module name: python -m sage_nb.compat -m pkg.mod")
            return Invocation(rest[0], True, tuple(rest[1:]), force)
        elif arg == "--":
            break
        elif arg.startswith("-") and arg != "-":
            msg = f"unknown option {arg!r} (options of the program go after its path)"
            raise UsageError(msg)
        else:
            return Invocation(arg, False, tuple(rest), force)
    if not rest:
        raise UsageError("no program given")
    return Invocation(rest[0], False, tuple(rest[1:]), force)


def _program_frames(tb: TracebackType | None) -> TracebackType | None:
    """``tb`` without its leading frames of the runner and of runpy."""
    ours = {os.path.abspath(__file__), os.path.abspath(runpy.__file__)}

    def is_ours(filename: str) -> bool:
        return filename == "<frozen runpy>" or os.path.abspath(filename) in ours  # 3.11+ freezes

    while tb is not None and is_ours(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    return tb


def _put_first_on_path(directory: str) -> None:
    # `python -m sage_nb.compat` put the working directory first; `python program.py` would
    # have put the program's directory there instead.
    safe_path = getattr(sys.flags, "safe_path", False)
    if sys.path and not safe_path and sys.path[0] == os.getcwd():
        sys.path[0] = directory
    else:
        sys.path.insert(0, directory)


def run(call: Invocation) -> int:
    """Install the aliases and run ``call`` as ``__main__``; the exit code.

    ``SystemExit`` (and ``KeyboardInterrupt``) raised by the program pass through.
    """
    try:
        install(force=call.force)
    except RuntimeError as exc:
        print(f"sage_nb.compat: {exc}", file=sys.stderr)
        return USAGE_ERROR
    sys.argv = [call.target, *call.args]
    try:
        if call.is_module:
            runpy.run_module(call.target, run_name="__main__", alter_sys=True)
        else:
            path = os.path.abspath(call.target)  # python's __main__.__file__ is absolute too
            if os.path.isfile(path):  # a directory or zip file: run_path puts it on sys.path
                _put_first_on_path(os.path.dirname(path))
            runpy.run_path(path, run_name="__main__")
    except Exception as exc:
        tb = _program_frames(exc.__traceback__)
        if tb is None and isinstance(exc, ImportError):  # runpy found no such module
            print(f"{sys.executable}: {exc}", file=sys.stderr)
        else:
            sys.excepthook(type(exc), exc.with_traceback(tb), tb)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sage_nb.compat``: parse ``argv`` (default ``sys.argv[1:]``) and run.

    Parameters
    ----------
    argv : sequence of str, optional
        The runner's arguments: ``[--force] program.py [args ...]`` or
        ``[--force] -m module [args ...]``.

    Returns
    -------
    int
        The program's exit code (0, or 1 after an uncaught exception); 2 for a usage error,
        a program file that does not exist, or a real ``sage`` in the way without ``--force``.

    Examples
    --------
    >>> from sage_nb.compat.__main__ import main
    >>> main(["--help"])  # doctest: +ELLIPSIS
    usage: python -m sage_nb.compat [--force] program.py [args ...]
    ...
    0
    """
    try:
        call = parse(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        print(f"sage_nb.compat: {exc}\n\n{USAGE}", file=sys.stderr, end="")
        return USAGE_ERROR
    if call is None:
        print(USAGE, end="")
        return 0
    if not call.is_module and not os.path.exists(call.target):
        path = os.path.abspath(call.target)
        msg = f"sage_nb.compat: can't open file {path!r}: [Errno 2] No such file or directory"
        print(msg, file=sys.stderr)
        return USAGE_ERROR
    return run(call)


if __name__ == "__main__":
    sys.exit(main())
