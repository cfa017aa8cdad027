"""Writes docs/api.md from the docstrings of sage_nb's public names.

python docs/gen_api.py          # rewrite docs/api.md
python docs/gen_api.py --check  # exit 1 if docs/api.md is out of date (a test runs this)
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import sage_nb
from sage_nb.runtime.proxy import ProxyManager

OUT = Path(__file__).with_name("api.md")

#: (heading, objects) in the order the page shows them.
SECTIONS: list[tuple[str, list[object]]] = [
    (
        "Environments",
        [
            sage_nb.LocalEnvironment,
            "sage_nb.backends.ray.RemoteEnvironment",
            sage_nb.BaseEnvironment,
            "sage_nb.api.pipeline.PipelineBuilder",
            "sage_nb.core.semantics.Semantics",
        ],
    ),
    (
        "Streams",
        [
            "sage_nb.api.datastream.DataStream",
            "sage_nb.api.datastream.ConnectedStreams",
            "sage_nb.api.datastream.PrintSink",
        ],
    ),
    (
        "Functions",
        [
            sage_nb.MapFunction,
            sage_nb.FilterFunction,
            sage_nb.FlatMapFunction,
            sage_nb.SinkFunction,
            sage_nb.KeyByFunction,
            sage_nb.SourceFunction,
            sage_nb.BatchFunction,
            sage_nb.CoMapFunction,
            sage_nb.JoinFunction,
            sage_nb.StopSignal,
            sage_nb.BaseFunction,
            "sage_nb.core.identity.ContextBound",
        ],
    ),
    ("Services", [sage_nb.BaseService]),
    ("Calls", [ProxyManager, sage_nb.ServiceFuture, sage_nb.RetryPolicy, sage_nb.HealthReport]),
    ("Jobs", [sage_nb.Job, sage_nb.DeadLetter]),
    (
        "Errors",
        [
            sage_nb.SageError,
            sage_nb.ServiceNotFoundError,
            sage_nb.ServiceExistsError,
            sage_nb.ServiceTimeoutError,
            sage_nb.ServiceCallError,
            sage_nb.ServiceUnavailableError,
            sage_nb.ServiceOverloadedError,
            sage_nb.OperatorError,
            sage_nb.JobCancelledError,
            "sage_nb.backends.ray.ServiceSerializationError",
            "sage_nb.backends.ray.RayConnectionError",
        ],
    ),
    (
        "SAGE compatibility (`sage_nb.compat`, see sage-compat.md)",
        [
            "sage_nb.compat.LocalEnvironment",
            "sage_nb.compat.CustomLogger",
            "sage_nb.compat.FlatMapFunction",
            "sage_nb.compat.FutureFunction",
            "sage_nb.compat.Collector",
            "sage_nb.compat.wrap_lambda",
            "sage_nb.compat.ensure_ray_initialized",
            "sage_nb.compat.aliases.install",
            "sage_nb.compat.aliases.uninstall",
            "sage_nb.compat.aliases.installed",
        ],
    ),
]


def _resolve(obj: object) -> object:
    if isinstance(obj, str):
        module, _, name = obj.rpartition(".")
        return getattr(__import__(module, fromlist=[name]), name)
    return obj


def _signature(obj: object) -> str:
    try:
        return str(inspect.signature(obj))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""


def _doc(obj: object) -> str:
    return inspect.cleandoc(obj.__doc__ or "").strip()


def _methods(cls: type) -> list[tuple[str, object]]:
    found = []
    for name, member in cls.__dict__.items():
        if name.startswith("_"):
            continue
        if isinstance(member, property):
            found.append((name, member))
        elif inspect.isfunction(member) or isinstance(member, (classmethod, staticmethod)):
            found.append((name, getattr(cls, name)))
    return found


def render() -> str:
    lines = [
        "# API reference",
        "",
        "Generated from the docstrings by `python docs/gen_api.py`; a test fails when this page",
        "and the code disagree. Magics are documented by `%sage_nb` and `%magic?` in a notebook.",
        "",
    ]
    for heading, objects in SECTIONS:
        lines += [f"## {heading}", ""]
        for raw in objects:
            obj = _resolve(raw)
            name = getattr(obj, "__name__", str(obj))
            kind = "class" if inspect.isclass(obj) else "function"
            lines += [f"### `{name}{_signature(obj) if kind == 'function' else ''}`", ""]
            if inspect.isclass(obj) and "__init__" in obj.__dict__:
                lines += [f"`{name}{_signature(obj)}`", ""]
            if doc := _doc(obj):
                lines += [doc, ""]
            if inspect.isclass(obj) and not issubclass(obj, BaseException):
                for mname, member in _methods(obj):
                    if isinstance(member, property):
                        lines.append(f"- **`{mname}`** (property): {_first(member)}")
                    else:
                        lines.append(f"- **`{mname}{_signature(member)}`**: {_first(member)}")
                lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _first(obj: object) -> str:
    doc = _doc(obj)
    return doc.split("\n\n")[0].replace("\n", " ") if doc else ""


def main() -> int:
    text = render()
    if "--check" in sys.argv:
        if not OUT.exists() or OUT.read_text() != text:
            print("docs/api.md is out of date: run python docs/gen_api.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
