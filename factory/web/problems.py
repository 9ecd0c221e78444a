"""RFC 9457 problem details, made in one place.

Each exception class carries its HTTP status; one middleware turns any of them, aiohttp's own
HTTP errors and the journal's errors into an `application/problem+json` response.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from factory.issuing import InvalidField
from factory.journal.errors import (
    AlreadyVoided,
    BatchInterrupted,
    IdempotencyConflict,
    InvalidData,
    JournalError,
    JournalUnavailable,
    TokenExists,
    UnitNotFound,
)
from factory.problem_types import TYPE_BASE

log = logging.getLogger("factory.web")
CONTENT_TYPE = "application/problem+json"


class Problem(Exception):
    """An error answer: status, a short title, and a detail saying what to do."""

    status = 500
    title = "Internal error"
    slug = "internal"
    close = False  # whether the connection is closed after the answer

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail, self.extra = detail, extra
        self.headers: dict[str, str] = {}

    def body(self, instance: str) -> dict[str, Any]:
        return {"type": TYPE_BASE + self.slug, "title": self.title, "status": self.status,
                "detail": self.detail, "instance": instance, **self.extra}


class BadRequest(Problem):
    status, title, slug = 400, "Bad request", "bad-request"


class Unauthorized(Problem):
    status, title, slug = 401, "Unauthorized", "unauthorized"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.headers["WWW-Authenticate"] = 'Bearer realm="factory-station"'


class Forbidden(Problem):
    status, title, slug = 403, "Forbidden", "forbidden"


class NotFound(Problem):
    status, title, slug = 404, "Not found", "not-found"


class RequestTimeout(Problem):
    status, title, slug = 408, "Request timeout", "request-timeout"
    close = True  # the rest of a slow body is not waited for


class Conflict(Problem):
    status, title, slug = 409, "Conflict", "conflict"


class Unprocessable(Problem):
    status, title, slug = 422, "Invalid field", "invalid-field"


class Unavailable(Problem):
    status, title, slug = 503, "Journal unavailable", "journal-unavailable"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.headers["Retry-After"] = "5"


class CenterUnavailable(Problem):
    status, title, slug = 503, "Fleet center unavailable", "fleet-center-unavailable"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.headers["Retry-After"] = "5"


def translate(exc: Exception) -> Problem | None:
    """Map a domain error to the problem that answers it."""
    if isinstance(exc, (InvalidField, InvalidData)):
        return Unprocessable(f"{exc.field}: {exc.reason}", field=exc.field)
    if isinstance(exc, UnitNotFound):
        return NotFound(str(exc))
    if isinstance(exc, (AlreadyVoided, TokenExists)):
        return Conflict(str(exc))
    if isinstance(exc, IdempotencyConflict):
        return Unprocessable(str(exc), field="Idempotency-Key")
    if isinstance(exc, BatchInterrupted):  # it says itself what was stored
        return Unavailable(str(exc))
    if isinstance(exc, JournalUnavailable):
        return Unavailable(f"{exc}; nothing was recorded, retry later")
    if isinstance(exc, JournalError):
        return Conflict(str(exc))
    return None


def _from_http(exc: web.HTTPException, request: web.Request) -> Problem:
    problem = Problem(exc.text if exc.text and not exc.text.startswith(f"{exc.status}:")
                      else exc.reason)
    problem.status, problem.title = exc.status, exc.reason
    problem.slug = exc.reason.lower().replace(" ", "-")
    if exc.status == 404:
        problem.detail = f"no route {request.path}; see /api/v1/openapi.json"
    elif exc.status == 405:
        allowed = exc.headers.get("Allow", "")
        problem.detail = f"{request.method} is not allowed on {request.path}; allowed: {allowed}"
        problem.headers["Allow"] = allowed
    elif exc.status == 413:
        limit_text = (exc.text or "").rstrip(".")
        problem.detail = f"{limit_text}; send a smaller body (max_body_bytes in the config)"
    return problem


def response(problem: Problem, request: web.Request) -> web.Response:
    """The problem as a JSON response."""
    answer = web.Response(status=problem.status, text=json.dumps(problem.body(request.path)),
                          content_type=CONTENT_TYPE, headers=problem.headers)
    if problem.close:
        answer.force_close()
    return answer


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves the station as a problem body."""
    try:
        return await handler(request)
    except Problem as problem:
        return response(problem, request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return response(_from_http(exc, request), request)
    except Exception as exc:
        mapped = translate(exc)
        if mapped is not None:
            return response(mapped, request)
        log.exception("unexpected error on %s %s", request.method, request.path)
        return response(Problem("the station hit an unexpected error; it is in the "
                                "station log"), request)
