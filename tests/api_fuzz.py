"""Schemathesis against a running station or registry: each operation of an OpenAPI document
gets positive and negative examples, and every answer is checked against the document, for
5xx, and for an RFC 9457 problem body on every error (tests/test_api_fuzz.py, scripts/fuzz_api.py).

Synchronous (schemathesis speaks through `requests`): call it in a thread when the server runs
in the caller's event loop.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, Case, CheckContext, GenerationMode, Response
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from factory.web.app import MAX_HEADERS, MAX_LINE

PROBLEM_FIELDS = {"type": str, "title": str, "status": int, "detail": str}


def over_parser_limits(response: Response) -> bool:
    """Whether the request broke HTTP framing limits (factory/web/app.py): aiohttp's parser
    refuses those with a plain-text 400 before any app sees a request (tests/test_http_limits.py
    covers that refusal)."""
    request = response.request
    line = f"{request.method} {request.path_url} HTTP/1.1"
    headers = request.headers.items()
    return (len(line) > MAX_LINE or len(headers) > MAX_HEADERS
            or any(len(name) + 2 + len(value) > MAX_LINE for name, value in headers))


def problem_body(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Every 4xx and 5xx is application/problem+json with type, title, status and detail."""
    if response.status_code < 400:
        return None
    if response.status_code == 400 and over_parser_limits(response):
        return None
    kind = response.headers.get("content-type", [""])[0].split(";")[0].strip()
    if kind != "application/problem+json":
        raise AssertionError(f"a {response.status_code} answer is {kind or 'untyped'}, "
                             "not application/problem+json")
    body = json.loads(response.content)
    for name, kind_of in PROBLEM_FIELDS.items():
        if not isinstance(body.get(name), kind_of) or body.get(name) in ("", None):
            raise AssertionError(f"the problem body lacks {name!r}: {body}")
    if body["status"] != response.status_code:
        raise AssertionError(f"the problem says status {body['status']}, the answer is "
                             f"{response.status_code}")
    return True


def content_type_documented(ctx: CheckContext, response: Response,
                            case: Case) -> bool | None:
    """Schemathesis' content_type_conformance, but for the parser's refusals."""
    if response.status_code == 400 and over_parser_limits(response):
        return None
    return content_type_conformance(ctx, response, case)


# Not `positive_data_acceptance`: a schema-valid request may still be refused by design (an
# unknown product id, a UCI whose check symbol is wrong); the document cannot say either.
# Not the stateful checks (use_after_free, ...): the documents declare no links.
CHECKS = [not_a_server_error, status_code_conformance, content_type_documented,
          response_headers_conformance, response_schema_conformance, negative_data_rejection,
          missing_required_header, ignored_auth, problem_body]


@dataclass
class Outcome:
    """What one operation got: examples sent per mode, and the distinct failures."""

    operation: str
    examples: dict[str, int] = field(default_factory=dict)
    statuses: dict[int, int] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)  # first line -> the full report

    @property
    def total(self) -> int:
        return sum(self.examples.values())


Tokens = Callable[[APIOperation], str]


def fuzz(schema: schemathesis.BaseSchema, base_url: str, token_for: Tokens, *,
         examples: int, seed: int = 7) -> list[Outcome]:
    """Run every operation of `schema` at `base_url`: `examples` positive and `examples`
    negative cases each, seeded (the same cases every run), with the bearer token that
    `token_for` picks for the operation."""
    outcomes = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()  # an operation the document describes badly
        operation = result.ok()
        outcome = Outcome(operation.label)
        auth = {"Authorization": f"Bearer {token_for(operation)}"}
        with requests.Session() as session:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                _run(operation, mode, base_url, session, auth, outcome, examples, seed)
        outcomes.append(outcome)
    return outcomes


def _run(operation: APIOperation, mode: GenerationMode, base_url: str,
         session: requests.Session, auth: dict[str, str], outcome: Outcome, examples: int,
         seed_value: int) -> None:
    outcome.examples[mode.value] = 0

    @seed(seed_value)
    @settings(max_examples=examples, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate], print_blob=False,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Case) -> None:
        outcome.examples[mode.value] += 1
        # A negative case that drops the token (to see a 401) goes without it.
        sent = {} if operation.schema.is_security_param_negated(case) else auth
        response = case.call(base_url=base_url, session=session, headers=sent, timeout=30)
        outcome.statuses[response.status_code] = outcome.statuses.get(
            response.status_code, 0) + 1
        try:
            case.validate_response(response, checks=CHECKS, headers=sent)
        except (FailureGroup, AssertionError) as exc:
            report = str(exc)
            outcome.failures.setdefault(_title(report), report)

    # Failures are collected, not raised: every example runs, and the table counts them all.
    with contextlib.suppress(Unsatisfiable):  # nothing to negate: no negative cases
        run()


def _title(report: str) -> str:
    lines = [line.strip() for line in report.splitlines() if line.strip()]
    picked = [line for line in lines if line.startswith("- ")] or lines[:1]
    return " / ".join(picked)[:300]


def table(outcomes: list[Outcome]) -> str:
    """Operation x examples x statuses x failures, as a plain-text table."""
    width = max(len(o.operation) for o in outcomes)
    rows = [f"{'operation':<{width}}  {'positive':>8}  {'negative':>8}  {'failures':>8}  statuses"]
    for o in outcomes:
        statuses = " ".join(f"{code}:{n}" for code, n in sorted(o.statuses.items()))
        rows.append(f"{o.operation:<{width}}  {o.examples.get('positive', 0):>8}  "
                    f"{o.examples.get('negative', 0):>8}  {len(o.failures):>8}  {statuses}")
    total = sum(o.total for o in outcomes)
    rows.append(f"{'total':<{width}}  {total:>18}  {sum(len(o.failures) for o in outcomes):>8}")
    return "\n".join(rows)
