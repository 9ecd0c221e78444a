"""A fleet of stations seen from one place: each station ships its journal to a central
PostgreSQL (`shipper.py`), which re-checks every chain and flags what does not add up
(`center.py`); the fleet view reads it (`view.py`)."""
