"""schemathesis walks every operation of `/v1/openapi.json`: no server error, nothing outside the document.

Every operation is called with examples generated from the document, valid ones and deliberately
invalid ones, authenticated as a tenant's back end or, on operator routes, as a platform operator.
The run is bounded (a few examples per operation and mode) and derandomized, so CI sees the same
cases each time and a failure names the operation and the case to replay.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.api import Operator, TenantHandle, make_tenant

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
OPERATOR_PATHS = ("/v1/tenants", "/v1/dead-letters", "/v1/operator/")
EXAMPLES = {GenerationMode.POSITIVE: 15, GenerationMode.NEGATIVE: 10}


def walk(operation: Any, mode: GenerationMode, token: str, statuses: Counter[str]) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES[mode],
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: the run stays bounded, the case is reported as is
        # An operation with few distinct inputs (an id in the path) is the document's shape, not a slow test.
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )
    def call(case: Any) -> None:
        response = case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)
        statuses[f"{operation.label} {mode.value} {response.status_code}"] += 1

    call()


# The walk grows with the API (some 140 operations, 25 cases each): past the suite's default timeout.
@pytest.mark.timeout(900)
def test_every_operation_answers_as_its_document_says(app: Flask, operator: Operator, live_url: str) -> None:
    tenant: TenantHandle = make_tenant(app.test_client(), operator)
    schema = schemathesis.openapi.from_wsgi("/v1/openapi.json", app)
    # The bearer token is a real one, sent with every case; generating (and mutating) it would test nothing.
    schema.config.generation.update(with_security_parameters=False)
    operations = [result.ok() for result in schema.get_all_operations()]
    statuses: Counter[str] = Counter()  # "<operation> <mode> <status>" -> cases that passed every check
    failures: list[str] = []
    no_negative: list[str] = []

    for operation in operations:
        token = operator.api.token if operation.path.startswith(OPERATOR_PATHS) else tenant.api.token
        assert token
        for mode in EXAMPLES:
            try:
                walk(operation, mode, token, statuses)
            except Unsatisfiable:
                # Only a free-form path id: the document allows every value, so there is no invalid one to send.
                assert mode is GenerationMode.NEGATIVE, operation.label
                no_negative.append(operation.label)
            except (Exception, BaseExceptionGroup) as exc:  # walk every operation, report every failure
                found = getattr(exc, "exceptions", None) or [exc]
                failures.extend(f"{operation.label} ({mode.value}): {failure}" for failure in found)

    cases = sum(statuses.values()) + len(failures)
    print(
        f"\nschemathesis: {len(operations)} operations, {cases} cases, {len(failures)} failures, "
        f"{len(no_negative)} operations without invalid inputs to send\n" + "\n".join(sorted(statuses))
    )
    assert len(operations) >= 25
    assert cases >= 10 * len(operations)
    assert not failures, "\n\n".join(failures)
