"""A founder alone, over real HTTP: sign-up, e-mail verification, console session, checklist, launch, invoice.

No operator takes part. The same scenario runs against the embedded platform (mail in the local mailbox)
and the production set-up (mail through an SMTP server).
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import shutil
import struct
import subprocess
import zlib
from collections.abc import Callable
from typing import Any

import httpx

from tests.journey.scenario import Backdate, _wait, token
from tests.support.api import last_period

# (address, kind) -> the text of the newest message of that kind sent to the address.
ReadMail = Callable[[str, str], str]

PASSWORD = "quartz meadow lantern ferry 2291"
LEGAL_PROFILE = {
    "legal_name": "Azur Télécom SAS",
    "legal_form": "SAS",
    "address": {"line1": "8 quai des Chartrons", "postal_code": "33000", "city": "Bordeaux", "country": "FR"},
    "registration_number": "732 829 320",
    "rcs_city": "Bordeaux",
    "share_capital": "25000.00",
    "vat_id": "FR 44 732 829 320",
    "iban": "FR14 2004 1010 0505 0001 3M02 606",
    "bic": "PSSTFRPPPAR",
}


def png_logo() -> bytes:
    """A small valid PNG (4x4 grey pixels)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 4, 4, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"".join(b"\x00" + b"\x80" * 4 for _ in range(4)))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def pdf_text(pdf: bytes) -> str:
    assert shutil.which("pdftotext"), "pdftotext (poppler-utils) is needed to read invoice PDFs"
    return subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True).stdout.decode()


