"""A simulated Particle cloud: the Cloud API endpoints the particle upstream and a customer's
setup use (factory sim-cloud particle)."""
