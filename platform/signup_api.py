"""Self-service sign-up: a founder opens a sandbox tenant, its owner account and its brand, then verifies
the e-mail address. Here because it crosses domains: the tenant gets its number range and eSIM pool
from provisioning; the staff side lives in `mvne.tenants.signup` and `mvne.tenants.staff`.
"""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint

from mvne.infra.web.auth import public
from mvne.infra.web.context import public_db_session, runtime
from mvne.infra.web.problems import problems
from mvne.provisioning.actors import secret_box
from mvne.provisioning.errors import CountryNotSupported, NumberRangeExhausted
from mvne.provisioning.service import onboard_tenant
from mvne.tenants import signup, staff
from mvne.tenants.errors import (
    TimezoneRequired,
    VerificationTokenExpired,
    VerificationTokenInvalid,
    WeakPassword,
)
from mvne.tenants.models import Tenant
from mvne.tenants.schemas import (
    AcceptedSchema,
    ResendVerificationSchema,
    SignupResultSchema,
    SignupSchema,
    VerificationSchema,
    VerifiedSchema,
)

signup_blp = Blueprint(
    "signup",
    __name__,
    url_prefix="/v1/signup",
    description="Self-service sign-up: a sandbox tenant and its owner, then the owner's e-mail verification.",
)

SIGNUP_EXAMPLE = {
    "email": "ada@nimbus.example",
    "password": "cobalt lantern orchard swim",
    "name": "Ada Martin",
    "company": "Nimbus Telecom SAS",
    "brand_name": "Nimbus Mobile",
    "country": "FR",
    "currency": "EUR",
    "timezone": "Europe/Paris",
}


@signup_blp.post("")
@public
@problems(WeakPassword, CountryNotSupported, TimezoneRequired, NumberRangeExhausted)
@signup_blp.arguments(SignupSchema, example=SIGNUP_EXAMPLE)
@signup_blp.response(201, SignupResultSchema)
def sign_up(body: dict[str, Any]) -> dict[str, Any]:
    """Sign up: a sandbox tenant (status `onboarding`) with its number range, eSIM pool and brand, and its owner.

    The slug is made from `brand_name` (with a suffix when taken). A link to verify the e-mail address is
    sent to it; the owner logs in once it is verified. The same address may sign up several brands: each
    is a tenant of its own. Refused with nothing written: a weak password (422 `weak_password`, judged with
    the e-mail, name, company and brand as words to avoid), a country without a numbering plan yet (422
    `country_not_supported`), a currency not in ISO 4217 use or an invalid e-mail (422 `validation_failed`).
    """
    settings = runtime().settings
    email = staff.normalize_email(body["email"])
    name = body.get("name") or email.split("@", 1)[0]
    signup.check_founder_password(
        body["password"], email=email, company=body["company"], brand_name=body["brand_name"], name=name
    )
    timezone = body.get("timezone") or signup.default_timezone(body["country"])
    if timezone is None:
        raise TimezoneRequired(
            f"{body['country']} has no default time zone: give `timezone`.",
            errors={"timezone": ["Required for this country."]},
        )
    session = public_db_session()
    tenant: Tenant = onboard_tenant(
        session,
        name=body["company"],
        slug=signup.free_slug(session, body["brand_name"]),
        country=body["country"],
        currency=body["currency"],
        timezone=timezone,
        box=secret_box(settings),
        status="onboarding",
    )
    founder = signup.register_founder(
        session,
        tenant=tenant,
        email=email,
        name=name,
        password=body["password"],
        company=body["company"],
        brand_name=body["brand_name"],
        public_url=settings.public_url,
    )
    user = founder.user
    return {
        "tenant": {"id": tenant.id, "slug": tenant.slug, "status": tenant.status},
        "staff_user": {"id": user.id, "email": user.email, "role": user.role, "email_verified": False},
    }


@signup_blp.post("/verify")
@public
@problems(VerificationTokenInvalid, VerificationTokenExpired)
@signup_blp.arguments(VerificationSchema, example={"token": "k3Jx0Qp9ZfT2..."})
@signup_blp.response(200, VerifiedSchema)
def verify_email(body: dict[str, Any]) -> dict[str, Any]:
    """Verify the owner's e-mail address with the code of the link we sent; each link works once, for 24 hours.

    An unknown or used code is 422 `verification_token_invalid`, an expired one 422
    `verification_token_expired`: ask for a new link (POST /v1/signup/resend-verification).
    """
    session = public_db_session()
    user = staff.verify_email(session, body["token"])
    return {"staff_user": user, "tenant": session.get(Tenant, user.tenant_id)}


@signup_blp.post("/resend-verification")
@public
@signup_blp.arguments(ResendVerificationSchema, example={"email": "ada@nimbus.example", "tenant": "nimbus-mobile"})
@signup_blp.response(202, AcceptedSchema)
def resend_verification(body: dict[str, Any]) -> dict[str, Any]:
    """Ask for a new verification link. Always 202: the answer does not tell whether such an account exists.

    A link is sent when the tenant has an unverified, active staff user with this address, at most once a
    minute; earlier links keep working until they expire.
    """
    staff.resend_verification(
        public_db_session(), tenant_slug=body["tenant"], email=body["email"], public_url=runtime().settings.public_url
    )
    return {"detail": "If an unverified account matches, a new link is on its way to that address."}
