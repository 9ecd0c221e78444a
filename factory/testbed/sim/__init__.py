"""Simulated units for tests, benchmarks and demos: they speak the real wire protocols over
real pseudo-terminals, and can be told to misbehave."""
