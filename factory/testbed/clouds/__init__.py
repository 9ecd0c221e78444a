"""Simulated device clouds that cannot run here, for demos and tests (factory sim-cloud)."""
