"""The pages behind the links staff receive by e-mail: confirm an address, accept an invitation.

A link's page only shows what the link is for; the change is made by the form it posts, so a mail
scanner that opens links does not use them up. Errors are shown on the page, in words, with what to do.
The brand's name, colours and logo dress the page, as on the subscribers' sign-in page.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, render_template, request
from sqlalchemy import select

from mvne.infra.errors import DomainError
from mvne.infra.web.context import public_db_session
from mvne.platform.subscriber_oauth import PAGE_HEADERS, PageBrand, page_brand, platform_brand
from mvne.tenants import staff
from mvne.tenants.models import EmailVerification, StaffInvitation, StaffUser, Tenant

console_pages = Blueprint("console_pages", __name__, url_prefix="/console")

VERIFY_PATH = "/console/verify-email"
ACCEPT_PATH = "/console/accept-invitation"
MAX_TOKEN = 100
ROLE_NAMES = {
    "owner": "an owner",
    "admin": "an admin",
    "catalog_manager": "a catalogue manager",
    "support": "a support agent",
    "finance": "a finance officer",
    "read_only": "a read-only member",
}


def _page(values: dict[str, Any], status: int = 200) -> Response:
    response = Response(render_template("console_link.html", **values), status=status, mimetype="text/html")
    response.headers.update(PAGE_HEADERS)
    return response


def _token(source: Any) -> str:
    return str(source.get("token", ""))[:MAX_TOKEN]


def _brand(tenant_id: str | None) -> tuple[PageBrand, Tenant | None]:
    session = public_db_session()
    tenant = session.get(Tenant, tenant_id) if tenant_id else None
    return (page_brand(session, tenant) if tenant is not None else platform_brand("Console")), tenant


@console_pages.get("/verify-email")
def verify_email_page() -> Response:
    """What the verification link opens: the address to confirm, and the button that confirms it."""
    token = _token(request.args)
    session = public_db_session()
    found = session.execute(
        select(EmailVerification, StaffUser)
        .join(StaffUser, StaffUser.id == EmailVerification.staff_user_id)
        .where(EmailVerification.token_hash == staff.digest(token))
    ).first()
    if not token or found is None:
        brand, _ = _brand(None)
        return _page(
            {"title": "This link does not work", "brand": brand, "error": "This verification link is unknown."}, 404
        )
    brand, _ = _brand(found.StaffUser.tenant_id)
    return _page(
        {
            "title": "Confirm your e-mail address",
            "step": "verify",
            "brand": brand,
            "email": found.StaffUser.email,
            "token": token,
            "action_url": VERIFY_PATH,
        }
    )


@console_pages.post("/verify-email")
def verify_email() -> Response:
    """Confirm the address; the page says so, or why not and what to do."""
    session = public_db_session()
    try:
        user = staff.verify_email(session, _token(request.form))
    except DomainError as error:
        brand, _ = _brand(None)
        return _page({"title": "This link does not work", "brand": brand, "error": error.detail}, error.status)
    brand, tenant = _brand(user.tenant_id)
    return _page(
        {
            "title": "Your address is confirmed",
            "step": "done",
            "brand": brand,
            "done": f"Thank you: {user.email} is confirmed.",
            "tenant_slug": tenant.slug if tenant else "",
        }
    )


def _invitation(token: str) -> StaffInvitation | None:
    if not token:
        return None
    return public_db_session().scalar(select(StaffInvitation).where(StaffInvitation.token_hash == staff.digest(token)))


def _accept_values(invitation: StaffInvitation, token: str, brand: PageBrand) -> dict[str, Any]:
    return {
        "title": f"Join {brand.name}",
        "step": "accept",
        "brand": brand,
        "invited": f"You are invited to run {brand.name} as {ROLE_NAMES.get(invitation.role, invitation.role)}.",
        "email": invitation.email,
        "token": token,
        "action_url": ACCEPT_PATH,
    }


@console_pages.get("/accept-invitation")
def accept_invitation_page() -> Response:
    """What the invitation link opens: who invites whom, and the form to join with a name and a password."""
    token = _token(request.args)
    invitation = _invitation(token)
    if invitation is None:
        brand, _ = _brand(None)
        return _page({"title": "This link does not work", "brand": brand, "error": "This invitation is unknown."}, 404)
    brand, _ = _brand(invitation.tenant_id)
    return _page(_accept_values(invitation, token, brand))


@console_pages.post("/accept-invitation")
def accept_invitation() -> Response:
    """Join the staff; a weak password or a spent invitation is shown on the page with the fix."""
    token = _token(request.form)
    name = str(request.form.get("name", "")).strip()[:200]
    invitation = _invitation(token)
    brand, _ = _brand(invitation.tenant_id if invitation is not None else None)
    if invitation is not None and not name:
        return _page({**_accept_values(invitation, token, brand), "error": "Give your name."}, 422)
    try:
        user = staff.accept_invitation(
            public_db_session(), token=token, name=name, password=str(request.form.get("password", ""))
        )
    except DomainError as error:
        if invitation is not None and error.code == "weak_password":
            return _page({**_accept_values(invitation, token, brand), "error": error.detail, "name": name}, 422)
        return _page({"title": "This link does not work", "brand": brand, "error": error.detail}, error.status)
    _, tenant = _brand(user.tenant_id)
    return _page(
        {
            "title": f"Welcome to {brand.name}",
            "step": "done",
            "brand": brand,
            "done": f"You joined {brand.name} as {ROLE_NAMES.get(user.role, user.role)}.",
            "tenant_slug": tenant.slug if tenant else "",
        }
    )
