"""The whole journey against the embedded platform: app, worker, scheduler and simulators in-process."""

from __future__ import annotations

from mvne.infra.runtime import Runtime
from tests.journey.scenario import run_journey
from tests.support.api import Operator, backdate_line


def test_an_mvno_goes_from_tenant_to_paid_up_invoice_in_embedded_mode(
    live_url: str, operator: Operator, runtime: Runtime
) -> None:
    invoice = run_journey(
        live_url,
        f"{live_url}/sim/network",
        f"{live_url}/sim/smdp",
        operator.client_id,
        operator.secret,
        backdate=lambda sub_id, at: backdate_line(runtime, sub_id, at),
    )
    assert invoice["total"] == "33.84"
