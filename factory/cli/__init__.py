"""`factory`: the command line for operators and engineers."""

from factory.cli.app import main

__all__ = ["main"]
