"""The version, in a module of its own: every floor may name it without importing the package
root (``scanner/__init__.py`` re-exports the public API, the top of the import graph)."""

__version__ = "0.1.0"
