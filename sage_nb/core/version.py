"""sage_nb's version, for every layer that shows it (the package re-exports it)."""

__version__ = "0.1.0"
