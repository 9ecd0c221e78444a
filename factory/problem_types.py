"""The namespace of problem types (RFC 9457 `type`): the station's HTTP API, the http upstream
contract and the problems an adapter makes up for its cloud's answers all use it, so callers
branch on one set of types."""

TYPE_BASE = "urn:factory-station:problem:"
