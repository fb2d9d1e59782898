"""One MVNO end to end over real HTTP: operator, tenant, offer, customer, eSIM line, usage, billing, invoice.

The same scenario runs against the embedded platform and against the production set-up.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import ssl
import time
import zoneinfo
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import phonenumbers

from mvne.esim.identifiers import ActivationCode, is_valid_iccid
from tests.support.api import last_period


def _wait(fetch: Any, done: Any, *, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: last seen {value}")
        time.sleep(0.2)


def token(http: httpx.Client, client_id: str, secret: str) -> str:
    response = http.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret))
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


Backdate = Callable[[str, dt.datetime], None]


def run_journey(
    base_url: str,
    network_url: str,
    smdp_url: str,
    operator_id: str,
    operator_secret: str,
    *,
    backdate: Backdate,
    smdp_tls: bool | ssl.SSLContext = True,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Drive the whole journey; assert each step; return the invoice.

    Billing runs bill periods that have ended, so the line is made to have joined at the start of the
    last period (`backdate` sets its activation time in the database, as a line migrated from another
    platform would carry it), and its usage is dated in that period.
    """
    with httpx.Client(base_url=base_url, timeout=30) as http:
        op = {"Authorization": f"Bearer {token(http, operator_id, operator_secret)}"}
        slug = f"journey-{secrets.token_hex(3)}"
        tenant = http.post(
            "/v1/tenants",
            headers=op,
            json={
                "name": "Journey Mobile",
                "slug": slug,
                "country": "FR",
                "currency": "EUR",
                "timezone": "Europe/Paris",
            },
        )
        assert tenant.status_code == 201, tenant.text
        tenant_id = tenant.json()["id"]
        creds = http.post(
            f"/v1/tenants/{tenant_id}/api-clients",
            headers=op,
            json={
                "name": "journey back end",
                "scopes": [
                    "offers:write",
                    "offers:read",
                    "customers:write",
                    "customers:read",
                    "subscriptions:write",
                    "subscriptions:read",
                    "usage:write",
                    "billing:write",
                    "billing:read",
                    "invoices:read",
                ],
            },
        )
        assert creds.status_code == 201, creds.text
        h = {"Authorization": f"Bearer {token(http, creds.json()['client_id'], creds.json()['client_secret'])}"}

        offer = http.post(
            "/v1/offers",
            headers={**h, "Idempotency-Key": f"offer-{slug}"},
            json={
                "code": "S20",
                "name": "Simple 20",
                "price": "20.00",
                "allowances": {"data_mb": 1000, "voice_minutes": 60, "sms": 10},
                "overage": {"data_per_mb": "0.01", "voice_per_minute": "0.20", "sms_per_message": "0.10"},
            },
        )
        assert offer.status_code == 201, offer.text
        offer_id = offer.json()["id"]
        assert http.post(f"/v1/offers/{offer_id}/publish", headers=h).json()["status"] == "published"
        assert [o["id"] for o in http.get("/v1/offers", headers=h).json()["data"]] == [offer_id]

        customer = http.post(
            "/v1/customers",
            headers=h,
            json={
                "name": "Ada Lovelace",
                "email": f"ada-{slug}@example.com",
                "address": {"line1": "1 rue de Rivoli", "postal_code": "75001", "city": "Paris", "country": "FR"},
            },
        )
        assert customer.status_code == 201, customer.text
        customer_id = customer.json()["id"]
        assert http.get(f"/v1/customers/{customer_id}", headers=h).json()["email"] == f"ada-{slug}@example.com"

        ordered = http.post(
            "/v1/subscriptions", headers=h, json={"customer": customer_id, "offer": offer_id, "sim_type": "esim"}
        )
        assert ordered.status_code == 202, ordered.text
        assert ordered.json()["status"] == "pending"
        sub_id = ordered.json()["id"]
        sub = _wait(
            lambda: http.get(f"/v1/subscriptions/{sub_id}", headers=h).json(),
            lambda s: s["status"] != "pending",
            timeout=timeout,
            what="activation",
        )
        assert sub["status"] == "active", sub
        number = phonenumbers.parse(sub["msisdn"])
        assert phonenumbers.is_valid_number(number)
        assert sub["msisdn"].startswith("+33")
        assert is_valid_iccid(sub["iccid"])
        code = ActivationCode.parse(sub["esim"]["activation_code"])
        assert sub["esim"]["activation_code"] == f"LPA:1${code.smdp_address}${code.matching_id}"
        assert re.fullmatch(r"[0-9A-Z-]+", code.matching_id)
        qr = httpx.get(sub["esim"]["qr_code_url"], timeout=10)
        assert qr.status_code == 200
        assert b"<svg" in qr.content

        # The subscriber scans the code: the SM-DP+ reports download and installation back to us (ES2+).
        device = httpx.post(
            f"{smdp_url}/sim-admin/profiles/{sub['iccid']}/download", json={}, timeout=30, verify=smdp_tls
        )
        assert device.status_code == 200, device.text
        installed = _wait(
            lambda: http.get(f"/v1/subscriptions/{sub_id}", headers=h).json()["esim"]["state"],
            lambda state: state == "installed",
            timeout=timeout,
            what="the installation notification",
        )
        assert installed == "installed"

        # The line joined at the start of the last period; its usage is dated in that period.
        period, period_start = last_period()
        backdate(sub_id, period_start.astimezone(dt.UTC))
        start = period_start + dt.timedelta(days=2)

        # Usage over the API: 1,200 MB of data, sent twice; the second time counts nothing.
        batch = {
            "records": [
                {
                    "record_id": f"{slug}-d1",
                    "subscription": sub_id,
                    "service": "data",
                    "started_at": start.isoformat(),
                    "volume": 1_200_000_000,
                }
            ]
        }
        first = http.post("/v1/usage-records", headers=h, json=batch).json()
        again = http.post("/v1/usage-records", headers=h, json=batch).json()
        assert (first["accepted"], first["duplicates"]) == (1, 0), first
        assert (again["accepted"], again["duplicates"]) == (0, 1), again

        # Usage from the host network: a file of 300 MB, 75 minutes and 12 SMS dropped into storage.
        emitted = httpx.post(
            f"{network_url}/usage/emit",
            timeout=30,
            json={
                "msisdns": [sub["msisdn"]],
                "data_mb": 300,
                "voice_minutes": 75,
                "sms": 12,
                "start": start.isoformat(),
                "interval_minutes": 0,
            },
        )
        assert emitted.status_code == 201, emitted.text

        # The scheduler finds the file and rates it: 1,500 MB, 4,500 s and 12 SMS in all.
        wanted = {"data": 1_500_000_000, "voice": 4_500, "sms": 12, "mms": 0}
        usage = _wait(
            lambda: http.get(f"/v1/subscriptions/{sub_id}/usage", headers=h, params={"period": period}).json(),
            lambda u: {s["service"]: s["quantity"] for s in u["services"]} == wanted,
            timeout=timeout,
            what="usage file ingestion",
        )
        by_service = {s["service"]: s for s in usage["services"]}
        assert by_service["data"]["overage_quantity"] == 500_000_000
        assert by_service["voice"]["overage_quantity"] == 900
        assert by_service["sms"]["overage_quantity"] == 2

        # The current period is still open: it cannot be billed yet, only previewed.
        current = dt.datetime.now(zoneinfo.ZoneInfo("Europe/Paris")).strftime("%Y-%m")
        early = http.post("/v1/billing-runs", headers=h, json={"period": current})
        assert (early.status_code, early.json()["code"]) == (409, "period_not_ended"), early.text

        run = http.post("/v1/billing-runs", headers=h, json={"period": period})
        assert run.status_code == 202, run.text
        run = _wait(
            lambda: http.get(f"/v1/billing-runs/{run.json()['id']}", headers=h).json(),
            lambda r: r["status"] not in ("pending", "running"),
            timeout=timeout,
            what="billing run",
        )
        assert (run["status"], run["invoices_created"], run["customers_total"]) == ("completed", 1, 1), run

        invoices = http.get("/v1/invoices", headers=h, params={"customer": customer_id}).json()["data"]
        assert len(invoices) == 1
        invoice = http.get(f"/v1/invoices/{invoices[0]['id']}", headers=h).json()
        lines = {line["kind"]: line["amount"] for line in invoice["lines"]}
        assert lines == {
            "recurring": "20.00",
            "overage_data": "5.00",
            "overage_voice": "3.00",
            "overage_sms": "0.20",
            "tax": "5.64",
        }, invoice["lines"]
        assert (invoice["subtotal"], invoice["tax"], invoice["total"], invoice["currency"]) == (
            "28.20",
            "5.64",
            "33.84",
            "EUR",
        )
        assert sum(Decimal(line["amount"]) for line in invoice["lines"]) == Decimal(invoice["total"])
        assert re.fullmatch(r"INV-\d{4}-\d{6}", invoice["number"])

        pdf = http.get(f"/v1/invoices/{invoice['id']}/pdf", headers=h)
        assert pdf.status_code == 200
        assert pdf.headers["content-type"] == "application/pdf"
        assert pdf.content.startswith(b"%PDF-")

        # A second run for the same period issues nothing new.
        rerun = http.post("/v1/billing-runs", headers=h, json={"period": period})
        rerun = _wait(
            lambda: http.get(f"/v1/billing-runs/{rerun.json()['id']}", headers=h).json(),
            lambda r: r["status"] not in ("pending", "running"),
            timeout=timeout,
            what="second run",
        )
        assert (rerun["invoices_created"], rerun["invoices_existing"]) == (0, 1), rerun

        # 100 MB more of the billed period arrive late: they wait for the next invoice, named with their period.
        late = http.post(
            "/v1/usage-records",
            headers=h,
            json={
                "records": [
                    {
                        "record_id": f"{slug}-late",
                        "subscription": sub_id,
                        "service": "data",
                        "started_at": (start + dt.timedelta(days=20)).isoformat(),
                        "volume": 100_000_000,
                    }
                ]
            },
        ).json()
        assert late["accepted"] == 1, late
        upcoming = http.get(f"/v1/customers/{customer_id}/upcoming-invoice", headers=h).json()
        assert upcoming["period"] == current
        carried = [line for line in upcoming["lines"] if line["period"] == period]
        assert [(line["kind"], line["amount"]) for line in carried] == [("overage_data", "1.00")], upcoming
        return dict(invoice)
