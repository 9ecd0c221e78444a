"""The reference registry: a small real server implementing docs/upstream-http.md, so
registration, claiming, pre-claim and certificates run end to end on one machine."""
