"""A simulated ThingsBoard: the REST endpoints the thingsboard upstream and a claiming
customer use (factory sim-cloud thingsboard)."""
