"""AWS errors translated, once, into the upstream exception family (factory/upstream/adapter.py).

Throttling, 5xx and broken connections are `RetryableError` (the outbox backs off; botocore's
own retries are switched off so that one schedule governs). Missing or refused credentials are
a `PermanentError` with status 401/403, which the outbox reads as "the station's fault, keep
every unit queued". Everything else the service refuses is a `PermanentError` for this unit.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
)

from factory.upstream.adapter import (
    ConflictError,
    PermanentError,
    RetryableError,
    UpstreamError,
)
from factory.upstream.backoff import parse_retry_after

RETRYABLE_CODES = frozenset({
    "ThrottlingException", "TooManyRequestsException", "Throttling", "RequestLimitExceeded",
    "ServiceUnavailableException", "ServiceUnavailable", "InternalFailureException",
    "InternalFailure", "InternalServerException", "InternalError", "RequestTimeout",
    "RequestTimeoutException",
})
# The credentials are missing, wrong, expired, or lack a permission: every unit alike.
CREDENTIAL_CODES = frozenset({
    "UnauthorizedException", "AccessDeniedException", "AccessDenied",
    "UnrecognizedClientException", "InvalidSignatureException", "InvalidClientTokenId",
    "ExpiredTokenException", "ExpiredToken", "SignatureDoesNotMatch",
})
_CREDENTIALS_HELP = ("check the AWS credentials the station runs with (environment, "
                     "AWS_PROFILE or the instance role) and that their IAM policy allows "
                     "the iot: actions listed in docs/upstream-aws.md")


def translate(exc: ClientError | BotoCoreError, where: str) -> UpstreamError:
    """The upstream error `exc` (raised by botocore during `where`) stands for."""
    if isinstance(exc, ClientError):
        return _client_error(exc, where)
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return PermanentError(f"{where}: no usable AWS credentials ({exc}); "
                              f"{_CREDENTIALS_HELP}", status=401)
    if isinstance(exc, NoRegionError):
        return PermanentError(f"{where}: no AWS region; set [upstream] region", status=401)
    if isinstance(exc, ParamValidationError):
        return PermanentError(f"{where}: the request does not fit the AWS IoT API ({exc})",
                              status=400)
    # Connection refused or reset, timeouts, a proxy in the way: the network, not the unit.
    return RetryableError(f"{where}: {type(exc).__name__}: {exc}")


def code_of(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _client_error(exc: ClientError, where: str) -> UpstreamError:
    error: dict[str, Any] = dict(exc.response.get("Error", {}))
    meta: dict[str, Any] = dict(exc.response.get("ResponseMetadata", {}))
    code, message = str(error.get("Code", "")), str(error.get("Message", "")) or "(no message)"
    status = int(meta.get("HTTPStatusCode", 0) or 0)
    reason = f"{where}: {code or 'error'} ({status}): {message}"
    problem = {"type": f"urn:aws:iot:error:{code}", "title": code, "status": status,
               "detail": message}
    if code in RETRYABLE_CODES or status in (408, 429) or status >= 500:
        headers = {k.lower(): v for k, v in dict(meta.get("HTTPHeaders", {})).items()}
        header = headers.get("retry-after")
        retry_after = (None if header is None
                       else parse_retry_after(str(header), now=datetime.now(UTC)))
        return RetryableError(reason, status=status or None, retry_after=retry_after)
    if code in CREDENTIAL_CODES or status in (401, 403):
        return PermanentError(f"{reason}; {_CREDENTIALS_HELP}",
                              status=status if status in (401, 403) else 403, problem=problem)
    if code == "ResourceAlreadyExistsException" or status == 409:
        return ConflictError(reason, status=409, problem=problem)
    return PermanentError(reason, status=status or 400, problem=problem)