def run_signup_to_live(base_url: str, read_mail: ReadMail, *, backdate: Backdate, timeout: float = 60.0) -> str:
    """Drive the founder's journey; assert each step; return the invoice PDF's text."""
    email = f"founder-{secrets.token_hex(4)}@azur.example"
    with httpx.Client(base_url=base_url, timeout=30) as browser:
        signed_up = browser.post(
            "/v1/signup",
            json={
                "email": email,
                "password": PASSWORD,
                "name": "Camille Founder",
                "company": "Azur Télécom SAS",
                "brand_name": "Azur Mobile",
                "country": "FR",
                "currency": "EUR",
            },
        )
        assert signed_up.status_code == 201, signed_up.text
        slug = signed_up.json()["tenant"]["slug"]
        assert signed_up.json()["tenant"]["status"] == "onboarding"
        login = {"tenant": slug, "email": email, "password": PASSWORD}

        # The console refuses the founder until the address is verified by the link e-mailed.
        early = browser.post("/v1/console/sessions", json=login)
        assert (early.status_code, early.json()["code"]) == (403, "email_not_verified"), early.text
        found = re.search(r"token=([A-Za-z0-9_-]+)", read_mail(email, "signup_verification"))
        assert found, "no verification link in the e-mail"
        verified = browser.post("/v1/signup/verify", json={"token": found.group(1)})
        assert verified.status_code == 200, verified.text

        session = browser.post("/v1/console/sessions", json=login)
        assert session.status_code == 201, session.text
        csrf = {"X-CSRF-Token": session.json()["csrf_token"]}
        me = browser.get("/v1/console/me").json()
        assert (me["role"], me["tenant"]["slug"], me["tenant"]["status"]) == ("owner", slug, "onboarding")

        # The checklist names what is missing; a launch now is refused with the same list.
        checklist = browser.get("/v1/onboarding").json()
        assert checklist["ready_to_launch"] is False
        missing = {step["step"] for step in checklist["steps"] if not step["done"]}
        assert missing >= {"brand", "legal_profile", "market", "host_network", "billing", "offer"}, checklist
        refused = browser.post("/v1/tenant/launch", headers=csrf)
        assert (refused.status_code, refused.json()["code"]) == (409, "launch_incomplete"), refused.text
        assert set(refused.json()["errors"]) == missing

        def put(path: str, body: dict[str, Any]) -> None:
            done = browser.put(path, json=body, headers=csrf)
            assert done.status_code == 200, f"{path}: {done.text}"

        put(
            "/v1/tenant/brand",
            {
                "display_name": "Azur Mobile",
                "primary_color": "#0a58ca",
                "accent_color": "#ffb400",
                "support_email": "aide@azur.example",
            },
        )
        logo = browser.put("/v1/tenant/brand/logo", content=png_logo(), headers={**csrf, "Content-Type": "image/png"})
        assert logo.status_code == 200, logo.text
        put("/v1/tenant/legal-profile", LEGAL_PROFILE)
        put(
            "/v1/tenant/market",
            {"currency": "EUR", "timezone": "Europe/Paris", "languages": ["fr-FR"], "tax_rate": "20"},
        )
        agreements = browser.get("/v1/network-agreements").json()["data"]
        simulated = [a for a in agreements if a["kind"] == "simulated"]
        assert simulated, agreements
        put("/v1/tenant/host-network", {"agreement_id": simulated[0]["id"]})
        put("/v1/tenant/billing-settings", {"payment_terms_days": 30, "invoice_series": "AZUR-"})
        offer = browser.post(
            "/v1/offers",
            headers=csrf,
            json={
                "code": "AZ20",
                "name": "Azur 20",
                "price": "20.00",
                "allowances": {"data_mb": 1000, "voice_minutes": 60, "sms": 10},
                "overage": {"data_per_mb": "0.01", "voice_per_minute": "0.20", "sms_per_message": "0.10"},
            },
        )
        assert offer.status_code == 201, offer.text
        published = browser.post(f"/v1/offers/{offer.json()['id']}/publish", headers=csrf)
        assert published.status_code == 200, published.text

        assert browser.get("/v1/onboarding").json()["ready_to_launch"] is True
        launched = browser.post("/v1/tenant/launch", headers=csrf)
        assert launched.status_code == 200, launched.text
        assert launched.json()["status"] == "active"

        # The founder gives the brand's back end its own credentials, shown once.
        client = browser.post(
            "/v1/api-clients",
            headers=csrf,
            json={
                "name": "Azur back end",
                "scopes": [
                    "customers:write",
                    "subscriptions:write",
                    "subscriptions:read",
                    "usage:write",
                    "billing:write",
                    "billing:read",
                    "invoices:read",
                ],
            },
        )
        assert client.status_code == 201, client.text
        creds = client.json()

    with httpx.Client(base_url=base_url, timeout=30) as http:
        h = {"Authorization": f"Bearer {token(http, creds['id'], creds['client_secret'])}"}
        customer = http.post(
            "/v1/customers",
            headers=h,
            json={
                "name": "Léa Martin",
                "email": f"lea-{slug}@example.com",
                "address": {"line1": "3 rue Sainte-Catherine", "postal_code": "33000", "city": "Bordeaux"}
                | {"country": "FR"},
            },
        )
        assert customer.status_code == 201, customer.text
        ordered = http.post(
            "/v1/subscriptions",
            headers=h,
            json={"customer": customer.json()["id"], "offer": offer.json()["id"], "sim_type": "esim"},
        )
        assert ordered.status_code == 202, ordered.text
        sub_id = ordered.json()["id"]
        sub = _wait(
            lambda: http.get(f"/v1/subscriptions/{sub_id}", headers=h).json(),
            lambda s: s["status"] != "pending",
            timeout=timeout,
            what="activation",
        )
        assert sub["status"] == "active", sub

        period, period_start = last_period()
        backdate(sub_id, period_start.astimezone(dt.UTC))
        usage = http.post(
            "/v1/usage-records",
            headers=h,
            json={
                "records": [
                    {
                        "record_id": f"{slug}-data",
                        "subscription": sub_id,
                        "service": "data",
                        "started_at": (period_start + dt.timedelta(days=3)).isoformat(),
                        "volume": 1_500_000_000,
                    }
                ]
            },
        )
        assert usage.json()["accepted"] == 1, usage.text
        run = http.post("/v1/billing-runs", headers=h, json={"period": period})
        assert run.status_code == 202, run.text
        run = _wait(
            lambda: http.get(f"/v1/billing-runs/{run.json()['id']}", headers=h).json(),
            lambda r: r["status"] not in ("pending", "running"),
            timeout=timeout,
            what="billing run",
        )
        assert (run["status"], run["invoices_created"]) == ("completed", 1), run
        [listed] = http.get("/v1/invoices", headers=h, params={"customer": customer.json()["id"]}).json()["data"]
        invoice = http.get(f"/v1/invoices/{listed['id']}", headers=h).json()
        # 20.00 + 500 MB beyond the allowance at 0.01 = 25.00, with 20 % VAT: 30.00.
        assert (invoice["subtotal"], invoice["tax"], invoice["total"]) == ("25.00", "5.00", "30.00"), invoice
        assert re.fullmatch(r"AZUR-\d{4}-\d{6}", invoice["number"]), invoice["number"]
        pdf = http.get(f"/v1/invoices/{invoice['id']}/pdf", headers=h)
        assert pdf.status_code == 200, pdf.text
        return pdf_text(pdf.content)


def assert_invoice_carries_the_legal_profile(text: str) -> None:
    """The seller block and the legal mentions of a French invoice, in French."""
    flat = " ".join(text.split())
    for expected in (
        "Azur Télécom SAS",
        "8 quai des Chartrons",
        "33000 Bordeaux",
        "FR44732829320",
        "FR14 2004 1010 0505 0001 3M02 606",
        "PSSTFRPPPAR",
        "SIREN 732 829 320",
        "au capital de 25 000,00 €",
        "30,00 €",
        "indemnité forfaitaire pour frais de recouvrement de 40 €",
    ):
        assert expected in flat, f"{expected!r} missing from the invoice:\n{text}"
    assert re.search(r"RCS Bordeaux", flat), flat
