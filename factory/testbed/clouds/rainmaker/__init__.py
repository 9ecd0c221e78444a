"""A simulated ESP RainMaker claiming service: host-driven claiming as seed 001 describes
it, for the rainmaker upstream and the RainMaker CLI (factory sim-cloud rainmaker)."""
