"""``CustomLogger``: SAGE's logger, on Python's ``logging``.

SAGE's programs build one per component (``CustomLogger("Pipeline")``, or with outputs
``CustomLogger([("console", "INFO"), ("app.log", "DEBUG")], name="app")``), log through it, and
call ``CustomLogger.disable_global_console_debug()`` at the top of a script to keep debug lines
off the console. Each logger is the stdlib logger ``sage_nb.custom.<name>`` with its own
handlers (it does not propagate, as in SAGE); files are opened relative to ``log_base_folder``.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, ClassVar

__all__ = ["CustomLogger", "get_logger"]

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _level(name: str | int) -> int:
    if isinstance(name, int):
        return name
    if str(name).upper() not in _LEVELS:
        raise ValueError(f"log level must be one of {', '.join(_LEVELS)}, got {name!r}")
    return int(getattr(logging, str(name).upper()))


class CustomLogger:
    """A named logger with console and file outputs, each at its own level.

    Parameters
    ----------
    name_or_outputs:
        The logger's name, or its outputs (as ``outputs``).
    outputs:
        ``[(target, level), ...]``: ``"console"`` or a file path. Default: the console at
        ``$SAGE_LOG_LEVEL`` (else WARNING).
    name:
        The name, when the first argument gave the outputs. Default ``"Logger"``.
    log_base_folder:
        Where relative file paths go.
    """

    _console_debug: ClassVar[bool] = True
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        name_or_outputs: str | list[tuple[str, str]] | None = None,
        outputs: list[tuple[str, str]] | None = None,
        name: str | None = None,
        log_base_folder: str | None = None,
    ) -> None:
        if isinstance(name_or_outputs, (list, tuple)):
            outputs = list(name_or_outputs)
        elif name_or_outputs is not None:
            name = name or name_or_outputs
        self.name = name or "Logger"
        self.log_base_folder = log_base_folder
        self.logger = logging.getLogger(f"sage_nb.custom.{self.name}")
        self.logger.propagate = False
        if outputs is None:
            outputs = [("console", os.environ.get("SAGE_LOG_LEVEL", "WARNING"))]
        self._outputs: list[tuple[str, str, logging.Handler]] = []
        with self._lock:
            for handler in list(self.logger.handlers):  # a logger of this name made before
                self.logger.removeHandler(handler)
                handler.close()
            for target, level in outputs:
                self.add_output(target, level)

    # -- outputs -----------------------------------------------------------------------------
    def add_output(self, target: str, level: str = "INFO") -> None:
        """Log to ``target`` ("console" or a file path) at ``level`` and above."""
        handler: logging.Handler
        if target == "console":
            handler = logging.StreamHandler()
        else:
            path = target
            if self.log_base_folder and not os.path.isabs(path):
                path = os.path.join(self.log_base_folder, path)
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            handler = logging.FileHandler(path, encoding="utf-8")
        handler.setLevel(_level(level))
        handler.setFormatter(logging.Formatter(_FORMAT))
        self.logger.addHandler(handler)
        self._outputs.append((target, str(level).upper(), handler))
        self._update_level()

    def remove_output(self, target_index_or_name: int | str) -> None:
        i = self._index(target_index_or_name)
        _, _, handler = self._outputs.pop(i)
        self.logger.removeHandler(handler)
        handler.close()
        self._update_level()

    def update_output_level(self, target_index_or_name: int | str, new_level: str) -> None:
        i = self._index(target_index_or_name)
        target, _, handler = self._outputs[i]
        handler.setLevel(_level(new_level))
        self._outputs[i] = (target, new_level.upper(), handler)
        self._update_level()

    def get_output_configs(self) -> list[dict[str, str]]:
        return [{"target": t, "level": lv} for t, lv, _ in self._outputs]

    def print_current_configs(self) -> None:
        for i, (target, level, _) in enumerate(self._outputs):
            print(f"{i}: {target} ({level})")

    def _index(self, key: int | str) -> int:
        if isinstance(key, int):
            if not 0 <= key < len(self._outputs):
                raise IndexError(f"no output {key} (this logger has {len(self._outputs)})")
            return key
        for i, (target, _, _) in enumerate(self._outputs):
            if target == key:
                return i
        raise ValueError(f"no output {key!r} (outputs: {[t for t, _, _ in self._outputs]})")

    def _update_level(self) -> None:
        levels = [h.level for _, _, h in self._outputs]
        self.logger.setLevel(min(levels) if levels else logging.CRITICAL + 1)

    # -- logging -----------------------------------------------------------------------------
    def debug(self, message: Any, *args: Any, **kwargs: Any) -> None:
        if CustomLogger._console_debug:
            self.logger.debug(message, *args, **kwargs)

    def info(self, message: Any, *args: Any, **kwargs: Any) -> None:
        self.logger.info(message, *args, **kwargs)

    def warning(self, message: Any, *args: Any, **kwargs: Any) -> None:
        self.logger.warning(message, *args, **kwargs)

    warn = warning

    def error(self, message: Any, *args: Any, exc_info: Any = False, **kwargs: Any) -> None:
        self.logger.error(message, *args, exc_info=exc_info, **kwargs)

    def exception(self, message: Any, *args: Any, **kwargs: Any) -> None:
        self.logger.error(message, *args, exc_info=True, **kwargs)

    def critical(self, message: Any, *args: Any, **kwargs: Any) -> None:
        self.logger.critical(message, *args, **kwargs)

    # -- class-wide --------------------------------------------------------------------------
    @staticmethod
    def get_available_levels() -> list[str]:
        return list(_LEVELS)

    @classmethod
    def get_logger(
        cls,
        name: str | None = None,
        *,
        level: str = "INFO",
        outputs: list[tuple[str, str]] | None = None,
        log_base_folder: str | None = None,
    ) -> logging.Logger:
        """A stdlib logger with the outputs of a ``CustomLogger`` of that name."""
        made = cls(outputs or [("console", level)], name=name, log_base_folder=log_base_folder)
        return made.logger

    @classmethod
    def disable_global_console_debug(cls) -> None:
        """Drop every ``debug`` message of every CustomLogger (SAGE's scripts call this first)."""
        cls._console_debug = False

    @classmethod
    def enable_global_console_debug(cls) -> None:
        cls._console_debug = True

    @classmethod
    def is_global_console_debug_enabled(cls) -> bool:
        return cls._console_debug

    def __repr__(self) -> str:
        outs = ", ".join(f"{t}:{lv}" for t, lv, _ in self._outputs)
        return f"<CustomLogger {self.name!r} [{outs}]>"


def get_logger(name: str | None = None) -> logging.Logger:
    """SAGE's ``sage.common.utils.logging.get_logger``: the stdlib logger of a CustomLogger."""
    return CustomLogger.get_logger(name)
