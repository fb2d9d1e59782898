"""A tenant's legal profile: who it is in law, checked identifier by identifier, as its invoices print it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mvne.infra.db import utcnow
from mvne.infra.ids import new_id
from mvne.tenants import identifiers, settings
from mvne.tenants.errors import InvalidIdentifier, LegalProfileNotFound
from mvne.tenants.models import TenantLegalProfile
from mvne.tenants.service import record_event


def find_legal_profile(session: Session) -> TenantLegalProfile | None:
    """The session's tenant's profile, or None when it has not given one."""
    return session.scalar(select(TenantLegalProfile))


def get_legal_profile(session: Session) -> TenantLegalProfile:
    profile = find_legal_profile(session)
    if profile is None:
        raise LegalProfileNotFound("This tenant has no legal profile yet: PUT /v1/tenant/legal-profile sets it.")
    return profile


def checked_profile(values: dict[str, Any]) -> dict[str, Any]:
    """The profile's values with every identifier checked and compacted; InvalidIdentifier names each bad field."""
    address = dict(values["address"])
    country = str(address["country"])
    checked: dict[str, Any] = {
        "legal_name": values["legal_name"],
        "legal_form": values.get("legal_form"),
        "address": address,
        "share_capital": values.get("share_capital"),
        "support_email": values.get("support_email"),
    }
    errors: dict[str, list[str]] = {}

    def check(field: str, rule: Any, *args: Any) -> Any:
        value = values.get(field)
        if value is None:
            return None
        try:
            return rule(value, *args)
        except identifiers.IdentifierError as error:
            errors[field] = [str(error)]
            return None

    registration = check("registration_number", identifiers.check_registration_number, country)
    checked["registration_number"] = registration[0] if registration else None
    checked["vat_id"] = check("vat_id", identifiers.check_vat_id, country)
    checked["iban"] = check("iban", identifiers.check_iban)
    checked["bic"] = check("bic", identifiers.check_bic)
    checked["support_phone"] = check("support_phone", identifiers.check_phone, country)
    checked["invoice_locale"] = check("invoice_locale", identifiers.check_locale) or identifiers.default_locale(country)
    rcs_city = values.get("rcs_city")
    if rcs_city and country != "FR":
        errors["rcs_city"] = ["The RCS (registre du commerce et des sociétés) is French: leave rcs_city out."]
    checked["rcs_city"] = rcs_city
    if country == "FR" and not values.get("registration_number"):
        errors.setdefault("registration_number", []).append(
            "A French company prints its SIREN on its invoices: give its SIREN (9 digits) or SIRET (14 digits)."
        )
    if values.get("bic") and not values.get("iban"):
        errors.setdefault("iban", []).append("A BIC goes with an IBAN: give the IBAN of the account too.")
    if errors:
        fields = ", ".join(sorted(errors))
        first = next(iter(errors.values()))[0]
        raise InvalidIdentifier(f"{first}" if len(errors) == 1 else f"Invalid fields: {fields}.", errors=errors)
    share_capital = checked["share_capital"]
    if share_capital is not None and not isinstance(share_capital, Decimal):
        raise TypeError("share capital must be a Decimal")
    return checked


def set_legal_profile(session: Session, values: dict[str, Any]) -> TenantLegalProfile:
    """Create or replace the session's tenant's legal profile; nothing is written when a field is refused.

    Payment terms live in the tenant's billing settings: given here, they are set there; left out, they
    stay as they are.
    """
    checked = checked_profile(values)
    profile = find_legal_profile(session)
    created = profile is None
    if profile is None:
        profile = TenantLegalProfile(id=new_id("lgp"), **checked)
        session.add(profile)
    else:
        for name, value in checked.items():
            setattr(profile, name, value)
        profile.updated_at = utcnow()
    if values.get("payment_terms_days") is not None:
        settings.set_payment_terms(session, values["payment_terms_days"])
    session.flush()
    record_event(
        session,
        "tenant.legal_profile_updated",
        profile.id,
        {"legal_name": profile.legal_name, "country": profile.address["country"], "created": created},
    )
    return profile


def registration_kind(profile: TenantLegalProfile) -> str | None:
    """What the registration number is called where the tenant is registered: SIREN or SIRET in France."""
    if profile.address.get("country") != "FR" or not profile.registration_number:
        return None
    return "SIRET" if len(profile.registration_number) == 14 else "SIREN"


def legal_profile_view(session: Session, profile: TenantLegalProfile) -> dict[str, Any]:
    """The profile as the API shows it, with the payment terms of the billing settings."""
    view = {column.key: getattr(profile, column.key) for column in TenantLegalProfile.__table__.columns}
    view["payment_terms_days"] = settings.payment_terms_days(session)
    return view
