"""The station's HTTP edge (aiohttp): API, Ioto serialization endpoint, problem responses."""
