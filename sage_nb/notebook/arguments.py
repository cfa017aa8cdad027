"""Reading a magic's line: its argument parser (whose usage line is the help and the fix in
every error), ``--max-queued``'s values, and ``%sage_call NAME ARGS``, whose arguments are
Python expressions evaluated in the notebook.

A mistake raises ``UsageError``: IPython shows it as one line, without a traceback.
"""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic_arguments import parse_argstring

__all__ = ["evaluate_call_arguments", "max_queued", "parse_line", "split_call_line", "usage_line"]


def usage_line(magic: Callable[..., Any]) -> str:
    """The usage line of a magic's argument parser, on one line: ``%sage_stop [--all] [name]``."""
    text = " ".join(magic.parser.format_usage().split())  # type: ignore[attr-defined]
    return text.removeprefix("::").strip()


def parse_line(magic: Callable[..., Any], line: str) -> Any:
    """``parse_argstring`` whose errors end with the usage line (the fix)."""
    try:
        return parse_argstring(magic, line)
    except UsageError as exc:
        raise UsageError(f"{exc}; usage: {usage_line(magic)}") from None
    except ValueError as exc:  # unbalanced quotes
        raise UsageError(f"cannot split {line!r}: {exc}; usage: {usage_line(magic)}") from None


def max_queued(text: str) -> int | None:
    """``--max-queued``: a positive int, or ``none`` for no limit."""
    if text.lower() == "none":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"takes a number >= 1 or none, got {text!r}")
    return value


_OPTION = re.compile(r"\s*(--method|-m|--timeout|-t)(?:\s+|=)(\S+)")


def split_call_line(line: str, usage: str) -> tuple[str | None, float | None, str, str]:
    """``[--method M] [--timeout S] NAME ARGS`` → (method, timeout, name, args text).

    Not argparse: the arguments are Python expressions, which may look like options or hold
    quotes and spaces that argparse would split.
    """
    method: str | None = None
    timeout: float | None = None
    rest = line
    while True:
        m = _OPTION.match(rest)
        if m is None:
            break
        option, value = m.groups()
        if option in ("--method", "-m"):
            method = value
        else:
            try:
                timeout = float(value)
            except ValueError:
                timeout = -1.0
            if not timeout > 0:
                raise UsageError(
                    f"--timeout takes seconds > 0, got {value!r}; e.g. --timeout 2.5"
                ) from None
        rest = rest[m.end() :]
    m = re.match(r"\s*([A-Za-z_]\w*)(.*)$", rest, re.S)
    if m is None:
        option = rest.split()[0] if rest.strip().startswith("-") else None
        what = f"unknown option {option}" if option else "a service name is missing"
        raise UsageError(f'{what}; usage: {usage}, e.g. %sage_call profile "42"')
    return method, timeout, m.group(1), m.group(2).strip()


def evaluate_call_arguments(
    text: str, namespace: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The positional and keyword arguments ``text`` holds, evaluated in ``namespace`` (the
    notebook's): separated by commas (``"42", fields=["age"]``) or else by spaces (``21 2``)."""
    if not text.strip():
        return (), {}

    def collect(*args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return args, kwargs

    candidates = [text]
    try:
        candidates.append(", ".join(shlex.split(text, posix=False)))
    except ValueError:
        pass
    for candidate in candidates:
        try:
            code = compile(f"__sage_collect__({candidate})", "<sage_call>", "eval")
        except SyntaxError:
            continue
        result: tuple[tuple[Any, ...], dict[str, Any]] = eval(
            code, namespace, {"__sage_collect__": collect}
        )
        return result
    raise UsageError(
        f"cannot read the arguments {text!r}: write Python expressions, "
        f'e.g. %sage_call profile "42"'
    )
