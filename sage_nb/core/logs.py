"""The console handler of sage_nb's loggers: ``env.set_console_log_level(level)``.

Every logger sage_nb uses is under ``sage_nb``: the runtime's modules and the ``self.logger``
of functions (``sage_nb.function.<name>``) and services (``sage_nb.service.<name>``). Until a
level is set, Python's defaults apply (warnings and errors on stderr when logging is not
configured).
"""

from __future__ import annotations

import logging
import threading

__all__ = ["LEVELS", "console_handler", "parse_level", "set_console_level"]

#: The level names ``set_console_level`` accepts.
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

_lock = threading.Lock()
_handler: logging.Handler | None = None


def parse_level(level: str | int) -> int:
    """A ``logging`` level from a name (any case) or a number; ValueError otherwise."""
    if isinstance(level, int) and not isinstance(level, bool):
        return level
    if isinstance(level, str) and level.upper() in LEVELS:
        return int(getattr(logging, level.upper()))
    raise ValueError(f"log level must be one of {', '.join(LEVELS)} or a number, got {level!r}")


def console_handler() -> logging.Handler:
    """The one stderr handler on the ``sage_nb`` logger (added on first use)."""
    global _handler
    with _lock:
        if _handler is None:
            _handler = logging.StreamHandler()
            _handler.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
            )
            logging.getLogger("sage_nb").addHandler(_handler)
        return _handler


def set_console_level(level: str | int) -> None:
    """Show records of ``level`` and above from sage_nb's loggers on stderr."""
    number = parse_level(level)
    console_handler().setLevel(number)
    logging.getLogger("sage_nb").setLevel(number)
