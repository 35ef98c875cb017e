"""This package's version: the one place it is written (pyproject.toml reads it; the engine's
manifests say it)."""

__version__ = "0.1.0"
