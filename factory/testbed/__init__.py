"""What stands in for the world on one machine: the reference registry and the simulated units.

They ship with the station for demos (`scripts/run`), development and tests, but they are not
the station: only the CLI, the scripts and the tests import them (an import contract in
pyproject.toml says so).
"""
