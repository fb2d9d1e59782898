"""The whole journey against the embedded platform: app, worker, scheduler and simulators in-process."""

from __future__ import annotations

import httpx

from mvne.infra.runtime import Runtime
from tests.journey.launch import assert_invoice_carries_the_legal_profile, run_signup_to_live
from tests.journey.scenario import _wait, run_journey
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


def test_a_founder_goes_from_sign_up_to_live_and_invoices_alone_in_embedded_mode(
    live_url: str, runtime: Runtime
) -> None:
    def read_mail(address: str, kind: str) -> str:
        """The local mailbox, over HTTP, as a founder trying the platform on a laptop reads it."""
        messages = _wait(
            lambda: httpx.get(f"{live_url}/v1/dev/mailbox", params={"to": address}, timeout=10).json()["data"],
            lambda found: any(m["kind"] == kind for m in found),
            timeout=30,
            what=f"{kind} mail",
        )
        return str(next(m["text"] for m in messages if m["kind"] == kind))

    text = run_signup_to_live(live_url, read_mail, backdate=lambda sub_id, at: backdate_line(runtime, sub_id, at))

    assert_invoice_carries_the_legal_profile(text)
