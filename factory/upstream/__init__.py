"""Upstreams: where the station registers and pre-claims its units. `adapter` is the interface
every upstream implements; `http` speaks docs/upstream-http.md; `backoff` says when to retry."""

from factory.upstream.adapter import (
    Certificate,
    CertificateInfo,
    ClaimStatus,
    ConflictError,
    DeviceStatus,
    PermanentError,
    RegisterResult,
    Registration,
    RetryableError,
    Upstream,
    UpstreamError,
)

__all__ = [
    "Certificate",
    "CertificateInfo",
    "ClaimStatus",
    "ConflictError",
    "DeviceStatus",
    "PermanentError",
    "RegisterResult",
    "Registration",
    "RetryableError",
    "Upstream",
    "UpstreamError",
]
